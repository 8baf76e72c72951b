-- What the bench groups share: medians, /proc readings, timed loops.
local uv = require "luv"

local common = {}

function common.median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- A KiB field of /proc/<pid>/status (this process when pid is nil):
-- "VmRSS" now, "VmHWM" at its peak. nil when the process is gone.
function common.status_kib(field, pid)
  local f = io.open(pid and ("/proc/%d/status"):format(pid) or "/proc/self/status")
  if not f then return nil end
  for line in f:lines() do
    local v = line:match("^" .. field .. ":%s+(%d+)")
    if v then f:close() return tonumber(v) end
  end
  f:close()
end

-- Write `data` to the file at `path` (created or truncated).
function common.write_file(path, data)
  local f = assert(io.open(path, "w"))
  f:write(data)
  f:close()
end

-- Drive `loop` until `job` has exited and its pipes are drained.
function common.finish(loop, job)
  while job:alive() or not job:info().eof do loop:wait(1000) end
end

-- Runs of `one()` per second, after 20 runs to warm up.
function common.rate(n, one)
  for _ = 1, 20 do one() end
  local t0 = uv.hrtime()
  for _ = 1, n do one() end
  return n / ((uv.hrtime() - t0) / 1e9)
end

-- Median wall time of `one(i)` in ms over n calls.
function common.median_ms(n, one)
  local times = {}
  for i = 1, n do
    local t0 = uv.hrtime()
    one(i)
    times[i] = (uv.hrtime() - t0) / 1e6
  end
  return common.median(times)
end

-- The processes whose parent is `pid`, as ps prints `fields` for each.
function common.children(pid, fields)
  local ps = assert(io.popen(("exec ps -o %s= --ppid %d"):format(fields, math.tointeger(pid))))
  local lines = {}
  for line in ps:lines() do lines[#lines + 1] = line end
  ps:close()
  return lines
end

return common
