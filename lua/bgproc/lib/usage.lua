-- CPU and memory of process groups (jobs), for the engine's figures. One
-- scan of /proc per sample() whatever the number of groups (sys.proc_scan:
-- one readdir, each /proc/<pid>/stat read once), plus, for a group with a
-- cgroup, that cgroup's few files.
local files = require "bgproc.lib.files"
local sys = require "bgproc.sys"

local usage = {}

local TICK_HZ = sys.clock_ticks()
local PAGE = sys.page_size()

local read = files.read -- a cgroup's small files: nil where missing

-- A cgroup file holding one integer (memory.current, memory.peak), or nil.
local function read_int(path)
  return math.tointeger(tonumber((read(path) or ""):match("^%s*(%d+)")))
end

-- The scan, indexed for targets: members[pgid] = { i, ... } (indices into
-- the scan's arrays) for the targets' groups only, and, when a target has
-- a cgroup, index[pid] = i for every process; or nil, msg, errname when
-- /proc cannot be read.
local function scan(targets)
  local s = { members = {} }
  for _, t in ipairs(targets) do
    assert(math.tointeger(t.pgid), "usage.sample: each target needs an integer pgid")
    s.members[t.pgid] = {}
    if t.cgroup then s.index = {} end
  end
  local pids, pgids, ticks, rss = sys.proc_scan()
  if not pids then return nil, pgids, ticks end
  s.pids, s.ticks, s.rss = pids, ticks, rss
  for i = 1, #pids do
    local list = s.members[pgids[i]]
    if list then list[#list + 1] = i end
    if s.index then s.index[pids[i]] = i end
  end
  return s
end

-- The live processes of a target, as indices into the scan: its group,
-- and with a readable cgroup.procs the processes of its cgroup too (those
-- that left the group with setsid). Only what the scan saw alive counts.
local function members_of(target, s)
  local rows, seen = {}, {}
  for k, i in ipairs(s.members[target.pgid]) do rows[k], seen[i] = i, true end
  local procs = target.cgroup and read(target.cgroup .. "/cgroup.procs")
  for pid in (procs or ""):gmatch("%d+") do
    local i = s.index[tonumber(pid)]
    if i and not seen[i] then rows[#rows + 1], seen[i] = i, true end
  end
  -- the scan is in pid order (/proc lists pids so); the cgroup's may not be
  table.sort(rows)
  return rows
end

-- The cgroup's own accounting, where it has both figures (cgroup v2 with
-- the memory controller): cpuMs, memoryBytes; else nil. Its CPU counts
-- the processes that have exited too, as a job's total should; its memory
-- counts the page cache the job caused as well as RSS.
-- Parent cgroups whose children have no memory.current (the controller is
-- not enabled there): not asked again, an open saved per job and sample.
local no_figures = {}

local function cgroup_figures(dir)
  local parent = dir:match("^(.*)/[^/]+$") or dir
  if no_figures[parent] then return nil end
  -- memory.current first: where it is missing, cpu.stat is not read
  local current = read_int(dir .. "/memory.current")
  if not current then
    -- the parent gives its children no memory controller: none of them has it
    if not (read(parent .. "/cgroup.subtree_control") or ""):find("%f[%w]memory%f[%W]") then
      no_figures[parent] = true
    end
    return nil
  end
  local usec = (read(dir .. "/cpu.stat") or ""):match("usage_usec (%d+)")
  if not usec then return nil end
  return math.tointeger(tonumber(usec)) // 1000, current
end

local function sample_one(target, s)
  local rows = members_of(target, s)
  local r = { pids = {}, cpuMs = 0, memoryBytes = 0, source = "proc" }
  local ticks, pages = 0, 0
  for k, i in ipairs(rows) do
    r.pids[k] = s.pids[i]
    ticks, pages = ticks + s.ticks[i], pages + s.rss[i]
  end
  -- a group with no live process is zeros, whatever its cgroup has kept
  local cpu, mem
  if target.cgroup and #rows > 0 then cpu, mem = cgroup_figures(target.cgroup) end
  if cpu then
    r.cpuMs, r.memoryBytes, r.source = cpu, mem, "cgroup"
    r.memoryPeakBytes = read_int(target.cgroup .. "/memory.peak")
  else
    -- summed before converting, so that rounding is done once
    r.cpuMs, r.memoryBytes = ticks * 1000 // TICK_HZ, pages * PAGE
  end
  return r
end

-- targets: { { pgid = int, cgroup = path or nil }, ... }. Returns, in the
-- same order, { pids = {...}, cpuMs = int, memoryBytes = int,
-- memoryPeakBytes = int or nil, source = "cgroup" | "proc" }; or nil,
-- msg, errname when /proc cannot be read.
function usage.sample(targets)
  local s, msg, errname = scan(targets)
  if not s then return nil, msg, errname end
  local out = {}
  for i, target in ipairs(targets) do out[i] = sample_one(target, s) end
  return out
end

return usage
