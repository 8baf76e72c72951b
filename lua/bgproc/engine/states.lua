-- Where a job is: its status, whether its processes are gone, whether its
-- output is complete, and one line saying why it ended.
--
-- States: pending -> running -> completed | failed | cancelled
--   pending    the record exists, exec not yet confirmed
--   completed  exit code 0
--   failed     non-zero exit, a signal we did not send, a spawn error, a timeout
--   cancelled  we stopped it, and its whole group is confirmed gone
local states = {}

-- The job states, in order; the last three are final.
states.STATUSES = { "pending", "running", "completed", "failed", "cancelled" }
states.FINAL = { completed = true, failed = true, cancelled = true }
states.KNOWN = {}
for _, s in ipairs(states.STATUSES) do states.KNOWN[s] = true end

local FINAL = states.FINAL

function states.final(rec)
  return FINAL[rec.status] == true
end

-- All of the job's output is in (its pipes reached EOF).
function states.output_done(rec)
  return not rec.job or rec.job:info().eof
end

-- The job has ended and all of its output is in: nothing more will come.
function states.complete(rec)
  return FINAL[rec.status] == true and states.output_done(rec)
end

-- Nothing of the job is left in its cgroup (true without one): no
-- process that left its group (setsid) still runs there.
local function cgroup_empty(job)
  if not job:cgroup() then return true end
  local list = job:escaped()
  return list ~= nil and #list == 0
end

-- The job's whole process group is confirmed gone, and with a cgroup
-- whatever left the group too.
function states.gone(rec)
  local job = rec.job
  return not job or (not job:alive() and job:members() == 0 and cgroup_empty(job))
end

-- Ended, and nothing of it is left running.
function states.over(rec)
  return FINAL[rec.status] == true and states.gone(rec)
end

local STOPPED_BY = {
  kill = function() return "killed by killProcesses" end,
  session = function(stop) return "session ended" .. (stop.detail and (" (" .. stop.detail .. ")") or "") end,
  timeout = function(_, rec) return ("timeout after %d ms"):format(rec.timeoutMs or 0) end,
  shutdown = function(stop) return "daemon stopped" .. (stop.detail and (" (" .. stop.detail .. ")") or "") end,
  restart = function() return "stopped to restart" end,
  replace = function() return "replaced by a new start of the same name (unique: replace)" end,
  memory = function(_, rec) return ("used more memory than memoryMax (%d bytes)"):format(rec.memoryMax or 0) end,
  ["daemon-died"] = function() return "the daemon ended while it ran (its processes were stopped with it)" end,
}
-- Stops that count as the job's failure, not a cancel: its `error`.
states.FAILING_STOP = {
  timeout = function(rec) return ("timed out after %d ms"):format(rec.timeoutMs or 0) end,
  memory = function(rec) return STOPPED_BY.memory(rec.stop, rec) end,
  ["daemon-died"] = function(rec) return STOPPED_BY["daemon-died"](rec.stop, rec) end,
}

-- One line saying why a finished job ended, for people and agents:
-- "exited with code 3", "killed by killProcesses", "session ended (shell
-- 4321 exited)", "timeout after 5000 ms". A stop given a detail uses it.
function states.end_reason(rec)
  local stop = rec.stop
  local stopped = stop and (stop.text or (STOPPED_BY[stop.reason] or tostring)(stop, rec))
  if rec.status == "cancelled" or (rec.status == "failed" and stopped and states.FAILING_STOP[stop.reason]) then
    return stopped or "cancelled"
  end
  local exited = rec.error or (rec.exitCode and ("exited with code %d"):format(rec.exitCode)) or rec.status
  if stopped then return exited .. "; what it left running was stopped: " .. stopped end
  return exited
end

return states
