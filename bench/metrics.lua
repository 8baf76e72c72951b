-- Benchmarks of the readers the engine samples jobs with (issue 11):
-- bgproc.lib.usage and bgproc.lib.sockets over running jobs.
local core = require "bgproc.core"
local common = require "common"

local benches = {}

-- A listener: binds the kinds it is given on loopback, says "up", holds
-- them until stdin ends.
local LISTENER = [[
local uv = require "luv"
local held = {}
for kind in ("%s"):gmatch("%%S+") do
  local s = kind:sub(1, 3) == "tcp" and uv.new_tcp() or uv.new_udp()
  assert(s:bind(kind:sub(4) == "6" and "::1" or "127.0.0.1", 0))
  if kind:sub(1, 3) == "tcp" then assert(s:listen(8, function() end)) end
  held[#held + 1] = s
end
print("up") io.stdout:flush() io.read("a")
]]

-- Job i: 1 to 3 processes, 1 or 2 listeners (one held by a child of the
-- group's leader in two jobs out of three).
local function argv_of(i)
  local lua = { "lua5.4", "-e", LISTENER:format(i % 2 == 0 and "tcp4 udp4" or "tcp6") }
  if i % 3 == 0 then return lua end
  local sh = { "sh", "-c", 'exec 3<&0; "$@" <&3 & wait', "sh" }
  if i % 3 == 2 then sh[3] = 'exec 3<&0; sleep 1000 & "$@" <&3 & wait' end
  for _, a in ipairs(lua) do sh[#sh + 1] = a end
  return sh
end

-- Start n jobs and wait until all listen; run fn(jobs); stop them.
local function with_jobs(n, fn)
  local loop = core.new()
  local jobs = {}
  for i = 1, n do jobs[i] = assert(loop:spawn { argv = argv_of(i), stdin = "pipe" }) end
  for _, job in ipairs(jobs) do
    while not (job:read(0) or ""):find("up\n", 1, true) do
      assert(job:alive(), "a listener failed: " .. tostring((job:read(0))))
      loop:wait(100)
    end
  end
  local res = table.pack(pcall(fn, jobs))
  for _, job in ipairs(jobs) do job:close() end
  loop:close()
  assert(res[1], res[2])
  return table.unpack(res, 2, res.n)
end

benches.metrics = {
  title = "metrics: refresh the ports and usage of 100 running jobs (1-3 processes each)",
  unit = "ms",
  target = "median <= 20 ms",
  lower_is_better = true,
  params = { jobs = 100, refreshes = 50 },
  run = function(p)
    local usage, sockets = require "bgproc.lib.usage", require "bgproc.lib.sockets"
    return with_jobs(p.jobs, function(jobs)
      local targets = {}
      for i, job in ipairs(jobs) do targets[i] = { pgid = job:pid(), cgroup = job:cgroup() } end
      local found, parts = 0, { usage = {}, ports = {} }
      local function refresh(i)
        local t0 = os.clock()
        local samples = usage.sample(targets)
        local pid_lists = {}
        for k, s in ipairs(samples) do pid_lists[k] = s.pids end
        local t1 = os.clock()
        found = 0
        for _, list in ipairs(sockets.listening(pid_lists)) do found = found + #list end
        parts.usage[i], parts.ports[i] = (t1 - t0) * 1000, (os.clock() - t1) * 1000
      end
      for i = 1, 5 do refresh(i) end -- warm up
      local ms = common.median_ms(p.refreshes, refresh)
      local want = p.jobs // 2 * 2 + (p.jobs - p.jobs // 2)
      assert(found == want, ("found %d listeners, want %d"):format(found, want))
      io.stderr:write(("metrics: %d jobs, %d listeners: usage %.2f ms + ports %.2f ms (CPU, medians)\n")
        :format(p.jobs, found, common.median(parts.usage), common.median(parts.ports)))
      return ms, { listeners = found, usage_cpu_ms = common.median(parts.usage),
                   ports_cpu_ms = common.median(parts.ports) }
    end)
  end,
  -- ss reads the same tables and every process's fds, in C
  baseline_title = "`ss -tulpn` (iproute2, C) run over the same 100 jobs",
  baseline_fn = function(p)
    return with_jobs(p.jobs, function()
      local loop = core.new()
      local ms = common.median_ms(p.refreshes, function()
        local ss = assert(loop:spawn { argv = { "ss", "-tulpn" } })
        common.finish(loop, ss)
        assert(ss:exit() == 0, "ss failed")
      end)
      loop:close()
      return ms
    end)
  end,
  ok = function(r) return r.value <= 20 end,
}

return benches
