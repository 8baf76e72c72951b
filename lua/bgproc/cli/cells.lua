-- Cells of the CLI's tables: sizes, ports and ages as `bgproc ls`,
-- `show` and `top` print them. Pure: the clock comes as an argument.
local cells = {}

-- 512B, 40K, 1.5M, 12M, 3.2G; "-" when unknown.
function cells.bytes(n)
  if type(n) ~= "number" then return "-" end
  local units = { "B", "K", "M", "G", "T" }
  local i = 1
  while n >= 1024 and i < #units do
    n = n / 1024
    i = i + 1
  end
  if i == 1 then return ("%d%s"):format(n, units[i]) end
  return (n < 10 and "%.1f%s" or "%.0f%s"):format(n, units[i])
end

-- "3000,5173" (udp ones as "53/udp"), each port once; "-" when unknown.
function cells.ports(list)
  if type(list) ~= "table" then return "-" end
  local seen, out = {}, {}
  for _, p in ipairs(list) do
    local s = ("%d"):format(p.port or 0) .. (p.protocol == "udp" and "/udp" or "")
    if not seen[s] then
      seen[s] = true
      out[#out + 1] = s
    end
  end
  return #out > 0 and table.concat(out, ",") or ""
end

-- "45s", "3m", "2h", "4d".
function cells.age(secs)
  if not secs then return "-" end
  secs = math.max(0, math.floor(secs))
  if secs < 60 then return secs .. "s" end
  if secs < 3600 then return secs // 60 .. "m" end
  if secs < 86400 then return secs // 3600 .. "h" end
  return secs // 86400 .. "d"
end

-- Days since 1970-01-01 of a civil date (proleptic Gregorian), so an ISO
-- time in UTC becomes epoch seconds without the local time zone.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * (m > 2 and m - 3 or m + 9) + 2) // 5 + d - 1
  return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
end

-- Epoch seconds of "2026-12-07T03:34:10.435Z", or nil. Records are
-- refetched every frame but their start never changes: cached.
local epoch_cache, cached = {}, 0
function cells.epoch(iso)
  if type(iso) ~= "string" then return nil end
  local t = epoch_cache[iso]
  if t then return t end
  local y, mo, d, h, mi, s = iso:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):([%d.]+)")
  if not y then return nil end
  t = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400 + h * 3600 + mi * 60 + tonumber(s)
  if cached > 10000 then epoch_cache, cached = {}, 0 end
  epoch_cache[iso], cached = t, cached + 1
  return t
end

return cells
