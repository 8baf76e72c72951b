-- A client's connection to the daemon, as methods and sessions see it:
-- its replies, the sessions it works in, owns and hears of, the notices
-- waiting to go out to it, and its calls still running.
--
-- Fields others may read (the rest are this file's):
--   n        its number, in logs and in the id of its own session
--   daemon   the daemon's state (see daemon/init.lua)
--   conn     its rpc.conn
--   session  the session it works in (session/open, or its first job's)
--   calls    its tool calls still running (rpc.calls)
local uv = require "luv"
local notices = require "bgproc.engine.notices"
local rpc = require "bgproc.rpc"

local connection = {}

connection.NOTICE_BATCH_MS = 50   -- events this close together go out as one notice
connection.NOTICE_EVERY_MS = 1000 -- at most one notice a second per session

local Connection = {}
Connection.__index = Connection

-- Connection number n of daemon d (its rpc.conn is set as c.conn).
--   owned    sid -> true: sessions that end when it closes (bind "connection")
--   opened   sid -> the session/open params, to open it again the same way
--   hears    sid -> true: sessions it is told of (notify = true)
--   outbox   sid -> { events, timer }: a notice waiting to go out
--   notified sid -> when it was last told (uv.now())
function connection.new(d, n)
  return setmetatable({ n = n, daemon = d, owned = {}, opened = {}, hears = {}, outbox = {}, notified = {},
                        calls = rpc.calls() }, Connection)
end

function Connection:reply(id, result) return self.conn:reply(id, result) end
function Connection:fail(id, code, message, data) return self.conn:fail(id, code, message, data) end
function Connection:notify(method, params) return self.conn:notify(method, params) end
function Connection:close(why) return self.conn:close(why) end

-- ---- sessions ----------------------------------------------------------------------

-- It opened sid (bind: "connection" makes sid end when it closes) with
-- these session/open params, and works in it from now on.
function Connection:join(sid, params, bind)
  self.opened[sid] = params
  self.session = sid
  if bind == "connection" then self.owned[sid] = true end
  if params.notify then self.hears[sid] = true end
end

-- It closed sid: no longer its to end, nor to hear of; a later job of
-- its gets a new session.
function Connection:leave(sid)
  self.owned[sid], self.hears[sid] = nil, nil
  if self.session == sid then self.session = nil end
end

-- The session/open params it opened sid with, or nil.
function Connection:opened_with(sid) return self.opened[sid] end

-- The sessions that end when it closes.
function Connection:owned_sessions()
  local sids = {}
  for sid in pairs(self.owned) do sids[#sids + 1] = sid end
  return sids
end

-- It is gone: its calls are cancelled, its notices go nowhere.
function Connection:gone()
  self.calls:cancel_all()
  for sid in pairs(self.outbox) do self:drop_notice(sid) end
end

-- ---- notices -----------------------------------------------------------------------

-- A notice of sid's still waiting goes nowhere.
function Connection:drop_notice(sid)
  local box = self.outbox[sid]
  self.outbox[sid] = nil
  if box and not box.timer:is_closing() then box.timer:close() end
end

local function send_notice(c, sid)
  local box = c.outbox[sid]
  c.outbox[sid] = nil
  if not box or #box.events == 0 or c.conn.closed then return end
  c.notified[sid] = uv.now()
  c:notify("notifications/jobs", { sessionId = sid, events = box.events, text = notices.text(box.events) })
end

-- Event ev of session sid, for this connection if it hears of sid. Events
-- go out together after NOTICE_BATCH_MS, and at most one notice per
-- NOTICE_EVERY_MS: a chatty job does not flood its owner.
function Connection:tell(sid, ev)
  if not self.hears[sid] then return end
  local box = self.outbox[sid]
  if box then
    box.events[#box.events + 1] = ev
    return
  end
  box = { events = { ev }, timer = uv.new_timer() }
  self.outbox[sid] = box
  local since = uv.now() - (self.notified[sid] or -math.huge)
  local delay = math.max(connection.NOTICE_BATCH_MS, connection.NOTICE_EVERY_MS - since)
  box.timer:start(delay, 0, function()
    box.timer:close()
    if self.outbox[sid] == box then send_notice(self, sid) end
  end)
end

return connection
