-- The per-user daemon: one engine, many clients, on a Unix socket.
--
-- Protocol: newline-delimited JSON-RPC 2.0 (docs/protocol.md). Each
-- connection works in one session: the one it opens with session/open, or
-- a session of its own that ends when the connection drops. A session can
-- instead be bound to a process (the CLI binds to its calling shell) and
-- ends when that process exits.
local core = require "bgproc.core"
local uv = require "luv"
local bgproc = require "bgproc"
local json = require "bgproc.lib.json"
local manager = require "bgproc.engine"
local notices = require "bgproc.engine.notices"
local paths = require "bgproc.lib.paths"
local tools = require "bgproc.tools"
local rpc = require "bgproc.rpc"

local daemon = {}

daemon.ACCEPT_RETRY_MS = 200 -- out of fds: how often to try accept() again
daemon.NOTICE_BATCH_MS = 50   -- events this close together go out as one notice
daemon.NOTICE_EVERY_MS = 1000 -- at most one notice a second per session and client
daemon.JOURNAL_MAX = 100      -- untaken events kept per session (events/take)

-- nil, or the INVALID_PARAMS error for a bad sessionId param
local function bad_session_id(sid)
  if sid ~= nil and (type(sid) ~= "string" or sid == "" or #sid > 200) then
    return rpc.error(rpc.INVALID_PARAMS, "'sessionId' must be a non-empty string of at most 200 characters")
  end
end

-- A short text param (an owner, a reason): nil, or the text with control
-- characters made spaces (they would break a line of `ls` or the log); or
-- nil and the INVALID_PARAMS error.
local function words(v, field)
  if v == nil then return nil end
  if type(v) ~= "string" or #v > 200 then
    return nil, rpc.error(rpc.INVALID_PARAMS, ("'%s' must be a string of at most 200 characters"):format(field))
  end
  return (v:gsub("%c", " "))
end

-- v as a process id (a positive integer, not a string), or nil.
local function as_pid(v)
  local n = type(v) == "number" and math.tointeger(v)
  return n and n >= 1 and n <= 0x3fffffff and n or nil
end

-- Opened only once the lock is held: a daemon that loses the race must
-- not rotate the winner's log.
local function open_log(path)
  if not path then return nil end
  paths.ensure_dir(paths.dir(path))
  local st = uv.fs_stat(path)
  if st and st.size > 10 * 1024 * 1024 then os.rename(path, path .. ".1") end
  local f = io.open(path, "a")
  if f then uv.fs_chmod(path, tonumber("600", 8)) end
  return f
end

-- Run the daemon in the foreground until it is stopped. Returns an exit
-- code: 0 after a clean stop, or when another daemon already holds the
-- socket (`quiet_if_running`), 1 on failure.
function daemon.run(opts)
  opts = opts or {}
  local socket = opts.socket or paths.socket()
  local logf
  local function log(level, msg)
    local line = ("%s %s %s\n"):format(manager.iso(), level, msg)
    if logf then
      logf:write(line)
      logf:flush()
    end
    if opts.verbose then io.stderr:write(line) end
  end

  local ok, err = paths.ensure_dir(paths.dir(socket))
  if not ok then
    io.stderr:write(("bgproc daemon: cannot create %s: %s\n"):format(paths.dir(socket), err))
    return 1
  end
  -- A directory someone else owns could have its socket replaced under
  -- us: refuse it. A shared sticky one (/tmp) is left as it is; ours is
  -- made 0700.
  local dir_st = uv.fs_stat(paths.dir(socket))
  if dir_st.uid ~= core.getuid() then
    io.stderr:write(("bgproc daemon: %s belongs to uid %d, not to uid %d: refusing to put the socket there\n")
      :format(paths.dir(socket), dir_st.uid, core.getuid()))
    return 1
  end
  if dir_st.mode & tonumber("1000", 8) == 0 then uv.fs_chmod(paths.dir(socket), tonumber("700", 8)) end
  local lock, lerr, lname = core.lock(paths.lock(socket))
  if not lock then
    if lname == "EAGAIN" then
      if not opts.quiet_if_running then io.stderr:write("bgproc daemon: already running on " .. socket .. "\n") end
      return opts.quiet_if_running and 0 or 1
    end
    io.stderr:write("bgproc daemon: " .. lerr .. "\n")
    return 1
  end
  logf = open_log(opts.log == nil and paths.log() or opts.log or nil)
  -- We hold the lock: a socket file left here is from a daemon that died.
  if uv.fs_stat(socket) then
    log("info", "removing stale socket " .. socket)
    os.remove(socket)
  end

  local engine = bgproc.new { subreaper = true, log = log }
  -- the starter's identity is not ours: jobs created without an env of
  -- their own (the OpenCode plugin's) must not join its session or agent
  for _, var in ipairs(require("bgproc.owner").CALLER_VARS) do uv.os_unsetenv(var) end
  local listener, berr = core.listen(socket, 128)
  if not listener then
    io.stderr:write(("bgproc daemon: cannot bind %s: %s\n"):format(socket, tostring(berr)))
    engine:shutdown()
    return 1
  end
  uv.fs_chmod(socket, tonumber("600", 8))
  local socket_ino = (uv.fs_stat(socket) or {}).ino
  local my_uid = core.getuid()
  local started = uv.now()
  local clients, nconn = {}, 0
  local bound = {}     -- sessionId -> { pidfd, poll }
  local owners = {}    -- sessionId -> who owns it, in words ("shell 4321"), for end reasons
  local owner_pids = {} -- sessionId -> the owner's pid (events/take by owner)
  local journal = {}   -- sessionId -> events not yet taken (events/take)
  local stopping = false
  local handles = {}

  -- Stop watching the process a session is bound to, if any.
  local function unbind(sid)
    local b = bound[sid]
    if not b then return end
    bound[sid] = nil
    if not b.poll:is_closing() then b.poll:close() end
    b.pidfd:close()
  end

  local function forget_session(sid)
    unbind(sid)
    owners[sid], owner_pids[sid], journal[sid] = nil, nil, nil
  end

  local function end_session(sid, why)
    forget_session(sid)
    log("info", ("session %s ended (%s)"):format(sid, why))
    engine:session_close_async(sid, nil, why)
  end

  local function bind_pid(sid, pid)
    if bound[sid] then return true end
    local pidfd, perr, ename = core.pidfd(pid)
    if not pidfd then return nil, perr, ename end -- refused; an existing session stays
    local poll = uv.new_poll(pidfd:fd())
    bound[sid] = { pidfd = pidfd, poll = poll }
    poll:start("r", function() end_session(sid, (owners[sid] or ("process " .. pid)) .. " exited") end)
    return true
  end

  -- ---- notices: pushed to the connections that asked (session/open
  -- notify), kept for events/take (hooks that ask at each turn)

  local function send_notices(c, sid)
    local box = c.outbox[sid]
    c.outbox[sid] = nil
    if not box or #box.events == 0 or c.conn.closed then return end
    c.notified[sid] = uv.now()
    c.conn:notify("notifications/jobs", { sessionId = sid, events = box.events, text = notices.text(box.events) })
  end

  local function queue_notice(c, sid, ev)
    local box = c.outbox[sid]
    if box then box.events[#box.events + 1] = ev return end
    box = { events = { ev }, timer = uv.new_timer() }
    c.outbox[sid] = box
    local since = uv.now() - (c.notified[sid] or -math.huge)
    local delay = math.max(daemon.NOTICE_BATCH_MS, daemon.NOTICE_EVERY_MS - since)
    box.timer:start(delay, 0, function()
      box.timer:close()
      if c.outbox[sid] == box then send_notices(c, sid) end
    end)
  end

  local function on_event(ev)
    if not notices.wanted(ev) then return end
    local sid = ev.sessionId
    if engine.sessions[sid] then
      local list = journal[sid] or {}
      journal[sid] = list
      list[#list + 1] = ev
      if #list > daemon.JOURNAL_MAX then table.remove(list, 1) end
    end
    for c in pairs(clients) do
      if c.notify[sid] then queue_notice(c, sid, ev) end
    end
  end
  engine:on_event(on_event)

  local stop, stop_accepting -- forward

  local methods = {}

  function methods.ping() return {} end

  function methods.hello()
    return { pid = uv.os_getpid(), version = bgproc.version, socket = socket }
  end

  methods["daemon/status"] = function()
    local st = engine:stats()
    local nclients = 0
    for _ in pairs(clients) do nclients = nclients + 1 end
    local cgroup, why = engine.core:cgroup()
    return { pid = uv.os_getpid(), version = bgproc.version, socket = socket,
             uptimeMs = uv.now() - started, jobsRunning = st.running, jobs = st.jobs,
             sessions = st.sessions, clients = nclients, log = opts.log == nil and paths.log() or nil,
             cgroup = cgroup or false, cgroupWhy = why }
  end

  methods["daemon/stop"] = function(c, params, id)
    c.conn:reply(id, { stopping = true })
    local t = uv.new_timer()
    t:start(0, 0, function() t:close() stop("asked by a client") end)
    return nil, nil, true -- replied already
  end

  -- session/open { sessionId?, bind = "connection" | "pid" | "none", pid?,
  --                owner?, ownerPid?, notify? }
  methods["session/open"] = function(c, params)
    local sid = params.sessionId
    local bind = params.bind or "connection"
    local serr = bad_session_id(sid)
    if serr then return nil, serr end
    local owner_words, owerr = words(params.owner, "owner")
    if owerr then return nil, owerr end
    if params.notify ~= nil and type(params.notify) ~= "boolean" then
      return nil, rpc.error(rpc.INVALID_PARAMS, "'notify' must be a boolean")
    end
    local owner_pid = as_pid(params.ownerPid)
    if params.ownerPid ~= nil and not owner_pid then
      return nil, rpc.error(rpc.INVALID_PARAMS, "'ownerPid' must be a process id (a positive integer)")
    end
    if bind ~= "connection" and bind ~= "pid" and bind ~= "none" then
      return nil, rpc.error(rpc.INVALID_PARAMS, "'bind' must be \"connection\", \"pid\" or \"none\"")
    end
    local pid = as_pid(params.pid)
    if bind == "pid" and not pid then
      return nil, rpc.error(rpc.INVALID_PARAMS, "'pid' must be a process id (a positive integer) with bind = \"pid\"")
    end
    sid = sid or ("conn-%d-%d"):format(uv.os_getpid(), c.n)
    if bind == "pid" then
      local okb, perr, ename = bind_pid(sid, pid)
      local why = ("'pid': cannot watch process %d: %s"):format(pid, tostring(perr))
      if not okb and (ename == "ESRCH" or ename == "EINVAL") then
        return nil, rpc.error(rpc.INVALID_PARAMS, why)
      elseif not okb then -- out of fds or memory: the daemon's trouble, not a bad pid
        return nil, rpc.error(rpc.TOOL_ERROR, why, { code = "limit" })
      end
    end
    owners[sid] = owners[sid] or owner_words
    owner_pids[sid] = owner_pids[sid] or owner_pid or (bind == "pid" and pid) or nil
    c.opened[sid] = params -- a session ended under us is opened again the same way
    engine:session_open(sid)
    c.session = sid
    if bind == "connection" then c.owned[sid] = true end
    if params.notify then c.notify[sid] = true end
    return { sessionId = sid, bind = bind }
  end

  -- Notices still queued for a session that has ended go nowhere.
  local function drop_notices(sid)
    for cl in pairs(clients) do
      local box = cl.outbox[sid]
      cl.outbox[sid] = nil
      if box and not box.timer:is_closing() then box.timer:close() end
    end
  end

  -- session/close { sessionId?, ownerPid?, reason? }: ends that session and
  -- every session the process ownerPid owns (a Claude Code session's Bash
  -- tool jobs and its bgproc mcp's); reason says why, in the records
  -- ("OpenCode chat deleted"). Answers once all their jobs are gone.
  methods["session/close"] = function(c, params, id)
    local pid = as_pid(params.ownerPid)
    if params.ownerPid ~= nil and not pid then
      return nil, rpc.error(rpc.INVALID_PARAMS, "'ownerPid' must be a process id (a positive integer)")
    end
    local first = params.sessionId or (not pid and c.session) or nil
    if first ~= nil and type(first) ~= "string" then
      return nil, rpc.error(rpc.INVALID_PARAMS, "'sessionId' must be a string")
    end
    if first == nil and not pid then
      return nil, rpc.error(rpc.INVALID_PARAMS, "'sessionId' must be a string (this connection has no session)")
    end
    local why, werr = words(params.reason, "reason")
    if werr then return nil, werr end
    local sids = { first }
    for sid, p in pairs(owner_pids) do
      if p == pid and sid ~= first then sids[#sids + 1] = sid end
    end
    local answer = { sessionId = first or sids[1] or json.null, sessionIds = json.array(),
                     killed = json.array(), alreadyFinished = json.array(), errors = json.array(),
                     escaped = json.array() }
    local left = #sids
    if left == 0 then return answer end
    for _, sid in ipairs(sids) do
      c.owned[sid], c.notify[sid] = nil, nil
      if c.session == sid then c.session = nil end -- a later job gets a new session
      forget_session(sid)
      drop_notices(sid)
      answer.sessionIds[#answer.sessionIds + 1] = sid
      engine:session_close_async(sid, function(...)
        local lists = table.pack(...)
        for i, key in ipairs { "killed", "alreadyFinished", "errors", "escaped" } do
          for _, v in ipairs(lists[i] or {}) do answer[key][#answer[key] + 1] = v end
        end
        left = left - 1
        if left == 0 then c.conn:reply(id, answer) end
      end, why or "closed by a client")
    end
    return nil, nil, true
  end

  -- events/take { sessionIds?, ownerPid? }: the notices not taken yet of
  -- these sessions and of every session whose owner is that process (an
  -- agent's shell-tool jobs and its MCP server's), and their text; taking
  -- them empties the lists.
  methods["events/take"] = function(_, params)
    local sids, pid = params.sessionIds, as_pid(params.ownerPid)
    if sids ~= nil and (type(sids) ~= "table" or #sids == 0 or #sids > 64) then
      return nil, rpc.error(rpc.INVALID_PARAMS, "'sessionIds' must be a list of 1 to 64 session ids")
    end
    if params.ownerPid ~= nil and not pid then
      return nil, rpc.error(rpc.INVALID_PARAMS, "'ownerPid' must be a process id (a positive integer)")
    end
    if sids == nil and params.ownerPid == nil then
      return nil, rpc.error(rpc.INVALID_PARAMS, "give 'sessionIds' or 'ownerPid'")
    end
    local wanted = {}
    for i = 1, sids and #sids or 0 do
      local serr = bad_session_id(sids[i])
      if serr then return nil, serr end
      wanted[sids[i]] = true
    end
    for sid, p in pairs(owner_pids) do
      if p == pid then wanted[sid] = true end
    end
    local events = json.array()
    for sid in pairs(wanted) do
      for _, ev in ipairs(journal[sid] or {}) do events[#events + 1] = ev end
      journal[sid] = nil
    end
    table.sort(events, function(a, b) return a.seq < b.seq end)
    return { events = events, text = notices.text(events) }
  end

  methods["tools/list"] = function()
    return { tools = engine:tools() }
  end

  -- tools/call { name, arguments, sessionId?, progress? }
  methods["tools/call"] = function(c, params, id)
    local name, args = rpc.tool_params(params)
    if not name then return nil, args end -- args: the error
    local sid = params.sessionId
    if sid == json.null then sid = nil end
    local serr = bad_session_id(sid)
    if serr then return nil, serr end
    if name == "createBackgroundProcess" then
      if sid and not engine.sessions[sid] then
        -- a session nobody opened: it lives as long as this connection
        methods["session/open"](c, c.opened[sid] or { sessionId = sid })
      elseif not sid and not c.session then
        methods["session/open"](c, {}) -- jobs need a session: the connection's own
      end
    end
    sid = sid or c.session
    local ctx = { sessionId = sid }
    if params.progress == true and id ~= nil then
      ctx.progress = function(elapsed, total)
        c.conn:notify("notifications/progress", { requestId = id, progress = elapsed, total = total })
      end
    end
    local key = rpc.id_key(id)
    local as_text = params.text == true -- the answer with its text, for clients that show text
    local task = engine:call_async(name, args, ctx, function(res, err)
      c.calls[key] = nil
      if id == nil then return end
      if res and as_text then
        c.conn:reply(id, { text = tools.summary(name, res), result = res })
      elseif res then
        c.conn:reply(id, res)
      else
        c.conn:fail(id, rpc.TOOL_ERROR, err.message, { code = err.code, processId = err.processId })
      end
    end)
    if not task.done then c.calls[key] = task end
    return nil, nil, true
  end

  -- notifications/cancelled { requestId }: stop a running wait; unknown ids
  -- are ignored (some clients cancel after every call).
  methods["notifications/cancelled"] = function(c, params)
    local task = c.calls[rpc.id_key(params.requestId)]
    if task then task:cancel() end
  end

  local function on_connection(fd)
    local pipe = uv.new_pipe(false)
    local pok, perr = pipe:open(fd)
    if not pok then
      log("error", "accepted fd " .. fd .. ": " .. tostring(perr))
      pipe:close()
      uv.fs_close(fd)
      return
    end
    local pid, uid = core.peercred(pipe:fileno())
    if uid ~= my_uid then
      log("warn", ("refused a connection from uid %s (pid %s): only uid %d may use this daemon")
        :format(tostring(uid), tostring(pid), my_uid))
      local line = json.encode { jsonrpc = "2.0", id = json.null,
        error = { code = -32001, message = "permission denied: this daemon belongs to another user" } } .. "\n"
      pipe:write(line, function() pipe:close() end)
      return
    end
    nconn = nconn + 1
    local c = { n = nconn, calls = {}, owned = {}, notify = {}, outbox = {}, notified = {}, opened = {} }
    c.conn = rpc.conn {
      input = pipe, log = log,
      on_message = function(conn, msg) rpc.dispatch(conn, msg, methods, c) end,
      on_close = function(_, why)
        clients[c] = nil
        if why ~= "eof" and not stopping then log("info", ("client %d gone: %s"):format(c.n, why)) end
        for _, task in pairs(c.calls) do task:cancel() end
        for _, box in pairs(c.outbox) do if not box.timer:is_closing() then box.timer:close() end end
        for sid in pairs(c.owned) do
          end_session(sid, (owners[sid] and (owners[sid] .. " disconnected") or "connection closed")
            .. " (" .. tostring(why) .. ")")
        end
      end,
    }
    clients[c] = true
    c.conn:start()
  end

  function stop(why)
    if stopping then return end
    stopping = true
    log("info", "stopping: " .. why)
    stop_accepting()
    for c in pairs(clients) do c.conn:close("daemon stopping") end
    for sid in pairs(bound) do unbind(sid) end
    engine:shutdown(why)
    os.remove(socket)
    for _, h in ipairs(handles) do if not h:is_closing() then h:close() end end
    lock:close()
    log("info", "stopped")
  end

  for _, s in ipairs(rpc.stop_signals(function(why) stop(why) end)) do handles[#handles + 1] = s end
  -- Orphans of the jobs are ours (subreaper): reap them as they exit.
  local function reap()
    if stopping then return end
    engine:guarded(function()
      engine.core:reap_strays()
      engine:dispatch()
    end)
  end
  local chld = uv.new_signal()
  chld:start("sigchld", reap)
  local sweep = uv.new_timer()
  sweep:start(2000, 2000, function()
    reap()
    -- no socket, no way for anyone to reach us or our jobs: stop
    local st = uv.fs_stat(socket)
    if not st or st.ino ~= socket_ino then stop("socket " .. socket .. " was removed") end
  end)
  handles[#handles + 1] = chld
  handles[#handles + 1] = sweep

  -- We accept, not libuv: out of fds, libuv's accept resets the clients
  -- that wait. Here they stay in the backlog; we stop polling (a listener
  -- with clients waiting is always ready: that would spin) and try again
  -- every ACCEPT_RETRY_MS, so each is served once fds are free.
  local accept_poll, accept_retry = uv.new_poll(listener:fd()), uv.new_timer()
  local starved = false -- out of fds at the last accept
  local accept_all
  local function poll_again() if not stopping then accept_poll:start("r", accept_all) end end
  function accept_all()
    while not stopping do
      local fd, aerr, ename = listener:accept()
      if fd then
        if starved then log("info", "accepting clients again") end
        starved = false
        on_connection(fd)
      elseif ename == "EAGAIN" then
        return
      else
        -- EMFILE, ENFILE, ENOBUFS, ENOMEM: wait for room, without spinning
        if not starved then log("warn", aerr .. "; new clients wait until there is room") end
        starved = true
        accept_poll:stop()
        accept_retry:start(daemon.ACCEPT_RETRY_MS, 0, poll_again)
        return
      end
    end
  end
  function stop_accepting()
    for _, h in ipairs { accept_poll, accept_retry } do if not h:is_closing() then h:close() end end
    listener:close() -- after its poll
  end
  poll_again()
  log("info", ("started, pid %d, socket %s"):format(uv.os_getpid(), socket))
  if opts.on_ready then opts.on_ready() end
  uv.run()
  if logf then logf:close() end
  return 0
end

return daemon
