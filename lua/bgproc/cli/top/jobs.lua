-- Job records as `bgproc top` shows them: the text of each cell (memory
-- in human units, ports, ages from ISO times), and which jobs in which
-- order (the filter, the sorts). Pure: the clock comes as an argument.
local cells = require "bgproc.cli.cells"
local display = require "bgproc.cli.top.display"

local jobs = {}

local sanitize = display.sanitize

-- ---- cells -----------------------------------------------------------------------------------

-- (the cells shared with `bgproc ls` and `show`: cli/cells.lua)
jobs.bytes, jobs.ports, jobs.age, jobs.epoch = cells.bytes, cells.ports, cells.age, cells.epoch

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
