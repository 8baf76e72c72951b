-- Names as ids: every tool that takes one job (or processIds) takes its
-- name, resolved in the caller's view (engine/index.lua: resolve).
local h = require "helpers"

describe("names as ids", function()
  after_each(function() h.cleanup() end)

  local function start(m, args, ctx) return h.ok(m, "createBackgroundProcess", args, ctx) end

  local function ended(m, id)
    assert.is_true(m:run_until(function() return m:record(id).status ~= "running" end, 10000))
  end

  it("get, send, wait, kill and restart take a job's name", function()
    local m = h.manager()
    local r = start(m, { command = "read line; echo got $line; sleep 60", name = "web", stdin = "pipe" })
    assert.equal(r.id, h.ok(m, "getBackgroundProcess", { processId = "web" }).id)
    h.ok(m, "sendBackgroundProcessInput", { processId = "web", input = "hi\n" })
    local w = h.ok(m, "waitForBackgroundProcess", { processId = "web", ["until"] = "output", pattern = "^got",
                                                    timeoutMs = 10000 })
    assert.equal("got hi", w.line)
    local rs = h.ok(m, "restartBackgroundProcess", { processId = "web" })
    assert.equal(r.id, rs.id)
    local k = h.ok(m, "killProcesses", { processId = "web", graceMs = 0 })
    assert.same({ r.id }, k.killed)
  end)

  it("picks the running job of a name, else the newest", function()
    local m = h.manager()
    local first = start(m, { argv = { "true" }, name = "build" })
    ended(m, first.id)
    local running = start(m, { argv = { "sleep", "60" }, name = "build" })
    local last = start(m, { argv = { "true" }, name = "build" })
    ended(m, last.id)
    assert.equal(running.id, h.ok(m, "getBackgroundProcess", { processId = "build" }).id)
    h.ok(m, "killProcesses", { processId = running.id, graceMs = 0 })
    assert.equal(last.id, h.ok(m, "getBackgroundProcess", { processId = "build" }).id, "the newest, all ended")
  end)

  it("calls two running jobs of one name ambiguous, listing them", function()
    local m = h.manager()
    local a = start(m, { argv = { "sleep", "60" }, name = "web" })
    local b = start(m, { argv = { "sleep", "60" }, name = "web", cwd = "/tmp" })
    local msg = h.fails(m, "invalid_argument", "getBackgroundProcess", { processId = "web" })
    assert.matches("'processId': the name 'web' is ambiguous", msg)
    assert.truthy(msg:find(a.id, 1, true) and msg:find(b.id .. " (running, session default, cwd /tmp)", 1, true), msg)
    -- and nothing was killed by an ambiguous kill
    h.fails(m, "invalid_argument", "killProcesses", { processId = "web" })
    assert.equal("running", m:record(a.id).status)
    assert.equal("running", m:record(b.id).status)
  end)

  it("looks in the caller's session first (and at global jobs)", function()
    local m = h.manager()
    local mine = start(m, { argv = { "sleep", "60" }, name = "web" }, { sessionId = "s1" })
    local theirs = start(m, { argv = { "sleep", "60" }, name = "web" }, { sessionId = "s2" })
    assert.equal(mine.id, h.ok(m, "getBackgroundProcess", { processId = "web" }, { sessionId = "s1" }).id)
    assert.equal(theirs.id, h.ok(m, "getBackgroundProcess", { processId = "web" }, { sessionId = "s2" }).id)
    h.fails(m, "invalid_argument", "getBackgroundProcess", { processId = "web" }, { sessionId = "s3" })
  end)

  it("a name that matches nothing is not_found, naming it", function()
    local m = h.manager()
    start(m, { argv = { "sleep", "60" }, name = "web" })
    for _, tool in ipairs { "getBackgroundProcess", "killProcesses", "restartBackgroundProcess",
                            "waitForBackgroundProcess", "sendBackgroundProcessInput" } do
      local args = { processId = "wbe" }
      if tool == "sendBackgroundProcessInput" then args.input = "x" end
      assert.matches("'processId': no process 'wbe'", h.fails(m, "not_found", tool, args), tool)
    end
    assert.matches("'processIds': no process 'wbe'",
      h.fails(m, "not_found", "waitForBackgroundProcess", { processIds = { "web", "wbe" } }))
  end)

  it("an id wins over a name", function()
    local m = h.manager()
    local a = start(m, { argv = { "sleep", "60" } })
    start(m, { argv = { "sleep", "60" }, name = a.id })
    assert.equal(a.id, h.ok(m, "getBackgroundProcess", { processId = a.id }).id)
  end)
end)
