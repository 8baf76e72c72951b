-- bgproc.core: per-job cgroup v2 leaves and processes that leave a job's
-- session (setsid). With a writable cgroup2 subtree each job runs in a
-- leaf of its loop's directory from its first instruction; job:escaped()
-- names what left the group, job:kill_cgroup() kills it, and close
-- removes the directories. Without one (cgroup = false, or a machine
-- without cgroup2) escapees are found through their parents and left
-- running. Every process carries a random marker (helpers.marked).
local core = require "bgproc.core"
local h = require "helpers"

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local probe = core.new()
local HAS_CGROUP, WHY = probe:cgroup()
probe:close()

local function need_cgroup()
  if not HAS_CGROUP then pending("no writable cgroup v2 here: " .. tostring(WHY)) end
  return HAS_CGROUP ~= nil
end

describe("core cgroups", function()
  local token, loop
  before_each(function() token = h.new_marker() end)
  after_each(function()
    if loop then loop:close() end
    loop = nil
    h.kill_marked(token)
  end)

  local function spawn(command, opts)
    local o = { command = command, env = { [h.MARK] = token } }
    for k, v in pairs(opts or {}) do o[k] = v end
    return assert(loop:spawn(o))
  end

  -- Wait until job:escaped() lists n processes whose command is a sleep.
  local function escapees(job, n)
    local list
    assert.is_true(h.pump(loop, function()
      list = {}
      for _, e in ipairs(job:escaped()) do
        if e.command:match("^sleep ") then list[#list + 1] = e end
      end
      return #list >= n
    end, 5000), "escapees did not show up")
    return list
  end

  it("checks its option, and says why there is no cgroup when off", function()
    assert.has_error(function() core.new { cgroup = "yes" } end,
      "new: option 'cgroup' must be a boolean, got string")
    loop = core.new { cgroup = false }
    local dir, why = loop:cgroup()
    assert.is_nil(dir)
    assert.equal("disabled (cgroup = false)", why)
    local job = spawn("exit 0")
    h.finish(loop, job)
    assert.is_nil(job:cgroup())
    local ok, msg, name = job:kill_cgroup()
    assert.is_nil(ok)
    assert.equal("EOPNOTSUPP", name) -- ENOTSUP, as Linux names it
    assert.matches("has no cgroup", msg)
  end)

  it("runs each job in its own leaf from the start, with only fds 0-2", function()
    if not need_cgroup() then return end
    loop = core.new()
    local dir = loop:cgroup()
    assert.matches("/bgproc%-%d+%-%d+$", dir)
    local job = spawn("cat /proc/self/cgroup; ls /proc/self/fd")
    local leaf = job:cgroup()
    assert.equal(dir, leaf:match("^(.*)/job%-%d+$"))
    local out = h.finish(loop, job)
    local rel = out:match("0::(%S+)")
    assert.truthy(rel, out)
    assert.equal(leaf:sub(-#rel), rel) -- the leaf, as /proc shows it
    -- cat's fds were 0-2; ls lists its own directory fd too
    assert.equal("0\n1\n2\n3\n", out:match("\n(0\n.*)$"))
  end)

  it("makes its directory when first needed; removes those of dead hosts", function()
    if not need_cgroup() then return end
    local base = HAS_CGROUP:match("^(.*)/[^/]+$")
    local function ours()
      local n = 0
      local p = assert(io.popen("ls " .. base))
      for name in p:lines() do
        if name:match("^bgproc%-" .. h.self_pid() .. "%-") then n = n + 1 end
      end
      p:close()
      return n
    end
    loop = core.new()
    assert.equal(0, ours()) -- a host that never spawns leaves nothing behind
    -- a directory left by a host that died unguarded: its pid is free now
    local gone = core.new { cgroup = false }
    local dead = assert(gone:spawn { argv = { "true" } })
    h.finish(gone, dead)
    local stale = ("%s/bgproc-%d-7"):format(base, dead:pid())
    gone:close()
    assert.is_true(os.execute("mkdir " .. stale .. " " .. stale .. "/job-1"))
    spawn("exit 0")
    assert.equal(1, ours())
    assert.is_false(exists(stale .. "/cgroup.procs"))
  end)

  it("runs a job without a cgroup when it may not join one, and stops trying", function()
    if not need_cgroup() then return end
    loop = core.new()
    local dir = loop:cgroup()
    -- a threaded child makes the directory a threaded domain: a new leaf
    -- beside it is "domain invalid" and cannot take processes (jobs already
    -- in a leaf would keep theirs: only new leaves are given up)
    assert.is_true(os.execute("mkdir " .. dir .. "/t && echo threaded > " .. dir .. "/t/cgroup.type"))
    local job = spawn("setsid sleep 1000 & exec sleep 1000")
    assert.is_nil(job:cgroup())
    local none, why = loop:cgroup()
    assert.is_nil(none)
    assert.matches("cannot join a cgroup", why)
    assert.equal(1, #escapees(job, 1)) -- found through its parent instead
    assert.is_nil(spawn("exit 0"):cgroup())
    loop:close()
    loop = nil
    assert.is_false(exists(dir .. "/cgroup.procs")) -- removed at close
    assert.equal(1, #h.marked(token)) -- the escapee: no leaf, left to us
  end)

  it("runs a job without a cgroup when its leaf cannot be made", function()
    if not need_cgroup() then return end
    loop = core.new()
    local dir = loop:cgroup()
    assert.is_true(os.execute("echo 0 > " .. dir .. "/cgroup.max.descendants"))
    local job = spawn("exit 3")
    assert.is_nil(job:cgroup())
    h.finish(loop, job)
    assert.equal(3, job:exit())
    assert.equal(dir, loop:cgroup()) -- the next job may get one
  end)

  it("removes the leaf of a job that ended with nothing left", function()
    if not need_cgroup() then return end
    loop = core.new()
    local job = spawn("exit 0")
    local leaf = job:cgroup()
    assert.is_true(exists(leaf .. "/cgroup.procs"))
    h.finish(loop, job)
    assert.is_true(h.pump(loop, function() return job:info().group_empty end, 2000))
    assert.is_false(exists(leaf .. "/cgroup.procs"))
    assert.is_nil(job:cgroup())
  end)

  it("lists a setsid child as escaped, and kill_cgroup ends it", function()
    if not need_cgroup() then return end
    loop = core.new()
    local job = spawn("setsid sleep 1000 & exec sleep 1000")
    local list = escapees(job, 1)
    assert.equal(1, #list)
    local pid = list[1].pid
    assert.equal("sleep 1000", list[1].command)
    assert.are_not.equal(job:pid(), h.stat(pid).sid)
    job:kill("KILL")
    h.pump(loop, function() return not job:alive() end, 5000)
    assert.is_true(h.alive(pid)) -- a group kill does not reach it
    assert.same({ pid }, h.marked(token))
    assert.is_true(job:kill_cgroup())
    assert.is_true(h.wait_until(function() return #h.marked(token) == 0 end, 2000))
    local leaf = job:cgroup()
    assert.is_true(h.pump(loop, function() return #job:escaped() == 0 end, 2000))
    assert.is_false(exists(leaf .. "/cgroup.procs")) -- empty now: removed
  end)

  it("signals the escapees alone, each checked, with signal_escaped", function()
    if not need_cgroup() then return end
    loop = core.new()
    local job = spawn("setsid sleep 1000 & exec sleep 1000")
    local pid = escapees(job, 1)[1].pid
    assert.equal(1, job:signal_escaped("TERM"))
    assert.is_true(h.wait_until(function() return not h.alive(pid) end, 2000))
    assert.is_true(job:alive()) -- the group got nothing
    assert.equal(0, job:signal_escaped())
    assert.has_error(function() job:signal_escaped("NOPE") end)
    local plain = core.new { cgroup = false }
    local other = assert(plain:spawn { argv = { "sleep", "1000" }, env = { [h.MARK] = token } })
    assert.equal(0, other:signal_escaped("KILL")) -- no leaf: nothing to signal
    plain:close()
  end)

  it("keeps the leaf while an escapee outlives its job; close kills it", function()
    if not need_cgroup() then return end
    loop = core.new()
    local job = spawn("setsid sh -c 'sleep 1000 & exit 0'; exit 0") -- a double fork
    local list = escapees(job, 1)
    -- the escapee holds the output pipes: the job exits but never reaches EOF
    assert.is_true(h.pump(loop, function() return job:info().group_empty end, 5000))
    local leaf = job:cgroup()
    assert.truthy(leaf)
    assert.same({ list[1].pid }, h.marked(token))
    job:close()
    assert.is_true(h.wait_until(function() return #h.marked(token) == 0 end, 2000))
    assert.is_false(exists(leaf .. "/cgroup.procs"))
  end)

  it("loop:close kills every escapee and removes its directory", function()
    if not need_cgroup() then return end
    loop = core.new()
    local dir = loop:cgroup()
    local a = spawn("setsid sleep 1000 & exec sleep 1000")
    local b = spawn("setsid sh -c 'sleep 1000 & exit 0'; exec sleep 1000")
    escapees(a, 1)
    escapees(b, 1)
    assert.equal(4, #h.marked(token))
    loop:close()
    loop = nil
    assert.is_true(h.wait_until(function() return #h.marked(token) == 0 end, 2000))
    assert.is_false(exists(dir .. "/cgroup.procs"))
  end)

  it("lets a process started in a job leave its leaf for its host's cgroup", function()
    if not need_cgroup() then return end
    loop = core.new()
    local job = assert(loop:spawn {
      argv = { h.lua, "-e", [[
        local core = require "bgproc.core"
        local before = io.open("/proc/self/cgroup"):read("a"):match("0::(%S+)")
        local moved = core.leave_job_cgroup()
        local after = io.open("/proc/self/cgroup"):read("a"):match("0::(%S+)")
        print(before, tostring(moved), after, tostring(core.leave_job_cgroup()))]] },
      env = h.lua_env(),
    })
    local before, moved, after, again = h.finish(loop, job):match("^(%S+)\t(%S+)\t(%S+)\t(%S+)")
    assert.matches("/bgproc%-%d+%-%d+/job%-%d+$", before)
    assert.equal("true", moved)
    assert.equal(before:gsub("/bgproc%-%d+%-%d+/job%-%d+$", ""), after == "/" and "" or after)
    assert.equal("false", again) -- not in a leaf any more
  end)

  it("without a cgroup, finds escapees through their parents and leaves them", function()
    loop = core.new { cgroup = false }
    local job = spawn("setsid sh -c 'sleep 1000 & wait' & exec sleep 1000")
    local list = escapees(job, 1)
    assert.is_true(h.pump(loop, function() return #job:escaped() == 2 end, 5000))
    -- a batch: one /proc scan, one list per job, in order
    local plain = spawn("exec sleep 1000")
    local lists = core.escaped { plain, job }
    assert.same({}, lists[1])
    assert.equal(2, #lists[2])
    assert.has_error(function() core.escaped { plain, 42 } end, "escaped: item 2 must be an open job")
    plain:close()
    assert.has_error(function() plain:escaped() end, "attempt to use a closed job")
    job:close()
    local left = h.marked(token)
    assert.equal(2, #left) -- the setsid shell and its sleep
    assert.is_true(h.alive(list[1].pid))
  end)
end)
