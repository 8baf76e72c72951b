-- Events: what the core reports (output, exit, end of output) moves a
-- record on, feeds its pattern scanners and plugins, and tells owners.
--
-- Owners are told when a job ends, becomes ready, or prints a line
-- matching its notifyPattern: listeners (on_event) get one event table
-- each, numbered by `seq`.
local clock = require "bgproc.lib.clock"
local history = require "bgproc.engine.history"
local records = require "bgproc.engine.records"
local states = require "bgproc.engine.states"
local text = require "bgproc.lib.text"

local events = {}
local methods = {}
events.methods = methods

local FINAL = states.FINAL
local gone, output_done = states.gone, states.output_done

local NOTICE_LINES = 5       -- the last lines an "ended" event carries
local NOTICE_WAIT_MS = 200   -- how long "ended" waits for the last output
local NOTIFY_EVERY_MS = 1000 -- a notifyPattern tells at most once a second per job

-- Add a listener fn(event); returns a function that removes it.
function methods:on_event(fn)
  self.listeners[#self.listeners + 1] = fn
  return function()
    for i, f in ipairs(self.listeners) do
      if f == fn then table.remove(self.listeners, i) return end
    end
  end
end

local function emit(self, rec, kind, fields)
  if #self.listeners == 0 then return end
  self.event_seq = (self.event_seq or 0) + 1
  local ev = { event = kind, processId = rec.id, name = rec.name, sessionId = rec.sessionId,
               global = rec.global, status = rec.status, at = clock.iso(), seq = self.event_seq }
  for k, v in pairs(fields or {}) do ev[k] = v end
  for _, fn in ipairs(self.listeners) do
    local ok, err = pcall(fn, ev)
    if not ok then self:log("error", "event listener: " .. tostring(err)) end
  end
end

local function emit_ended(self, rec)
  if rec.ended_told then return end
  rec.ended_told = true
  local stop = rec.stop
  local last = text.clean(self:tail(rec, NOTICE_LINES, "both", 4096), true)
  emit(self, rec, "ended", { exitCode = rec.exitCode, signal = rec.signal, stopReason = stop and stop.reason,
    endReason = states.end_reason(rec), stoppedBy = stop and stop.by, lastLines = last })
end

-- An "ended" still waiting for its last output is told now (a restart
-- begins a new run).
function events.flush_ended(self, rec)
  if rec.ended_timer then
    rec.ended_timer:cancel()
    rec.ended_timer = nil
    emit_ended(self, rec)
  end
end

-- The "ended" event waits for the output to be complete (its last lines),
-- or NOTICE_WAIT_MS at most when something the job left holds its pipes.
local function tell_ended(self, rec)
  -- a job that never started was its caller's error, answered at once
  if #self.listeners == 0 or rec.ended_told or not rec.job then return end
  if output_done(rec) then return emit_ended(self, rec) end
  if not rec.ended_timer then
    rec.ended_timer = self.sched:after(NOTICE_WAIT_MS, function()
      rec.ended_timer = nil
      emit_ended(self, rec)
    end)
  end
end

local function check_notify(self, rec, at_end)
  if not rec.notify_re then return end
  local lines = self:scan(rec.notify_scan)
  if at_end then lines[#lines + 1] = self:scan_rest(rec.notify_scan) end
  local now = self.sched.now()
  for _, l in ipairs(lines) do
    if rec.notify_re:test(l.line) then
      if now >= (rec.notify_next or 0) then
        emit(self, rec, "matched", { line = l.line, pattern = rec.notifyPattern, cursor = l.cursor,
                                      skipped = rec.notify_skipped })
        rec.notify_next, rec.notify_skipped = now + NOTIFY_EVERY_MS, nil
      else
        rec.notify_skipped = (rec.notify_skipped or 0) + 1
      end
    end
  end
end

-- A job's timeout bounds its whole group: the timer stays while anything
-- of the group is left (a leader that exited at once may leave a child
-- holding its output) and goes once all of it is gone.
local function drop_timeout(rec)
  if rec.timeout_timer and gone(rec) then
    rec.timeout_timer:cancel()
    rec.timeout_timer = nil
  end
end

-- at_end: the job has ended, so a last line without "\n" counts too.
local function check_ready(self, rec, at_end)
  if not rec.ready_re or rec.ready then return end
  local l = self:scan_match(rec.ready_scan, rec.ready_re, at_end)
  if l then events.ready(self, rec, l.line) end
end

-- The job passed its readiness test; line says how.
function events.ready(self, rec, line)
  if rec.ready ~= false then return end
  rec.ready, rec.readyLine = true, line
  records.unsettle(rec)
  history.save(self, rec)
  emit(self, rec, "ready", { line = line })
end

local function feed_plugins(self, rec)
  if not self.plugins:has("on_output") then return end
  local data, next, dropped = self:read(rec, rec.fed or 0)
  rec.fed = next
  if #data > 0 then self.plugins:call("on_output", records.light(rec), data, dropped) end
end

-- Retention runs on the next turn: whoever waits on a record that just
-- finished gets to see it final.
local function retain_soon(self)
  local r = self.cfg.retention
  local over = (r.maxFinished and self.nfinished > r.maxFinished)
    or (r.maxDiskBytes and history.disk_bytes(self) > r.maxDiskBytes)
  if over and not self.retain_soon then
    self.retain_soon = self.sched:after(0, function()
      self.retain_soon = nil
      self:retain()
    end)
  end
end

-- A finished record joins the retention queue (oldest first).
function events.queue_done(self, rec)
  rec.finished = true
  self.nfinished = self.nfinished + 1
  local q = self.done_q
  q.last = q.last + 1
  q[q.last] = rec
  rec.qi = q.last
end

-- The final state is set: hooks, memory, retention.
function events.finish(self, rec)
  if rec.finished then return end
  events.queue_done(self, rec)
  drop_timeout(rec)
  if rec.job then self.running = self.running - 1 end -- launched, so counted
  rec.endedMs = rec.endedMs or clock.wall_ms()
  if rec.job then
    check_ready(self, rec, true)
    if rec.notify_re and output_done(rec) then check_notify(self, rec, true) end
  end
  -- journaled before anyone is told
  if rec.job and output_done(rec) then history.settle(self, rec, records.last_line) else history.save(self, rec) end
  tell_ended(self, rec)
  if self.plugins:has("on_exit") then self.plugins:call("on_exit", records.public(rec)) end
  retain_soon(self)
end

-- The final state of a record we stopped, once its group is gone.
function events.settle_stopped(self, rec)
  if FINAL[rec.status] or not rec.stop then return end
  local failure = states.FAILING_STOP[rec.stop.reason]
  if failure then
    rec.status = "failed"
    rec.error = failure(rec)
  else
    rec.status = "cancelled"
    rec.error = nil
  end
  rec.endedMs = rec.endedMs or clock.wall_ms()
  events.finish(self, rec)
end

-- A job that failed before it ran (spawn refused).
function events.fail_start(self, rec, msg)
  rec.status = "failed"
  rec.error = msg
  rec.endedMs = clock.wall_ms()
  events.finish(self, rec)
end

local function on_exit(self, rec)
  local code, sig = rec.job:exit()
  rec.exitCode, rec.signal = code, sig
  rec.endedMs = clock.wall_ms()
  if not rec.stop and rec.oom_check and rec.oom_check() then -- its cgroup's memory.max ended it
    rec.stop, rec.stop_job = { reason = "memory", escaped = {}, escaped_order = {} }, rec.job
    records.unsettle(rec)
    -- what the kernel's kill left is ended like any stop, and settled then
    if not gone(rec) then self.sched:task(function() self:stop({ rec }, { signal = "KILL", graceMs = 0 }) end) end
  end
  if rec.stop then
    -- the stop protocol decides, once the group is gone; if it already
    -- gave up (a process stuck in the kernel), this late death settles it
    local task = rec.stop.task
    if (not task or task.done) and gone(rec) then events.settle_stopped(self, rec) end
    return
  end
  if code == 0 then
    rec.status = "completed"
  else
    rec.status = "failed"
    rec.error = code and ("exited with code %d"):format(code)
      or sig and ("killed by signal %s"):format(sig)
      or "exit status unknown (reaped by another process)"
  end
  events.finish(self, rec)
end

local function on_eof(self, rec)
  check_notify(self, rec, true)
  events.flush_ended(self, rec)
  history.settle(self, rec, records.last_line)
end

-- Handle the core's events: { job, output, exit, eof } each.
function methods:handle(list)
  for _, ev in ipairs(list) do
    local rec = self.by_job[ev.job]
    if rec then
      if ev.output then
        history.output(self, rec)
        check_ready(self, rec)
        check_notify(self, rec)
        feed_plugins(self, rec)
      end
      if ev.exit then on_exit(self, rec) end
      if ev.eof and rec.finished and rec.job then on_eof(self, rec) end
      if rec.finished then drop_timeout(rec) end
    end
  end
end

-- Collect what the core has already seen (exits, output) without
-- blocking: a host that never turns its loop still sees its jobs end.
function methods:collect()
  self:handle(self.core:dispatch())
end

return events
