-- The MCP server: `bgproc mcp`. JSON-RPC 2.0 over stdio, one message per
-- line; stdout carries protocol only, logs go to stderr.
--
-- By default it is a client of the daemon with a session of its own that
-- ends when this process goes away (stdin EOF, SIGINT, SIGTERM, or being
-- killed: the daemon sees the connection drop). With standalone = true it
-- runs an engine in-process and everything ends when it exits.
local uv = require "luv"
local bgproc = require "bgproc"
local json = require "bgproc.lib.json"
local notices = require "bgproc.engine.notices"
local rpc = require "bgproc.rpc"
local tools = require "bgproc.tools"

local mcp = {}

-- Newest first: a client's version is echoed when supported, else the newest.
mcp.VERSIONS = { "2025-11-25", "2025-06-18", "2025-03-26" }

local INSTRUCTIONS = "bgproc runs commands in the background and keeps their output. "
  .. "Start dev servers, builds, watchers and test runs with createBackgroundProcess, wait for "
  .. "readiness with waitForBackgroundProcess (until: \"output\", pattern: ...) instead of sleeping, "
  .. "read output with getBackgroundProcess (use the returned cursor as `since` to follow), and "
  .. "stop jobs with killProcesses, which ends the whole process tree. Jobs of this session end "
  .. "when the session ends unless started with global: true."

-- MCP's log levels (RFC 5424), lowest first.
local LEVELS = {}
for i, l in ipairs { "debug", "info", "notice", "warning", "error", "critical", "alert", "emergency" } do
  LEVELS[l] = i
end

local function log(level, msg)
  io.stderr:write(("bgproc mcp: %s: %s\n"):format(level, msg))
end

-- stdin or stdout as a regular file (`bgproc mcp < requests.jsonl`): libuv
-- streams cannot hold files, so this offers the few stream methods rpc.lua
-- uses, with blocking reads and writes.
local function file_stream(fd)
  local s = { closing = false }
  local file = fd == 0 and io.stdin or io.stdout
  function s:read_start(cb)
    s.reading = true
    local t = uv.new_timer()
    t:start(0, 0, function()
      t:close()
      while s.reading and not s.closing do
        local chunk = file:read(65536)
        cb(nil, chunk)
        if not chunk then break end
      end
    end)
  end
  function s:read_stop() s.reading = false end
  function s:write(data) -- a string or a list of them, as libuv streams take
    if type(data) == "table" then file:write(table.unpack(data)) else file:write(data) end
    file:flush()
    return true
  end
  function s:get_write_queue_size() return 0 end
  function s:is_closing() return s.closing end
  function s:close() s.closing = true end
  function s:shutdown(cb) if cb then cb() end end
  return s
end

local function open_stdio(fd)
  local kind = uv.guess_handle(fd)
  if kind == "tty" then return uv.new_tty(fd, fd == 0) end
  if kind == "pipe" then
    local p = uv.new_pipe(false)
    p:open(fd)
    return p
  end
  return file_stream(fd)
end

-- In-process engine.
local function standalone_backend(sid)
  local engine = bgproc.new { log = log }
  engine:session_open(sid)
  local listener
  engine:on_event(notices.listener(function(ev)
    if listener then listener { ev } end
  end, sid))
  return {
    listen = function(fn) listener = fn end,
    tools = function(cb) cb(engine:tools()) end,
    call = function(name, args, progress, cb)
      local task = engine:call_async(name, args, { sessionId = sid, progress = progress }, cb)
      return function() task:cancel() end
    end,
    close = function() engine:shutdown() end,
  }
end

