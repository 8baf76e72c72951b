-- bgproc.core: the guardian. When the process holding the core dies, even
-- by SIGKILL, every process group it started is ended within 1 s.
local core = require "bgproc.core"
local h = require "helpers"

describe("core guardian", function()
  local loop
  before_each(function() loop = core.new() end)
  after_each(function() loop:close() end)

  -- Start spec/fixtures/manager.lua in `mode`; return its job, the live
  -- members of every group it started, and its guardian's pid.
  local function start_manager(mode)
    local manager = assert(loop:spawn {
      argv = { h.lua, h.fixture("manager.lua"), mode },
      env = h.lua_env(),
    })
    local line
    assert.is_true(h.pump(loop, function()
      line = (manager:read(0, nil, "stdout")):match("^([^\n]*)\n")
      return line or not manager:alive()
    end, 5000), "manager did not report")
    assert.truthy(line, "manager failed: " .. manager:read(0))
    local pgids, guardian = {}, tonumber(line:match("guardian (%d+)"))
    for id in line:gmatch("(%d+) ") do pgids[#pgids + 1] = tonumber(id) end
    local members = {}
    for _, pgid in ipairs(pgids) do
      for _, pid in ipairs(h.group(pgid)) do members[#members + 1] = pid end
    end
    return manager, members, guardian, pgids
  end

  local function all_gone(pids)
    for _, pid in ipairs(pids) do if h.alive(pid) then return false end end
    return true
  end

  it("ends every group within 1 s of the host being SIGKILLed", function()
    local manager, members, guardian = start_manager("hold")
    assert.is_true(#members >= 7, "expected the jobs and their children, got " .. #members)
    assert.is_true(h.alive(guardian))
    manager:kill("KILL")
    local t0 = h.now_ms()
    assert.is_true(h.wait_until(function() return all_gone(members) end, 1000, 5),
      "survivors after 1 s")
    assert.is_true(h.now_ms() - t0 <= 1000)
    assert.is_true(h.wait_until(function() return not h.alive(guardian) end, 1000))
    h.finish(loop, manager)
  end)

  it("ends every group when the host exits without closing the core", function()
    local manager, members, guardian = start_manager("exit")
    h.finish(loop, manager)
    assert.is_true(h.wait_until(function() return all_gone(members) end, 1000, 5))
    assert.is_true(h.wait_until(function() return not h.alive(guardian) end, 1000))
  end)

  it("ends every group when the host exits closing its Lua state", function()
    local manager, members = start_manager("close")
    h.finish(loop, manager)
    -- __gc ran loop:close(): nothing left by the time the host is gone
    assert.is_true(h.wait_until(function() return all_gone(members) end, 500, 5))
  end)

  it("is restarted when it dies, and still protects the jobs", function()
    local manager, members, guardian = start_manager("restart")
    assert.matches("guardian %d+ %-> " .. guardian, (manager:read(0, nil, "stderr")))
    manager:kill("KILL")
    assert.is_true(h.wait_until(function() return all_gone(members) end, 1000, 5))
    h.finish(loop, manager)
  end)

  it("is not started until the first spawn, and runs as its own session", function()
    assert.is_nil(loop:guardian())
    local job = assert(loop:spawn { argv = { "true" } })
    local g = loop:guardian()
    assert.truthy(g)
    -- the fork names itself and calls setsid after spawn has returned
    local function comm()
      local f = io.open("/proc/" .. g .. "/comm")
      local name = f and f:read("l")
      if f then f:close() end
      return name
    end
    assert.is_true(h.wait_until(function()
      return comm() == "bgproc-guardian" and h.stat(g).sid == g
    end, 2000, 5), "guardian comm " .. tostring(comm()))
    h.finish(loop, job)
    loop:close()
    assert.is_false(h.alive(g))
    assert.same({}, h.zombies_of(h.self_pid()))
    loop = core.new()
  end)

  it("can be turned off", function()
    local l2 = core.new { guardian = false }
    local job = assert(l2:spawn { argv = { "true" } })
    assert.is_nil(l2:guardian())
    h.finish(l2, job)
    l2:close()
  end)
end)
