-- Stopping jobs: signal each job's group, wait graceMs, KILL what is
-- left, and confirm that every group is gone. Processes that left their
-- group (setsid) are found, reported, and ended through the job's cgroup
-- where there is one.
local core = require "bgproc.core"
local events = require "bgproc.engine.events"
local json = require "bgproc.lib.json"
local proc = require "bgproc.lib.proc"
local records = require "bgproc.engine.records"
local states = require "bgproc.engine.states"

local stop = {}
local methods = {}
stop.methods = methods

local gone = states.gone

-- A stop is of one run: the job the record had when it was marked. A
-- restart may give the record a new run meanwhile; the stop then leaves
-- it alone, and counts as done.
local function run_over(rec)
  return rec.job ~= rec.stop_job or gone(rec)
end

-- A signal given by name or number: its number and name, or nil and a
-- message naming what was expected.
function stop.signal(sig)
  local ok, num = pcall(core.signum, sig)
  if not ok or num == 0 then
    return nil, ("unknown signal %s (expected a name like TERM or a number 1-64)"):format(tostring(sig))
  end
  return num, core.signame(num)
end

-- Processes of each job outside its group (setsid...) seen so far, by
-- pid: noted before the first signal (without a cgroup they are found
-- through their parents, which the kill ends) and again at the KILL step.
-- One /proc scan serves the whole batch.
local function note_escaped(recs)
  local jobs, owners = {}, {}
  for _, rec in ipairs(recs) do
    if rec.job then jobs[#jobs + 1], owners[#owners + 1] = rec.job, rec end
  end
  if #jobs == 0 then return end
  for i, list in ipairs(core.escaped(jobs) or {}) do
    local st = owners[i].stop
    for _, p in ipairs(list) do
      if not st.escaped[p.pid] then
        st.escaped[p.pid] = p.command
        st.escaped_order[#st.escaped_order + 1] = p.pid
      end
    end
  end
end

-- The escaped processes of stopped records, for the kill result:
-- { processId, pid, command, killed } (killed: ended through the job's
-- cgroup; false: left running, there was none).
local function escaped_report(recs)
  local out = json.array()
  for _, rec in ipairs(recs) do
    local esc = rec.stop and rec.stop.escaped
    for _, pid in ipairs(esc and rec.stop.escaped_order or {}) do
      out[#out + 1] = { processId = rec.id, pid = pid, command = esc[pid],
                        killed = rec.stop.cgroup and not proc.alive(pid) or false }
    end
  end
  return out
end

-- The stop protocol for a batch, in a task of its own so that no caller
-- (a cancelled request, a closed connection) can cut it short: wait
-- graceMs, KILL what is left, wait for every job to be gone. With a
-- cgroup, processes that left their group got the signal too, are waited
-- for (gone() counts them), and die at the KILL step through the job's
-- cgroup.
local function protocol(self, targets, grace)
  local function all_gone()
    for _, rec in ipairs(targets) do if not run_over(rec) then return false end end
    return true
  end
  if not all_gone() and grace > 0 then self.sched:await(all_gone, grace, 20) end
  if not all_gone() then
    note_escaped(targets)
    for _, rec in ipairs(targets) do
      if not run_over(rec) then
        rec.job:kill("KILL")
        if rec.job:cgroup() then rec.job:kill_cgroup() end
      end
    end
    self.sched:await(all_gone, 5000, 20)
  end
  for _, rec in ipairs(targets) do
    if rec.job == rec.stop_job and gone(rec) then events.settle_stopped(self, rec) end
  end
end

-- Split recs into those to stop (marked with their stop) and the ids of
-- those already over. Stopped jobs are never restarted.
local function mark(recs, opts, reason)
  local targets, finished = {}, json.array()
  for _, rec in ipairs(recs) do
    rec.no_restart = true
    if states.over(rec) then
      finished[#finished + 1] = rec.id
    else
      targets[#targets + 1] = rec
      if not rec.stop then
        rec.stop = { reason = reason, detail = opts.detail, by = opts.by, escaped = {}, escaped_order = {} }
        rec.stop_job = rec.job
      end
      records.unsettle(rec)
    end
  end
  return targets, finished
end

local function signal_all(targets, sig)
  note_escaped(targets)
  for _, rec in ipairs(targets) do
    local job = rec.job
    if job then
      job:kill(sig)
      if job:cgroup() then
        rec.stop.cgroup = true -- its escapees end with it
        job:signal_escaped(sig)
      end
    end
  end
end

-- Inside a task: signal each record's group (TERM by default), wait
-- graceMs, KILL what is left, and wait until every group is confirmed
-- empty. opts: signal, graceMs, reason ("kill", "timeout", "session",
-- "shutdown"), detail (who or what: "shell 4321 exited"), by (the
-- session that asked, if any). Returns lists of ids: stopped, already
-- finished, and { processId, message } errors, and the processes that
-- had left the stopped jobs' groups (see escaped_report).
function methods:stop(recs, opts)
  opts = opts or {}
  local targets, finished = mark(recs, opts, opts.reason or "kill")
  signal_all(targets, opts.signal or "TERM")
  local cut_short = false
  if #targets > 0 then
    local task = self.sched:task(protocol, self, targets, opts.graceMs or self.cfg.graceMs)
    for _, rec in ipairs(targets) do rec.stop.task = task end
    if not task.done then
      local ok, why = self.sched:await(function() return task.done end)
      cut_short = not ok and why == "cancelled"
    end
  end
  local stopped, errs = json.array(), json.array()
  for _, rec in ipairs(targets) do
    if run_over(rec) then
      if rec.job == rec.stop_job then events.settle_stopped(self, rec) end
      stopped[#stopped + 1] = rec.id
    else
      errs[#errs + 1] = { processId = rec.id, message = cut_short
        and "still stopping: the request was cancelled, the stop goes on"
        or ("process group %d is still alive after SIGKILL"):format(rec.pid or -1) }
    end
  end
  return stopped, finished, errs, escaped_report(targets)
end

return stop
