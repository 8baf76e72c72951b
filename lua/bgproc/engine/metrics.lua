-- Ports, CPU and memory of running jobs, read on demand: at most once a
-- second per job, and for all the jobs one answer needs in one pass (one
-- walk of /proc: lib/usage.lua, lib/sockets.lua). Each job's last sample
-- is rec.m: { at, pids, cpuMs, cpuPercent, memoryBytes, memoryPeakBytes,
-- ports }; records.lua shows it.
local json = require "bgproc.lib.json"
local sockets = require "bgproc.lib.sockets"
local states = require "bgproc.engine.states"
local usage = require "bgproc.lib.usage"

local metrics = {}
local methods = {}
metrics.methods = methods

metrics.REFRESH_MS = 1000

local FINAL = states.FINAL

-- A job whose processes can be sampled: it runs.
local function sampleable(rec)
  return rec.job ~= nil and rec.pid ~= nil and not FINAL[rec.status]
end

-- CPU % of one core since the last sample (the first: since the run began).
local function cpu_percent(m, cpu_ms, now, started_mono)
  local since, cpu_before = m.at or started_mono, m.cpuMs or 0
  if not since or now <= since then return m.cpuPercent end
  return math.max(0, math.floor((cpu_ms - cpu_before) * 1000 / (now - since) + 0.5) / 10)
end

-- Sample recs (running jobs) now; with_ports: their listening sockets too.
function metrics.sample(self, recs, with_ports)
  if #recs == 0 then return end
  local targets = {}
  for i, rec in ipairs(recs) do targets[i] = { pgid = rec.pid, cgroup = rec.job:cgroup() } end
  -- /proc unreadable for now (out of fds, say): the last samples stay
  local got = usage.sample(targets)
  if not got then return end
  local ports
  if with_ports then
    local pid_lists = {}
    for i, u in ipairs(got) do pid_lists[i] = u.pids end
    ports = sockets.listening(pid_lists)
  end
  local now = self.sched.now()
  for i, rec in ipairs(recs) do
    local u, m = got[i], rec.m or { started = rec.started_mono or now }
    m.cpuPercent = cpu_percent(m, u.cpuMs, now, m.started)
    m.cpuMs, m.memoryBytes, m.pids = u.cpuMs, u.memoryBytes, u.pids
    m.memoryPeakBytes = math.max(u.memoryPeakBytes or 0, m.memoryPeakBytes or 0, u.memoryBytes)
    if ports then m.ports, m.ports_at = json.array(ports[i]), now end
    m.at = now
    rec.m = m
  end
end

-- Bring the samples of running recs, ports included, up to date: those
-- taken over max_age_ms ago (default REFRESH_MS).
function metrics.refresh(self, recs, max_age_ms)
  if self.running == 0 then return end
  local now, stale = self.sched.now(), {}
  local max_age = max_age_ms or metrics.REFRESH_MS
  for _, rec in ipairs(recs) do
    local m = rec.m
    if sampleable(rec) and (not m or not m.ports_at or now - m.ports_at >= max_age) then stale[#stale + 1] = rec end
  end
  metrics.sample(self, stale, true)
end

-- The ports rec listens on, sampled at most fresh_ms ago.
function methods:ports(rec, fresh_ms)
  if not sampleable(rec) then return json.array() end -- (a past run's ports are no one's)
  metrics.refresh(self, { rec }, fresh_ms)
  return rec.m and rec.m.ports or json.array()
end

return metrics
