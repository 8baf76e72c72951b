-- The daemon's JSON-RPC methods (docs/protocol.md, "Methods").
--
-- Each is method(c, params, id) as rpc.dispatch calls it: c is the
-- connection asking (see daemon/conn.lua), c.daemon the daemon's state.
-- It returns the result; or nil and an rpc error; or nil, nil, true when
-- it answers by itself, later (a tool call, a session/close).
local uv = require "luv"
local bgproc = require "bgproc"
local json = require "bgproc.lib.json"
local notices = require "bgproc.engine.notices"
local rpc = require "bgproc.rpc"
local tools = require "bgproc.tools"

local methods = {}

-- ---- params ------------------------------------------------------------------------

local function invalid(message)
  return nil, rpc.error(rpc.INVALID_PARAMS, message)
end

-- nil, or the error for a bad sessionId
local function bad_session_id(sid)
  if sid ~= nil and (type(sid) ~= "string" or sid == "" or #sid > 200 or sid:find("%c")) then
    return rpc.error(rpc.INVALID_PARAMS,
      "'sessionId' must be a non-empty string of at most 200 characters, without control characters")
  end
end

-- A short text param (an owner, a reason): nil, or the text with control
-- characters made spaces (they would break a line of `ls` or the log); or
-- nil and the error.
local function words(v, field)
  if v == nil then return nil end
  if type(v) ~= "string" or #v > 200 then
    return invalid(("'%s' must be a string of at most 200 characters"):format(field))
  end
  return (v:gsub("%c", " "))
end

-- v as a process id (a positive integer, not a string), or nil.
local function as_pid(v)
  local n = type(v) == "number" and math.tointeger(v)
  return n and n >= 1 and n <= 0x3fffffff and n or nil
end

-- params.ownerPid: the pid, or nil when not given, or nil and the error.
local function owner_pid(params)
  local pid = as_pid(params.ownerPid)
  if params.ownerPid ~= nil and not pid then
    return invalid("'ownerPid' must be a process id (a positive integer)")
  end
  return pid
end

-- ---- the daemon ------------------------------------------------------------------------

function methods.ping() return {} end

function methods.hello(c)
  return { pid = uv.os_getpid(), version = bgproc.version, socket = c.daemon.socket }
end

methods["daemon/status"] = function(c)
  local d = c.daemon
  local st = d.engine:stats()
  local nclients = 0
  for _ in pairs(d.connections) do nclients = nclients + 1 end
  local cgroup, why = d.engine.core:cgroup()
  return { pid = uv.os_getpid(), version = bgproc.version, socket = d.socket,
           uptimeMs = uv.now() - d.started, jobsRunning = st.running, jobs = st.jobs,
           sessions = st.sessions, clients = nclients, log = d.log_path,
           cgroup = cgroup or false, cgroupWhy = why, store = d.engine:store_status() }
end

-- Answers first: the stop closes every connection, this one too.
methods["daemon/stop"] = function(c, _, id)
  c:reply(id, { stopping = true })
  local t = uv.new_timer()
  t:start(0, 0, function()
    t:close()
    c.daemon:stop("asked by a client")
  end)
  return nil, nil, true
end

-- ---- sessions ------------------------------------------------------------------------

local BINDS = { connection = true, pid = true, none = true }

-- session/open's params, checked (in the order the errors are told):
-- { sid, bind, pid, owner, owner_pid }, or nil and the error.
local function open_request(params)
  local serr = bad_session_id(params.sessionId)
  if serr then return nil, serr end
  local owner, owerr = words(params.owner, "owner")
  if owerr then return nil, owerr end
  if params.notify ~= nil and type(params.notify) ~= "boolean" then
    return invalid("'notify' must be a boolean")
  end
  local opid, perr = owner_pid(params)
  if perr then return nil, perr end
  local bind = params.bind or "connection"
  if not BINDS[bind] then return invalid("'bind' must be \"connection\", \"pid\" or \"none\"") end
  local pid = as_pid(params.pid)
  if bind == "pid" and not pid then
    return invalid("'pid' must be a process id (a positive integer) with bind = \"pid\"")
  end
  return { sid = params.sessionId, bind = bind, pid = pid, owner = owner, owner_pid = opid }
end

-- bind = "pid": watch the process, or the error (a bad pid is the
-- caller's; out of fds or memory is the daemon's trouble).
local function bind_to_pid(sessions, sid, pid)
  local ok, err, ename = sessions:bind(sid, pid)
  if ok then return true end
  local why = ("'pid': cannot watch process %d: %s"):format(pid, tostring(err))
  if ename == "ESRCH" or ename == "EINVAL" then return invalid(why) end
  return nil, rpc.error(rpc.TOOL_ERROR, why, { code = "limit" })
end

-- session/open { sessionId?, bind = "connection" | "pid" | "none", pid?,
--                owner?, ownerPid?, notify? }
local function open_session(c, params)
  local req, err = open_request(params)
  if not req then return nil, err end
  local d = c.daemon
  local sid = req.sid or ("conn-%d-%d"):format(uv.os_getpid(), c.n)
  if req.bind == "pid" then
    local ok, berr = bind_to_pid(d.sessions, sid, req.pid)
    if not ok then return nil, berr end
  end
  d.sessions:set_owner(sid, req.owner, req.owner_pid or (req.bind == "pid" and req.pid) or nil)
  d.engine:session_open(sid)
  c:join(sid, params, req.bind) -- a session ended under us is opened again the same way
  return { sessionId = sid, bind = req.bind }
end
methods["session/open"] = open_session

-- session/close's params: { sids, first, why }, the sessions to close
-- (the one named, else the connection's, and every session process
-- ownerPid owns), or nil and the error.
local function close_request(c, params)
  local pid, perr = owner_pid(params)
  if perr then return nil, perr end
  local first = params.sessionId or (not pid and c.session) or nil
  if first ~= nil and type(first) ~= "string" then return invalid("'sessionId' must be a string") end
  if first == nil and not pid then
    return invalid("'sessionId' must be a string (this connection has no session)")
  end
  local why, werr = words(params.reason, "reason")
  if werr then return nil, werr end
  local sids = { first }
  for _, sid in ipairs(c.daemon.sessions:owned_by(pid)) do
    if sid ~= first then sids[#sids + 1] = sid end
  end
  return { sids = sids, first = first, why = why }
end

-- what engine:stop returns, in its order: the kill tool's result arrays
local CLOSE_LISTS = require("bgproc.tools").by_name.killProcesses.arrays

-- session/close { sessionId?, ownerPid?, reason? }: ends that session and
-- every session the process ownerPid owns (a Claude Code session's Bash
-- tool jobs and its bgproc mcp's); reason says why, in the records
-- ("OpenCode chat deleted"). Answers once all their jobs are gone.
methods["session/close"] = function(c, params, id)
  local req, err = close_request(c, params)
  if not req then return nil, err end
  local answer = { sessionId = req.first or req.sids[1] or json.null, sessionIds = json.array() }
  for _, key in ipairs(CLOSE_LISTS) do answer[key] = json.array() end
  local left = #req.sids
  if left == 0 then return answer end
  local function closed(...)
    local lists = table.pack(...)
    for i, key in ipairs(CLOSE_LISTS) do
      for _, v in ipairs(lists[i] or {}) do answer[key][#answer[key] + 1] = v end
    end
    left = left - 1
    if left == 0 then c:reply(id, answer) end
  end
  for _, sid in ipairs(req.sids) do
    c:leave(sid)
    answer.sessionIds[#answer.sessionIds + 1] = sid
    c.daemon.sessions:close(sid, req.why or "closed by a client", closed)
  end
  return nil, nil, true
end

-- events/take's params: the set of sessions to take from, or nil and
-- the error.
local function take_request(c, params)
  local sids = params.sessionIds
  if sids ~= nil and (type(sids) ~= "table" or #sids == 0 or #sids > 64) then
    return invalid("'sessionIds' must be a list of 1 to 64 session ids")
  end
  local pid, perr = owner_pid(params)
  if perr then return nil, perr end
  if sids == nil and pid == nil then return invalid("give 'sessionIds' or 'ownerPid'") end
  local wanted = {}
  for i = 1, sids and #sids or 0 do
    local serr = bad_session_id(sids[i])
    if serr then return nil, serr end
    wanted[sids[i]] = true
  end
  for _, sid in ipairs(c.daemon.sessions:owned_by(pid)) do wanted[sid] = true end
  return wanted
end

-- events/take { sessionIds?, ownerPid? }: the notices not taken yet of
-- these sessions and of every session whose owner is that process (an
-- agent's shell-tool jobs and its MCP server's), and their text; taking
-- them empties the lists.
methods["events/take"] = function(c, params)
  local wanted, err = take_request(c, params)
  if not wanted then return nil, err end
  local events = c.daemon.sessions:take(wanted)
  return { events = events, text = notices.text(events) }
end

-- ---- tools ------------------------------------------------------------------------------

methods["tools/list"] = function(c)
  return { tools = c.daemon.engine:tools() }
end

-- The session a tool call runs in: sid, or the connection's. A job needs
-- one: a session nobody opened lives as long as this connection (opened
-- again as before if it was closed under us); with none named, the
-- connection gets its own.
local function call_session(c, name, sid)
  if name == "createBackgroundProcess" then
    if sid and not c.daemon.engine.sessions[sid] then
      open_session(c, c:opened_with(sid) or { sessionId = sid })
    elseif not sid and not c.session then
      open_session(c, {})
    end
  end
  return sid or c.session
end

-- Progress of a wait, as notifications to this connection, when asked.
local function progress_of(c, params, id)
  if params.progress ~= true or id == nil then return nil end
  return function(elapsed, total)
    c:notify("notifications/progress", { requestId = id, progress = elapsed, total = total })
  end
end

-- tools/call { name, arguments, sessionId?, progress?, text? }
methods["tools/call"] = function(c, params, id)
  local name, args = rpc.tool_params(params)
  if not name then return nil, args end -- args: the error
  local sid = params.sessionId
  if sid == json.null then sid = nil end
  local serr = bad_session_id(sid)
  if serr then return nil, serr end
  local ctx = { sessionId = call_session(c, name, sid), progress = progress_of(c, params, id) }
  local as_text = params.text == true -- the answer with its text, for clients that show text
  local task = c.daemon.engine:call_async(name, args, ctx, function(res, err)
    c.calls:finish(id)
    if id == nil then return end
    if res and as_text then
      c:reply(id, { text = tools.summary(name, res), result = res })
    elseif res then
      c:reply(id, res)
    else
      c:fail(id, rpc.TOOL_ERROR, err.message, { code = err.code, processId = err.processId })
    end
  end)
  if not task.done then c.calls:add(id, { cancel = function() task:cancel() end }) end
  return nil, nil, true
end

-- notifications/cancelled { requestId }: stop a running wait; unknown ids
-- are ignored (some clients cancel after every call).
methods["notifications/cancelled"] = function(c, params)
  c.calls:cancel(params.requestId)
end

return methods
