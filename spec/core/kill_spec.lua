-- bgproc.core: signalling whole process groups, by name or number, before
-- and after the leader is reaped, with zero survivors.
local core = require "bgproc.core"
local h = require "helpers"

describe("core kill", function()
  local loop
  before_each(function() loop = core.new() end)
  after_each(function() loop:close() end)

  local function members_after_start(job, n)
    assert.is_true(h.pump(loop, function() return #h.group(job:pid()) == n end, 3000),
      "group never reached " .. n .. " members")
    return h.group(job:pid())
  end

  it("kills a shell and both of its background children, leaving none", function()
    local job = assert(loop:spawn { command = "sleep 1000 & sleep 1000 & wait" })
    local pids = members_after_start(job, 3)
    assert.equal(1, job:kill()) -- TERM to the group
    assert.is_true(h.pump(loop, function() return not job:alive() end, 3000))
    assert.is_true(h.wait_until(function()
      for _, pid in ipairs(pids) do if h.alive(pid) then return false end end
      return true
    end, 2000))
    assert.equal(0, job:members())
    local _, sig = job:exit()
    assert.equal("TERM", sig)
  end)

  it("kills a double-forked grandchild that left the shell's tree", function()
    local job = assert(loop:spawn { command = "(sleep 1000 &); sleep 1000" })
    local pids = members_after_start(job, 3)
    job:kill("KILL")
    assert.is_true(h.wait_until(function()
      for _, pid in ipairs(pids) do if h.alive(pid) then return false end end
      return true
    end, 2000))
  end)

  it("accepts signals by name, SIG-name, lower case and number", function()
    for _, sig in ipairs { "TERM", "SIGTERM", "term", 15, "15" } do
      local job = assert(loop:spawn { argv = { "sleep", "100" } })
      assert.equal(1, job:kill(sig))
      h.finish(loop, job)
      assert.equal("TERM", select(2, job:exit()))
    end
    assert.equal(15, core.signum("TERM"))
    assert.equal("KILL", core.signame(9))
    assert.equal("RTMIN+2", core.signame(core.signum("RTMIN+2")))
    assert.equal(9, core.signals.KILL)
  end)

  it("raises on a bad signal", function()
    local job = assert(loop:spawn { argv = { "sleep", "100" } })
    assert.has_error(function() job:kill("BOGUS") end,
      "bad argument #1 to 'kill' (unknown signal 'BOGUS' (expected a name like TERM or a number))")
    assert.has_error(function() job:kill(99) end)
    assert.has_error(function() job:kill(1.5) end)
    assert.has_error(function() job:kill({}) end)
    assert.has_error(function() core.signum("RTMIN+99") end)
    job:close()
  end)

  it("answers a kill of a finished job with ESRCH, touching nothing", function()
    local job = assert(loop:spawn { argv = { "true" } })
    h.finish(loop, job)
    local ok, msg, name = job:kill("KILL")
    assert.is_nil(ok)
    assert.equal("ESRCH", name)
    assert.matches("process group", msg)
    ok, _, name = job:kill("KILL") -- twice
    assert.is_nil(ok)
    assert.equal("ESRCH", name)
  end)

  it("finds what is left of a group after its leader was reaped", function()
    local job = assert(loop:spawn { command = "sleep 1000 >/dev/null 2>&1 & echo started" })
    assert.is_true(h.pump(loop, function() return job:info().eof and not job:alive() end, 3000))
    assert.equal(0, (job:exit()))
    assert.equal(1, job:members())
    local survivor = h.group(job:pid())[1]
    assert.is_true(h.alive(survivor))
    assert.equal(1, job:kill("KILL"))
    assert.is_true(h.wait_until(function() return not h.alive(survivor) end, 2000))
    assert.equal(0, job:members())
    -- released once its id is free (its zombie reaped by whoever adopted it)
    assert.is_true(h.pump(loop, function() return job:info().group_empty end, 2000))
    local ok, _, name = job:kill("KILL")
    assert.is_nil(ok)
    assert.equal("ESRCH", name)
  end)

  it("notices when what a leader left behind exits, and forgets the group", function()
    local job = assert(loop:spawn { command = "sleep 0.3 >/dev/null 2>&1 </dev/null & echo x" })
    assert.is_true(h.pump(loop, function() return job:info().eof and not job:alive() end, 3000))
    assert.is_false(job:info().group_empty) -- the sleep still holds it
    assert.is_true(h.pump(loop, function() return job:info().group_empty end, 3000))
    local ok, _, name = job:kill("KILL")
    assert.is_nil(ok)
    assert.equal("ESRCH", name)
  end)

  it("forgets a tracked group whose id a new job receives (it must be empty)", function()
    local f = io.open("/proc/sys/kernel/ns_last_pid", "w")
    if not f then
      pending("needs root to choose the next pid")
      return
    end
    f:close()
    local old = assert(loop:spawn { command = "sleep 0.2 >/dev/null 2>&1 </dev/null & echo x" })
    assert.is_true(h.pump(loop, function() return old:info().eof and not old:alive() end, 3000))
    local P = old:pid()
    -- the sleep is gone, and no dispatch has looked yet
    assert.is_true(h.wait_until(function() return #h.group(P) == 0 end, 5000), "the sleep outlived 5 s")
    assert.is_false(old:info().group_empty)
    f = assert(io.open("/proc/sys/kernel/ns_last_pid", "w"))
    f:write(tostring(P - 1))
    f:close()
    local new = assert(loop:spawn { argv = { "sleep", "30" } })
    if new:pid() ~= P then
      new:close()
      pending("another process took pid " .. P)
      return
    end
    assert.is_true(old:info().group_empty)
    local ok, _, name = old:kill("KILL") -- must not reach the new job
    assert.is_nil(ok)
    assert.equal("ESRCH", name)
    assert.is_true(new:alive())
    new:close()
  end)

  it("ends the group on job:close() and on loop:close()", function()
    local a = assert(loop:spawn { command = "sleep 1000 & wait" })
    local b = assert(loop:spawn { command = "sleep 1000 & wait" })
    local pa = members_after_start(a, 2)
    local pb = members_after_start(b, 2)
    a:close()
    for _, pid in ipairs(pa) do assert.is_false(h.alive(pid)) end
    loop:close()
    assert.is_true(h.wait_until(function()
      for _, pid in ipairs(pb) do if h.alive(pid) then return false end end
      return true
    end, 2000))
    assert.equal("exited", b:info().state)
    loop = core.new() -- for after_each
  end)

  -- regression: closing waited 5 s on a leader that the kill inside close
  -- had already found dead and reaped
  it("closes at once a loop whose killed leader is dead but not yet reaped", function()
    local job = assert(loop:spawn { command = "sleep 1000 & wait" })
    local pids = members_after_start(job, 2)
    job:kill("KILL")
    assert.is_true(h.wait_until(function() return (h.stat(job:pid()) or {}).state == "Z" end, 2000),
      "the leader never became a zombie")
    local t0 = h.now_ms()
    loop:close()
    assert.is_true(h.now_ms() - t0 < 1000, "loop:close() took " .. (h.now_ms() - t0) .. " ms")
    assert.equal("KILL", select(2, job:exit()))
    for _, pid in ipairs(pids) do assert.is_false(h.alive(pid)) end
    loop = core.new() -- for after_each
  end)

  it("ends the group when an unreferenced job is collected", function()
    local survivor
    do
      local job = assert(loop:spawn { command = "sleep 1000 >/dev/null 2>&1 & echo x" })
      h.finish(loop, job)
      survivor = h.group(job:pid())[1]
    end
    assert.truthy(survivor)
    collectgarbage()
    collectgarbage()
    assert.is_true(h.wait_until(function() return not h.alive(survivor) end, 2000))
  end)
end)
