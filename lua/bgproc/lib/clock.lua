-- Clocks: wall time for records people read, monotonic time for timers.
local uv = require "luv"

local clock = {}

-- Wall-clock milliseconds since the epoch.
function clock.wall_ms()
  local sec, usec = uv.gettimeofday()
  return sec * 1000 + usec // 1000
end

-- ISO 8601 UTC time of ms (wall-clock milliseconds; default: now).
function clock.iso(ms)
  ms = math.floor(ms or clock.wall_ms())
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. (".%03dZ"):format(ms % 1000)
end

-- Monotonic milliseconds (fractional): never goes back, for durations.
function clock.now()
  return uv.hrtime() / 1e6
end

return clock
