-- restartBackgroundProcess: the same spec again under the same id; and
-- createBackgroundProcess's unique: reuse | replace.
local h = require "helpers"

describe("restart and unique starts", function()
  after_each(function() h.cleanup() end)

  local function start(m, args, ctx) return h.ok(m, "createBackgroundProcess", args, ctx) end

  local function output_has(m, id, s)
    return m:run_until(function()
      return h.ok(m, "getBackgroundProcess", { processId = id }).output:find(s, 1, true) ~= nil
    end, 10000)
  end

  it("stops the group, starts it again: same id, new pid, restarts counts, cursors go on", function()
    local m = h.manager()
    local r = start(m, { command = "echo run $$; sleep 60 & wait", name = "srv", tags = { "a" }, env = { X = "1" } })
    assert.is_true(output_has(m, r.id, "run "))
    -- the shell prints before it starts its sleep
    assert.is_true(m:run_until(function() return #h.group(r.pid) >= 2 end, 10000), "the shell and its sleep")
    local before = h.ok(m, "getBackgroundProcess", { processId = r.id })
    local children = h.group(r.pid)
    local rs = h.ok(m, "restartBackgroundProcess", { processId = r.id, graceMs = 2000 })
    assert.equal(r.id, rs.id)
    assert.not_equal(r.pid, rs.pid)
    assert.equal(1, rs.restarts)
    assert.equal("running", rs.status)
    assert.same({ "a" }, rs.tags)
    for _, pid in ipairs(children) do assert.is_false(h.alive(pid), "old process " .. pid .. " is gone") end
    assert.is_true(output_has(m, r.id, "run " .. rs.pid))
    local g = h.ok(m, "getBackgroundProcess", { processId = r.id, since = before.cursor })
    assert.equal("run " .. rs.pid .. "\n", g.output, "only the new run's output after the old cursor")
    assert.equal(2, h.ok(m, "restartBackgroundProcess", { processId = "srv" }).restarts)
  end)

  it("starts a finished or killed job again", function()
    local m = h.manager()
    local r = start(m, { argv = { "sh", "-c", "exit 3" } })
    assert.is_true(m:run_until(function() return m:record(r.id).status == "failed" end, 10000))
    local rs = h.ok(m, "restartBackgroundProcess", { processId = r.id })
    assert.equal(1, rs.restarts)
    local k = start(m, { argv = { "sleep", "60" } })
    h.ok(m, "killProcesses", { processId = k.id, graceMs = 0 })
    local ks = h.ok(m, "restartBackgroundProcess", { processId = k.id })
    assert.equal("running", ks.status)
    assert.is_nil(ks.stopReason)
  end)

  it("does not tell the owner of a restart's stop", function()
    local m = h.manager()
    local seen = {}
    m:on_event(function(ev) seen[#seen + 1] = ev end)
    local r = start(m, { argv = { "sleep", "60" } }, { sessionId = "s1" })
    h.ok(m, "restartBackgroundProcess", { processId = r.id, graceMs = 0 })
    local notices = require "bgproc.engine.notices"
    for _, ev in ipairs(seen) do
      assert.is_false(notices.wanted(ev), "told: " .. ev.event .. " " .. tostring(ev.stopReason))
    end
    assert.equal("restart", seen[1].stopReason)
  end)

  it("refuses a job whose session has ended", function()
    local m = h.manager()
    local r = start(m, { argv = { "sleep", "60" } }, { sessionId = "gone" })
    m:session_close("gone")
    assert.is_true(m:run_until(function() return m:record(r.id).status == "cancelled" end, 10000))
    assert.matches("session of job", h.fails(m, "conflict", "restartBackgroundProcess", { processId = r.id }))
  end)

  it("unique reuse returns the running job of the name and cwd as it is", function()
    local m = h.manager()
    local r = start(m, { argv = { "sleep", "60" }, name = "web", cwd = "/tmp" })
    local again = start(m, { argv = { "sleep", "61" }, name = "web", cwd = "/tmp", unique = "reuse" })
    assert.equal(r.id, again.id)
    assert.equal(r.pid, again.pid)
    assert.is_true(again.reused)
    local elsewhere = start(m, { argv = { "sleep", "61" }, name = "web", cwd = "/", unique = "reuse" })
    assert.not_equal(r.id, elsewhere.id, "another cwd is another job")
    assert.is_nil(elsewhere.reused)
  end)

  it("unique replace stops the running one and starts the new spec under its id", function()
    local m = h.manager()
    local r = start(m, { argv = { "sleep", "60" }, name = "web" })
    local new = start(m, { argv = { "sh", "-c", "echo new; sleep 60" }, name = "web", unique = "replace",
                           tags = { "b" } })
    assert.equal(r.id, new.id)
    assert.not_equal(r.pid, new.pid)
    assert.is_false(h.alive(r.pid))
    assert.same({ "b" }, new.tags)
    assert.is_true(output_has(m, r.id, "new"))
    assert.equal(1, #h.ok(m, "listBackgroundProcesses", { name = "web" }).processes)
    assert.equal(1, #h.ok(m, "listBackgroundProcesses", { tags = { "b" } }).processes)
    -- nothing runs by that name: a plain start
    h.ok(m, "killProcesses", { processId = r.id, graceMs = 0 })
    local fresh = start(m, { argv = { "sleep", "60" }, name = "web", unique = "replace" })
    assert.not_equal(r.id, fresh.id)
  end)

  it("a kill while a restart stops the job ends that run only, never the new one", function()
    local m = h.manager()
    -- TERM is ignored: the restart's stop needs its KILL, after 1 s
    local r = start(m, { command = "trap '' TERM; sleep 60" })
    assert.is_true(m:run_until(function() return #h.group(r.pid) >= 2 end, 10000), "sh and its sleep")
    local restarted
    m:call_async("restartBackgroundProcess", { processId = r.id, graceMs = 1000 }, {},
      function(res, err) restarted = res or err end)
    local k = h.ok(m, "killProcesses", { processId = r.id, graceMs = 3000 })
    assert.same({ r.id }, k.killed)
    assert.is_true(m:run_until(function() return restarted ~= nil end, 10000))
    assert.equal("running", restarted.status, restarted.message)
    assert.not_equal(r.pid, restarted.pid)
    -- the kill's protocol (3 s of grace) would have sent its KILL to the new run
    assert.is_true(h.holds_for(3500, function()
      m:step(50)
      return m:record(r.id).status == "running" and h.alive(restarted.pid)
    end), "the new run lives on")
  end)

  it("unique starts of one name at once make one job", function()
    local m = h.manager()
    local first = start(m, { argv = { "sleep", "60" }, name = "srv", cwd = "/tmp" })
    local answers = {}
    for i, how in ipairs { "replace", "replace", "reuse" } do
      m:call_async("createBackgroundProcess", { argv = { "sleep", "6" .. i }, name = "srv", cwd = "/tmp", unique = how },
        {}, function(res, err) answers[i] = res or err end)
    end
    assert.is_true(m:run_until(function() return answers[1] and answers[2] and answers[3] end, 20000))
    for i = 1, 3 do assert.equal(first.id, answers[i].id, answers[i].message) end
    local running = h.ok(m, "listBackgroundProcesses", { name = "srv", status = "running" })
    assert.equal(1, running.count)
    assert.same({ "sleep", "62" }, running.processes[1].argv, "the last replace won, the reuse took it as it was")
  end)

  it("unique looks in the caller's session (and global jobs) only", function()
    local m = h.manager()
    local theirs = start(m, { argv = { "sleep", "60" }, name = "web" }, { sessionId = "s1" })
    local mine = start(m, { argv = { "sleep", "60" }, name = "web", unique = "replace" }, { sessionId = "s2" })
    assert.not_equal(theirs.id, mine.id)
    assert.equal("running", m:record(theirs.id).status, "another session's job is not replaced")
    local g = start(m, { argv = { "sleep", "60" }, name = "db", global = true }, { sessionId = "s1" })
    assert.equal(g.id, start(m, { argv = { "sleep", "60" }, name = "db", unique = "reuse" }, { sessionId = "s2" }).id)
  end)

  it("unique without name is invalid_argument", function()
    local m = h.manager()
    assert.matches("'unique' needs 'name'", h.fails(m, "invalid_argument", "createBackgroundProcess",
      { argv = { "true" }, unique = "reuse" }))
    assert.matches("unique", h.fails(m, "invalid_argument", "createBackgroundProcess",
      { argv = { "true" }, name = "x", unique = "again" }))
  end)
end)
