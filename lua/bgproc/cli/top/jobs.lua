-- Job records as `bgproc top` shows them: the text of each cell (memory
-- in human units, ports, ages from ISO times), and which jobs in which
-- order (the filter, the sorts). Pure: the clock comes as an argument.
local display = require "bgproc.cli.top.display"

local jobs = {}

local sanitize = display.sanitize

-- ---- cells -----------------------------------------------------------------------------------

-- 512B, 40K, 1.5M, 12M, 3.2G; "-" when unknown.
function jobs.bytes(n)
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
function jobs.ports(list)
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
function jobs.age(secs)
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
function jobs.epoch(iso)
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

-- A figure of the job's processes (pid, CPU, memory), or nil once they
-- are gone: a finished record keeps its last sample, no longer true.
local function live(p, field)
  local v = p[field]
  if p.status ~= "running" or type(v) ~= "number" then return nil end
  return v
end

local function cpu_text(p)
  local v = live(p, "cpuPercent")
  return v and ("%.1f"):format(v) or "-"
end

local function pid_text(p)
  local v = live(p, "pid")
  return v and ("%d"):format(v) or "-"
end

-- ---- filter and sort ------------------------------------------------------------------------

jobs.SORTS = { "cpu", "memory", "age", "name", "status" }

-- Most interesting first: what runs, then what failed.
local STATUS_RANK = { running = 1, pending = 2, failed = 3, cancelled = 4, completed = 5 }

-- Per sort, the record's key and whether higher comes first.
local KEYS = {
  cpu = { function(p) return live(p, "cpuPercent") or -1 end, true },
  memory = { function(p) return live(p, "memoryBytes") or -1 end, true },
  age = { function(p) return -(jobs.epoch(p.startedAt) or 0) end, true }, -- oldest first
  name = { function(p) return tostring(p.name or ""):lower() end, false },
  status = { function(p) return STATUS_RANK[p.status] or 9 end, false },
}

-- Does job p match the filter (a lowercase substring of its name, id or a tag)?
local function matches(p, needle)
  if tostring(p.name or ""):lower():find(needle, 1, true) or tostring(p.id):lower():find(needle, 1, true) then
    return true
  end
  for _, t in ipairs(p.tags or {}) do
    if tostring(t):lower():find(needle, 1, true) then return true end
  end
  return false
end

-- The records to show: those matching filter (any when empty), ordered by
-- sort, ties broken by status (running first) and then the newest first.
function jobs.select(records, filter, sort)
  local needle = filter and filter:lower() or ""
  local key, desc = KEYS[sort][1], KEYS[sort][2]
  local items = {}
  for _, p in ipairs(records) do
    if needle == "" or matches(p, needle) then
      items[#items + 1] = { p = p, k = key(p), rank = STATUS_RANK[p.status] or 9, t = jobs.epoch(p.startedAt) or 0 }
    end
  end
  table.sort(items, function(a, b)
    if a.k ~= b.k then
      if desc then return a.k > b.k end
      return a.k < b.k
    end
    if a.rank ~= b.rank then return a.rank < b.rank end
    if a.t ~= b.t then return a.t > b.t end
    return tostring(a.p.id) < tostring(b.p.id)
  end)
  local out = {}
  for i, it in ipairs(items) do out[i] = it.p end
  return out
end

-- The text of each column for job p (now: epoch seconds, for its age).
jobs.CELLS = {
  id = function(p) return sanitize(p.id) end,
  name = function(p) return sanitize(p.name) end,
  status = function(p) return sanitize(p.status) end,
  pid = pid_text,
  cpu = cpu_text,
  mem = function(p) return jobs.bytes(live(p, "memoryBytes")) end,
  ports = function(p) return p.status == "running" and jobs.ports(p.ports) or "-" end,
  age = function(p, now) return jobs.age(now and jobs.epoch(p.startedAt) and now - jobs.epoch(p.startedAt)) end,
  last = function(p) return sanitize(p.lastLine) end,
}

-- How many of records are running.
function jobs.running(records)
  local n = 0
  for _, p in ipairs(records) do
    if p.status == "running" then n = n + 1 end
  end
  return n
end

return jobs
