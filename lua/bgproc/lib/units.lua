-- Sizes and durations as people write them: "512M", "1.5G", "30s",
-- "15m", "2h", "7d". (How the CLI prints them: cli/cells.lua.)
local units = {}

local BYTES = { [""] = 1, K = 1 << 10, M = 1 << 20, G = 1 << 30, T = 1 << 40 }
local MS = { ms = 1, s = 1000, m = 60 * 1000, h = 3600 * 1000, d = 24 * 3600 * 1000 }

-- Bytes from "1048576", "512K", "256M", "1.5G" (also "512KiB", "2GB":
-- powers of 1024 all): a whole number, or nil.
function units.bytes(s)
  local num, unit = tostring(s):upper():match("^%s*(%d+%.?%d*)%s*([KMGT]?)I?B?%s*$")
  local n = num and tonumber(num)
  if not n then return nil end
  return math.tointeger(math.floor(n * BYTES[unit]))
end

-- Milliseconds from "500ms", "30s", "15m", "2h", "7d", "1.5h" (a unit
-- is required: a bare number could mean anything): a whole number, or nil.
function units.duration_ms(s)
  local num, unit = tostring(s):match("^%s*(%d+%.?%d*)%s*(%a+)%s*$")
  local n, scale = num and tonumber(num), unit and MS[unit:lower()]
  if not n or not scale then return nil end
  return math.tointeger(math.floor(n * scale))
end

return units
