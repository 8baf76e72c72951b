-- bgproc.engine.lifecycle: creating jobs at the maxRunning limit.
local h = require "helpers"

describe("bgproc.engine.lifecycle", function()
  after_each(function() h.cleanup() end)

  -- The state letter of pid in /proc ("Z": exited, not reaped yet).
  local function state(pid)
    local st = h.stat(pid)
    return st and st.state
  end

  it("at maxRunning, first collects children that already exited (a host that never turns its loop)", function()
    local m = h.manager { maxRunning = 4 }
    local pids = {}
    for i = 1, 4 do pids[i] = h.ok(m, "createBackgroundProcess", { argv = { "true" } }).pid end
    -- nothing drives the engine: the four exit and stay zombies until it collects them
    assert.is_true(h.wait_until(function()
      for _, pid in ipairs(pids) do if state(pid) ~= "Z" then return false end end
      return true
    end, 10000), "the four jobs exited")
    for i = 5, 12 do
      local r = h.ok(m, "createBackgroundProcess", { argv = { "true" } })
      pids[i] = r.pid
      assert.is_true(h.wait_until(function() return state(r.pid) == "Z" end, 10000))
    end
    assert.equal(12, #m:call("listBackgroundProcesses", {}).processes)
  end)

  it("still refuses with code limit when the jobs do run, naming maxRunning", function()
    local m = h.manager { maxRunning = 2 }
    h.ok(m, "createBackgroundProcess", { argv = { "sleep", "30" } })
    h.ok(m, "createBackgroundProcess", { argv = { "sleep", "30" } })
    local msg = h.fails(m, "limit", "createBackgroundProcess", { argv = { "true" } })
    assert.truthy(msg:find("maxRunning", 1, true))
  end)

  it("runs 1,000 short jobs from a host that never turns its loop (the seed runs them all)", function()
    local m = h.manager { maxRunning = 16 }
    local last
    for _ = 1, 1000 do
      local r, err = m:call("createBackgroundProcess", { argv = { "true" } })
      if not r and err.code == "limit" then
        -- what runs is still starting: the limit holds only for jobs that run
        assert.is_true(h.wait_until(function()
          r, err = m:call("createBackgroundProcess", { argv = { "true" } })
          return r ~= nil or err.code ~= "limit"
        end, 10000), "a slot frees once a job exits")
      end
      assert(r, err and err.message)
      last = r
    end
    assert.truthy(last.id)
    assert.is_true(m:run_until(function() return m:record(last.id).status == "completed" end, 10000))
  end)
end)