-- Through the daemon. If it goes away, calls wait while a new connection
-- (and the same session) is made, without blocking the loop.
local function daemon_backend(sid, socket)
  local client = require "bgproc.client"
  local owner = require "bgproc.owner"
  local conn
  local waiting -- callbacks queued while reconnecting
  local listener
  local open_params = owner.session_params("mcp", math.tointeger(uv.os_getppid()))
  open_params.sessionId = sid
  local function listen_on(cc)
    cc.on_notification = function(method, params)
      if method == "notifications/jobs" and listener and type(params.events) == "table" then listener(params.events) end
    end
  end
  local c, err = client.connect { socket = socket }
  if not c then return nil, err end
  listen_on(c)
  local res, oerr = c:call("session/open", open_params, 5000)
  if not res then
    c:close()
    return nil, oerr.message
  end
  c.in_loop = true -- from here on it lives inside the server's loop
  conn = c

  local function with_conn(cb)
    if not conn.closed then return cb(conn) end
    if waiting then waiting[#waiting + 1] = cb return end
    waiting = { cb }
    log("warn", "lost the daemon; reconnecting")
    client.connect_async({ socket = socket }, function(nc, cerr)
      local queued = waiting
      waiting = nil
      if not nc then
        for _, q in ipairs(queued) do q(nil, cerr) end
        return
      end
      listen_on(nc)
      nc:request("session/open", open_params, function(_, serr)
        if serr then log("warn", "session/open: " .. tostring(serr.message)) end
        conn = nc
        for _, q in ipairs(queued) do q(nc) end
      end)
    end)
  end

  return {
    listen = function(fn) listener = fn end,
    tools = function(cb)
      with_conn(function(cc, e)
        if not cc then return cb(nil, { code = "unavailable", message = tostring(e) }) end
        cc:request("tools/list", {}, function(r, rerr) cb(r and r.tools, rerr) end)
      end)
    end,
    call = function(name, args, progress, cb)
      local cancelled, cancel_remote = false, nil
      with_conn(function(cc, e)
        if not cc then return cb(nil, { code = "unavailable", message = tostring(e) }) end
        if cancelled then return cb(nil, { code = "cancelled", message = "cancelled" }) end
        if name == "createBackgroundProcess" then args = client.localize_create(args) end
        local id = cc:request("tools/call", { name = name, arguments = args, sessionId = sid, progress = progress ~= nil },
          function(r, rerr, raw)
            if r then return cb(r, nil, raw) end
            cb(nil, (client.tool_error(rerr)))
          end, progress)
        cancel_remote = function() cc:notify("notifications/cancelled", { requestId = id }) end
      end)
      return function()
        cancelled = true
        if cancel_remote then cancel_remote() end
      end
    end,
    close = function() if conn then conn:close() end end,
  }
end

-- Run until the client goes away. Returns an exit code.
function mcp.run(opts)
  opts = opts or {}
  local sid = opts.sessionId or ("mcp-%d-%d"):format(uv.os_getpid(), uv.hrtime() % 100000)
  local backend, err
  if opts.standalone then
    backend = standalone_backend(sid)
  else
    backend, err = daemon_backend(sid, opts.socket)
    if not backend then
      log("error", tostring(err))
      return 1
    end
  end

  local calls = rpc.calls() -- each { cancel, cancelled, waits }
  local conn, finished, input_done
  local signals = {}

  local function shutdown(why)
    if finished then return end
    finished = true
    if opts.verbose then log("info", "exiting: " .. tostring(why)) end
    for _, s in ipairs(signals) do if not s:is_closing() then s:close() end end
    backend.close()
    if conn then conn:close(why) end
  end

  local function tool_result(name, res, terr)
    if res then
      return { content = json.array { { type = "text", text = tools.summary(name, res) } },
               structuredContent = res, isError = false }
    end
    return { content = { { type = "text", text = tools.summary(name, nil, terr) } },
             structuredContent = { error = terr }, isError = true }
  end

  local handlers = {}

  function handlers.initialize(_, params)
    local want = params.protocolVersion
    local version = mcp.VERSIONS[1]
    for _, v in ipairs(mcp.VERSIONS) do if v == want then version = v end end
    return {
      protocolVersion = version,
      capabilities = { tools = { listChanged = false }, logging = {} },
      serverInfo = { name = "bgproc", title = "bgproc background processes", version = bgproc.version },
      instructions = INSTRUCTIONS,
    }
  end

  function handlers.ping() return {} end

  -- logging/setLevel: from then on, the ends (and readiness, notifyPattern
  -- lines) of this session's jobs come as notifications/message at or
  -- above that level.
  local log_level
  handlers["logging/setLevel"] = function(_, params)
    local rank = LEVELS[params.level]
    if not rank then
      return nil, rpc.error(rpc.INVALID_PARAMS, "'level' must be one of debug, info, notice, warning, error, "
        .. "critical, alert, emergency")
    end
    log_level = rank
    return {}
  end
  backend.listen(function(events)
    if not log_level then return end
    for _, ev in ipairs(events) do
      local level = notices.level(ev)
      if LEVELS[level] >= log_level then
        conn:notify("notifications/message", { level = level, logger = "bgproc", data = notices.line(ev) })
      end
    end
  end)

  handlers["tools/list"] = function(_, _, id)
    backend.tools(function(defs, terr)
      if defs then conn:reply(id, { tools = defs })
      else conn:fail(id, rpc.INTERNAL_ERROR, terr and terr.message or "no tools") end
    end)
    return nil, nil, true
  end

  handlers["tools/call"] = function(_, params, id)
    local name, args = rpc.tool_params(params)
    if not name then return nil, args end -- args: the error
    local token = type(params._meta) == "table" and params._meta.progressToken or nil
    local progress
    if token ~= nil and token ~= json.null then
      progress = function(elapsed, total)
        conn:notify("notifications/progress", { progressToken = token, progress = elapsed, total = total,
          message = ("still waiting after %d s"):format(elapsed // 1000) })
      end
    end
    local entry = calls:add(id, { waits = name == "waitForBackgroundProcess" })
    entry.cancel = backend.call(name, args, progress, function(res, terr, raw)
      calls:finish(id)
      if input_done and calls:empty() then
        local t = uv.new_timer() -- after this answer is written
        t:start(0, 0, function() t:close() shutdown("eof") end)
      end
      if entry.cancelled or (terr and terr.code == "cancelled") then return end -- no answer once cancelled
      if res and raw then
        -- the daemon's JSON goes out as it came: no second encoding
        conn:reply_raw(id, '{"content":[{"type":"text","text":' .. json.encode(tools.summary(name, res))
          .. '}],"structuredContent":' .. raw .. ',"isError":false}')
      else
        conn:reply(id, tool_result(name, res, terr))
      end
    end)
    return nil, nil, true
  end

  handlers["notifications/initialized"] = function() end

  handlers["notifications/cancelled"] = function(_, params) calls:cancel(params.requestId) end

  -- At the end of input: waits are cancelled (their client is gone), the
  -- answers still owed are written, then the server exits.
  local function on_eof()
    input_done = true
    calls:cancel_all(function(entry) return entry.waits end)
    if calls:empty() then shutdown("eof") end
  end

  conn = rpc.conn {
    input = open_stdio(0), output = open_stdio(1), log = log,
    on_message = function(c, msg) rpc.dispatch(c, msg, handlers) end, on_eof = on_eof,
    on_close = function(_, why) shutdown(why) end,
  }
  signals = rpc.stop_signals(shutdown) -- and a closed stdout is an error, not death
  conn:start()
  uv.run()
  return 0
end

return mcp
