-- bgproc.lib.usage: CPU and memory of process groups, against real
-- processes (busy loops, allocations, a process that left its group).
local h = require "helpers"
local spawned = require "support.spawned"
local usage = require "bgproc.lib.usage"

local GONE = 2 ^ 22 + 1 -- above the kernel's pid_max: never a group

local function sample(target)
  return usage.sample({ target })[1]
end

-- A cgroup with the kernel's own accounting (cgroup v2 with the memory
-- controller); without one usage reads /proc.
local function accounted(dir)
  local f = dir and io.open(dir .. "/memory.current")
  if f then f:close() end
  return f ~= nil
end

describe("bgproc.lib.usage", function()
  local s
  before_each(function() s = spawned.new() end)
  after_each(function() s:stop() end)

  it("counts the CPU of a busy loop as it grows", function()
    local job = s:start { h.lua, "-e", "print('up') io.stdout:flush() while true do end" }
    s:line(job, "up\n")
    local first = sample { pgid = job:pid() }
    assert.same({ job:pid() }, first.pids)
    assert.equal("proc", first.source)
    assert.is_nil(first.memoryPeakBytes)
    assert.is_true(first.memoryBytes > 0)
    local later = h.wait_until(function()
      local r = sample { pgid = job:pid() }
      return r.cpuMs >= first.cpuMs + 200 and r
    end, 15000)
    assert.truthy(later, "the busy loop's CPU did not grow")
    assert.is_true(math.type(later.cpuMs) == "integer" and math.type(later.memoryBytes) == "integer")
  end)

  it("counts the memory a child of the group allocates", function()
    -- sh leads the group; lua, its child, allocates once told to
    -- (a background job's stdin is /dev/null unless given: fd 3 is ours)
    local job = s:sh [[exec 3<&0; "$0" -e '
      print("up") io.stdout:flush()
      io.read("l")
      local t = {} for i = 1, 2e6 do t[i] = i end
      print("grown") io.stdout:flush()
      io.read("a")' <&3 & wait]]
    s:line(job, "up\n")
    local before = sample { pgid = job:pid() }
    assert.equal(2, #before.pids, "sh and its child")
    assert.truthy(before.pids[1] == job:pid() or before.pids[2] == job:pid())
    job:write("go\n")
    s:line(job, "grown\n")
    -- 2e6 integers in a Lua array are 32 MB
    local after = h.wait_until(function()
      local r = sample { pgid = job:pid() }
      return r.memoryBytes >= before.memoryBytes + 24e6 and r
    end, 10000)
    assert.truthy(after, "the child's allocation was not counted")
  end)

  it("counts a process that left the group (setsid) through the job's cgroup", function()
    local job = s:sh [[exec 3<&0; setsid "$0" -e 'print(io.open("/proc/self/stat"):read("n")) io.stdout:flush() io.read("a")' <&3 & wait]]
    local escapee = tonumber(s:line(job, "(%d+)\n"))
    local dir = job:cgroup()
    if not dir then pending("no writable cgroup v2 here") return end
    assert.is_true(h.wait_until(function() return h.stat(escapee).pgrp == escapee end, 5000))
    local r = usage.sample { { pgid = job:pid() }, { pgid = job:pid(), cgroup = dir } }
    assert.same({ job:pid() }, r[1].pids, "without its cgroup only the group is known")
    assert.same({ job:pid(), escapee }, r[2].pids)
    assert.is_true(r[2].memoryBytes > r[1].memoryBytes)
    if accounted(dir) then
      assert.equal("cgroup", r[2].source)
      assert.is_number(r[2].memoryPeakBytes)
    else
      -- here: cgroup v2 without its memory controller (memory.current missing)
      assert.equal("proc", r[2].source)
      assert.is_nil(r[2].memoryPeakBytes)
    end
  end)

  it("leaves out a zombie of the group", function()
    -- sh's child exits unreaped once sh has exec'd lua, which never waits
    local job = s:sh [[true & exec "$0" -e 'print("up") io.stdout:flush() io.read("a")']]
    s:line(job, "up\n")
    assert.is_true(h.wait_until(function() return #h.zombies_of(job:pid()) == 1 end, 5000))
    assert.same({ job:pid() }, sample({ pgid = job:pid() }).pids)
  end)

  it("gives zeros for a group with no live process, in the order asked", function()
    local job = s:start { h.lua, "-e", "print('up') io.stdout:flush() io.read('a')" }
    s:line(job, "up\n")
    local r = usage.sample { { pgid = GONE }, { pgid = job:pid() + 0.0 }, { pgid = GONE, cgroup = "/nonexistent" } }
    assert.equal(3, #r)
    assert.same({ pids = {}, cpuMs = 0, memoryBytes = 0, source = "proc" }, r[1])
    assert.same({ job:pid() }, r[2].pids, "a pgid as JSON decodes it (a float) names the same group")
    assert.same(r[1], r[3])
    assert.same({}, usage.sample {})
    assert.has_error(function() usage.sample { { pgid = "x" } } end)
  end)
end)
