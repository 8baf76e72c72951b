-- What the daemon keeps of each session beside the engine's jobs: who owns
-- it (in words and by pid), the process it is bound to, the events its
-- owner has not taken yet (events/take); and the notices waiting to go
-- to each connection that asked to hear of a session (session/open
-- notify).
--
-- One record a session, made when it is opened or first has an event,
-- dropped when it ends:
--   by_id[sid] = { owner = "shell 4321", owner_pid = 4321,
--                  watch = { pidfd, poll }, journal = { event, ... } }
-- every field optional.
local sys = require "bgproc.sys"
local uv = require "luv"
local json = require "bgproc.lib.json"
local notices = require "bgproc.engine.notices"

local sessions = {}

sessions.NOTICE_BATCH_MS = 50   -- events this close together go out as one notice
sessions.NOTICE_EVERY_MS = 1000 -- at most one notice a second per session and connection
sessions.JOURNAL_MAX = 100      -- untaken events kept per session

local Sessions = {}
Sessions.__index = Sessions

-- engine: the daemon's; connections: its set of connection states (the
-- notices go to them); log(level, msg).
function sessions.new(engine, connections, log)
  return setmetatable({ engine = engine, connections = connections, log = log, by_id = {} }, Sessions)
end

local function record(self, sid)
  local r = self.by_id[sid]
  if not r then
    r = {}
    self.by_id[sid] = r
  end
  return r
end

-- ---- owners ------------------------------------------------------------------

-- Who owns sid, in words ("shell 4321"), or nil.
function Sessions:owner(sid)
  local r = self.by_id[sid]
  return r and r.owner
end

-- Note who owns sid. The first owner named stays: a session opened again
-- (a job's connection coming back) keeps it.
function Sessions:set_owner(sid, words, pid)
  local r = record(self, sid)
  r.owner = r.owner or words
  r.owner_pid = r.owner_pid or pid
end

-- The sessions process pid owns (none for nil).
function Sessions:owned_by(pid)
  local sids = {}
  if pid == nil then return sids end
  for sid, r in pairs(self.by_id) do
    if r.owner_pid == pid then sids[#sids + 1] = sid end
  end
  return sids
end

-- ---- the process a session is bound to ---------------------------------------

local function unwatch(r)
  local w = r.watch
  if not w then return end
  r.watch = nil
  if not w.poll:is_closing() then w.poll:close() end
  w.pidfd:close()
end

-- End sid when process pid exits (watched through a pidfd). Returns true,
-- or nil, err, ename (the session, if it exists, stays as it was).
function Sessions:bind(sid, pid)
  local r = self.by_id[sid]
  if r and r.watch then return true end
  local pidfd, err, ename = sys.pidfd(pid)
  if not pidfd then return nil, err, ename end
  local poll = uv.new_poll(pidfd:fd())
  record(self, sid).watch = { pidfd = pidfd, poll = poll }
  poll:start("r", function() self:finish(sid, (self:owner(sid) or ("process " .. pid)) .. " exited") end)
  return true
end

-- The daemon is stopping: no session ends on its own any more.
function Sessions:unwatch_all()
  for _, r in pairs(self.by_id) do unwatch(r) end
end

-- ---- ending ----------------------------------------------------------------------

-- Drop everything kept of sid; its jobs are the engine's to stop.
function Sessions:forget(sid)
  local r = self.by_id[sid]
  if not r then return end
  self.by_id[sid] = nil
  unwatch(r)
end

-- sid ended on its own (its process exited, its connection closed): stop
-- its jobs; `why` goes into their records and the log.
function Sessions:finish(sid, why)
  self:forget(sid)
  self.log("info", ("session %s ended (%s)"):format(sid, why))
  self.engine:session_close_async(sid, nil, why)
end

-- A client closes sid: as finish, but its notices still queued go
-- nowhere, and done(killed, alreadyFinished, errors, escaped) is called
-- once its jobs are gone.
function Sessions:close(sid, why, done)
  self:forget(sid)
  for c in pairs(self.connections) do
    local box = c.outbox[sid]
    c.outbox[sid] = nil
    if box and not box.timer:is_closing() then box.timer:close() end
  end
  self.engine:session_close_async(sid, done, why)
end

-- ---- events: kept for events/take, pushed as notices -------------------------

local function send_notices(c, sid)
  local box = c.outbox[sid]
  c.outbox[sid] = nil
  if not box or #box.events == 0 or c.conn.closed then return end
  c.notified[sid] = uv.now()
  c.conn:notify("notifications/jobs", { sessionId = sid, events = box.events, text = notices.text(box.events) })
end

-- Events go out together after NOTICE_BATCH_MS, and at most one notice
-- per NOTICE_EVERY_MS: a chatty job does not flood its owner.
local function queue_notice(c, sid, ev)
  local box = c.outbox[sid]
  if box then
    box.events[#box.events + 1] = ev
    return
  end
  box = { events = { ev }, timer = uv.new_timer() }
  c.outbox[sid] = box
  local since = uv.now() - (c.notified[sid] or -math.huge)
  local delay = math.max(sessions.NOTICE_BATCH_MS, sessions.NOTICE_EVERY_MS - since)
  box.timer:start(delay, 0, function()
    box.timer:close()
    if c.outbox[sid] == box then send_notices(c, sid) end
  end)
end

-- An event of the engine's: kept in its session's journal (while the
-- session lives), queued for the connections told of that session.
function Sessions:on_event(ev)
  if not notices.wanted(ev) then return end
  local sid = ev.sessionId
  if self.engine.sessions[sid] then
    local r = record(self, sid)
    local journal = r.journal or {}
    r.journal = journal
    journal[#journal + 1] = ev
    if #journal > sessions.JOURNAL_MAX then table.remove(journal, 1) end
  end
  for c in pairs(self.connections) do
    if c.notify[sid] then queue_notice(c, sid, ev) end
  end
end

-- The events not taken yet of the sessions in set `wanted`, oldest
-- first; taking them empties those journals.
function Sessions:take(wanted)
  local events = json.array()
  for sid in pairs(wanted) do
    local r = self.by_id[sid]
    if r and r.journal then
      for _, ev in ipairs(r.journal) do events[#events + 1] = ev end
      r.journal = nil
    end
  end
  table.sort(events, function(a, b) return a.seq < b.seq end)
  return events
end

-- Connection c closed (`why`): its queued notices go nowhere, and the
-- sessions bound to it end.
function Sessions:disconnected(c, why)
  for _, box in pairs(c.outbox) do
    if not box.timer:is_closing() then box.timer:close() end
  end
  for sid in pairs(c.owned) do
    local owner = self:owner(sid)
    self:finish(sid, (owner and (owner .. " disconnected") or "connection closed") .. " (" .. tostring(why) .. ")")
  end
end

return sessions
