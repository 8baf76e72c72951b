-- What the daemon keeps of each session beside the engine's jobs: who owns
-- it (in words and by pid), the process it is bound to, the events its
-- owner has not taken yet (events/take); and its events told to the
-- connections that asked to hear of it (session/open notify: see
-- daemon/conn.lua).
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

sessions.JOURNAL_MAX = 100      -- untaken events kept per session

local Sessions = {}
Sessions.__index = Sessions

-- engine: the daemon's (its events are listened to from now on);
-- connections: its set of connections (daemon/conn.lua: the notices go to
-- them); log(level, msg).
function sessions.new(engine, connections, log)
  local self = setmetatable({ engine = engine, connections = connections, log = log, by_id = {} }, Sessions)
  engine:on_event(notices.listener(function(ev) self:on_event(ev) end))
  return self
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
  for c in pairs(self.connections) do c:drop_notice(sid) end
  self.engine:session_close_async(sid, done, why)
end

-- ---- events: kept for events/take, pushed as notices -------------------------

-- An event of the engine's that its owner wants (notices.wanted): kept
-- in its session's journal (while the session lives), told to the
-- connections that hear of that session.
function Sessions:on_event(ev)
  local sid = ev.sessionId
  if self.engine.sessions[sid] then
    local r = record(self, sid)
    local journal = r.journal or {}
    r.journal = journal
    journal[#journal + 1] = ev
    if #journal > sessions.JOURNAL_MAX then table.remove(journal, 1) end
  end
  for c in pairs(self.connections) do c:tell(sid, ev) end
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

-- Connection c closed (`why`): the sessions bound to it end.
function Sessions:disconnected(c, why)
  for _, sid in ipairs(c:owned_sessions()) do
    local owner = self:owner(sid)
    self:finish(sid, (owner and (owner .. " disconnected") or "connection closed") .. " (" .. tostring(why) .. ")")
  end
end

return sessions
