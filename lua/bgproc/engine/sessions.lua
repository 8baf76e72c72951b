-- Sessions: the owners' scopes. A session's non-global jobs end with it;
-- shutdown ends every job.
local clock = require "bgproc.lib.clock"
local history = require "bgproc.engine.history"
local states = require "bgproc.engine.states"

local sessions = {}
local methods = {}
sessions.methods = methods

function methods:session_open(id)
  assert(type(id) == "string" and id ~= "", "session id must be a non-empty string")
  if self.sessions[id] then return self.sessions[id] end
  local s = { id = id, openedAt = clock.wall_ms() }
  self.sessions[id] = s
  self.plugins:call("on_session_start", id)
  return s
end

-- The ids a plugin's on_session_end keeps running, as a set.
local function kept_by_plugins(self, id, recs)
  local keep = {}
  if not self.plugins:has("on_session_end") then return keep end
  for _, res in ipairs(self.plugins:call("on_session_end", id, self:publics(recs))) do
    for _, kid in ipairs(type(res[1]) == "table" and res[1] or {}) do keep[kid] = true end
  end
  return keep
end

-- Inside a task: end a session: its non-global jobs are stopped, except
-- those a plugin's on_session_end keeps. detail says why the session
-- ended ("shell 4321 exited"). Returns what stop() returns.
function methods:session_end(id, detail)
  local s = self.sessions[id]
  self.sessions[id] = nil
  local recs = self:each(function(r)
    if r.sessionId ~= id or r.global then return false end
    r.no_restart = true -- a job waiting to be restarted ends with its session too
    return not states.over(r) -- what its leader left running, too
  end)
  local keep = (#recs > 0 or s) and kept_by_plugins(self, id, recs) or {}
  local doomed = {}
  for _, r in ipairs(recs) do if not keep[r.id] then doomed[#doomed + 1] = r end end
  return self:stop(doomed, { reason = "session", detail = detail })
end

function methods:session_close(id, detail)
  return self:sync(function() return self:session_end(id, detail) end)
end

function methods:session_close_async(id, cb, detail)
  local task = self.sched:task(function() return self:session_end(id, detail) end)
  if cb then task:on_done(function(t) cb(t:result()) end) end
  self:after_activity()
  return task
end

-- End every job, reap all, close the core. Blocks until none is left.
-- detail: why ("SIGTERM", "asked by a client"), for the records.
function methods:shutdown(detail)
  if self.closed or self.closing then return end
  self.closing = true
  local recs = self:each(function(r) return not states.over(r) end)
  self:sync(function() return self:stop(recs, { reason = "shutdown", detail = detail }) end)
  self.plugins:call("on_shutdown")
  self.retention_timer:cancel()
  self:unwatch_all()
  history.close(self)
  self.closed = true
  self.core:close()
  self:detach_luv()
end

return sessions
