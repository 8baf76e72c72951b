-- removeBackgroundProcesses: finished records go, running jobs stay.
local h = require "helpers"

describe("removeBackgroundProcesses", function()
  after_each(function() h.cleanup() end)

  local function finished(m, args)
    local r = h.ok(m, "createBackgroundProcess", args)
    assert.is_true(m:run_until(function() return m:record(r.id).status ~= "running" end, 10000))
    return r
  end

  it("removes finished jobs by id or name; a running one is an error and stays", function()
    local m = h.manager()
    local a = finished(m, { argv = { "true" } })
    local b = finished(m, { argv = { "true" }, name = "old" })
    local run = h.ok(m, "createBackgroundProcess", { argv = { "sleep", "60" }, name = "srv" })
    local r = h.ok(m, "removeBackgroundProcesses", { processIds = { a.id, "old", "srv" } })
    assert.same({ a.id, b.id }, r.removed)
    assert.equal(1, #r.errors)
    assert.equal(run.id, r.errors[1].processId)
    assert.matches("is running: stop it first", r.errors[1].message)
    assert.is_nil(m:record(a.id))
    assert.is_nil(m:record(b.id))
    assert.equal("running", m:record(run.id).status)
    h.fails(m, "not_found", "removeBackgroundProcesses", { processIds = { a.id } })
  end)

  it("prunes by status and age, leaving running jobs", function()
    local m = h.manager()
    local ok = finished(m, { argv = { "true" } })
    local bad = finished(m, { argv = { "false" } })
    local run = h.ok(m, "createBackgroundProcess", { argv = { "sleep", "60" } })
    assert.same({}, h.ok(m, "removeBackgroundProcesses", { olderThanMs = 3600 * 1000 }).removed)
    assert.same({ bad.id }, h.ok(m, "removeBackgroundProcesses", { status = "failed" }).removed)
    assert.same({ ok.id }, h.ok(m, "removeBackgroundProcesses", { all = true }).removed)
    assert.equal("running", m:record(run.id).status)
  end)

  it("refuses an empty selection, and ids with a selection", function()
    local m = h.manager()
    assert.matches("no selector", h.fails(m, "invalid_argument", "removeBackgroundProcesses", {}))
    assert.matches("not both", h.fails(m, "invalid_argument", "removeBackgroundProcesses",
      { processIds = { "x" }, status = "failed" }))
    assert.matches("olderThanMs", h.fails(m, "invalid_argument", "removeBackgroundProcesses", { olderThanMs = -1 }))
  end)
end)
