-- A client of the daemon: connect (starting the daemon if none answers),
-- send JSON-RPC requests, get replies and notifications. Used by the CLI
-- (blocking calls) and the MCP server (callbacks, inside its loop).
local uv = require "luv"
local errors = require "bgproc.lib.errors"
local json = require "bgproc.lib.json"
local paths = require "bgproc.lib.paths"
local rpc = require "bgproc.rpc"
require "bgproc.tools" -- the tools' array keys, for decoding their results

local client = {}
local Client = {}
Client.__index = Client

-- Run the loop until pred() or the timeout; the caller must not be inside
-- a luv callback. A 10 ms tick re-checks conditions no event announces.
local function pump(pred, timeout_ms)
  uv.update_time()
  local deadline = uv.now() + timeout_ms
  local timer = uv.new_timer()
  timer:start(10, 10, function() end)
  while not pred() and uv.now() < deadline do uv.run("once") end
  timer:close()
  uv.run("nowait")
  return pred()
end
client.pump = pump

-- package.path entries made absolute (the daemon runs in /).
local function absolute(paths)
  local cwd = uv.cwd()
  return (paths:gsub("[^;]+", function(entry)
    if entry:sub(1, 1) == "/" then return entry end
    return cwd .. "/" .. entry:gsub("^%./", "")
  end))
end

-- Start `bgproc daemon run`, owned by nobody: a shell in a session of its
-- own starts it in the background and exits at once, so the daemon is
-- re-parented away from us (to init, or the nearest subreaper) and no
-- client's tree kill (by parent pids, process group or session) reaches
-- it or the global jobs. Its stdout and stderr go to its log. Module paths
-- and the socket go on its command line, not in its environment: jobs
-- inherit the daemon's environment, which must hold nothing of bgproc's
-- own. Started from a bgproc job (a CLI run by an agent's job), it first
-- leaves that job's cgroup: it serves every session, and must not die
-- with the job that happened to start it. Returns true or nil, err.
function client.spawn_daemon(socket)
  local code = ("package.path = %q; package.cpath = %q; require('bgproc.core').leave_job_cgroup(); "
    .. "os.exit(require('bgproc.cli').main({ '--socket', %q, 'daemon', 'run', '--quiet-if-running' }))")
    :format(absolute(package.path), absolute(package.cpath), socket)
  local log = paths.log()
  if not paths.ensure_dir(paths.dir(log)) then log = "/dev/null" end
  local handle, err
  handle, err = uv.spawn("/bin/sh", {
    args = { "-c", '"$0" -e "$1" </dev/null >>"$2" 2>&1 &', uv.exepath(), code, log },
    detached = true, cwd = "/",
  }, function() handle:close() end)
  if not handle then return nil, err end
  return true
end

-- A Client over a connected pipe.
function client.wrap(pipe, socket)
  local self = setmetatable({ pending = {}, progress = {}, next_id = 0, socket = socket, closed = false }, Client)
  self.conn = rpc.conn {
    input = pipe,
    on_message = function(_, msg, line) self:dispatch(msg, line) end,
    on_close = function(_, why)
      self.closed = true
      local pending = self.pending
      self.pending, self.progress = {}, {}
      for _, cb in pairs(pending) do
        pcall(cb, nil, { code = errors.RPC.DISCONNECTED, message = "connection to the daemon lost (" .. tostring(why) .. ")" })
      end
      if self.on_close then self.on_close(why) end
    end,
  }
  self.conn:start()
  return self
end

-- Connect without blocking (inside a running loop): cb(client) or
-- cb(nil, message). When none answers, the daemon is started (unless
-- autostart = false: then the first failure is the answer) and tried
-- again every 20 ms until timeout_ms (default 5000).
function client.connect_async(opts, cb)
  rpc.ignore_sigpipe() -- a daemon gone mid-write is an error, not our death
  local socket = opts.socket or paths.socket()
  uv.update_time()
  local deadline = uv.now() + (opts.timeout_ms or 5000)
  local spawned = false
  local function attempt()
    local pipe = uv.new_pipe(false)
    pipe:connect(socket, function(err)
      if not err then
        local nc = client.wrap(pipe, socket)
        nc.in_loop = true
        return cb(nc)
      end
      pipe:close()
      if opts.autostart ~= false and not spawned then
        spawned = true
        local ok, serr = client.spawn_daemon(socket)
        if not ok then return cb(nil, "cannot start the daemon: " .. tostring(serr)) end
      end
      if opts.autostart == false or uv.now() > deadline then
        return cb(nil, ("cannot reach the bgproc daemon at %s: %s"):format(socket, tostring(err)))
      end
      local t = uv.new_timer()
      t:start(20, 0, function() t:close() attempt() end)
    end)
  end
  attempt()
end

-- client.connect{ socket = path, autostart = true, timeout_ms = 5000 }:
-- connect_async, blocking (not inside a luv callback). Returns a Client
-- or nil, message.
function client.connect(opts)
  opts = opts or {}
  local done, c, err = false, nil, nil
  client.connect_async(opts, function(nc, cerr) done, c, err = true, nc, cerr end)
  if not pump(function() return done end, (opts.timeout_ms or 5000) + 2000) then
    return nil, ("cannot reach the bgproc daemon at %s: no answer in time"):format(opts.socket or paths.socket())
  end
  if c then c.in_loop = false end
  return c, err
end

-- createBackgroundProcess arguments as this process would start the job
-- itself: in its directory (the daemon runs in /) and, unless inheritEnv
-- is given, with its environment (not that of whoever started the
-- daemon) plus args.env. BGPROC_SESSION is left out: it names this
-- caller's session, which a bgproc run by the job must not join. Returns
-- a new table.
function client.localize_create(args)
  if type(args) ~= "table" then return args end
  local out = {}
  for k, v in pairs(args) do out[k] = v end
  local cwd = uv.cwd()
  if type(out.cwd) ~= "string" then
    if out.rerun == nil then out.cwd = cwd end -- (a rerun keeps its job's)
  elseif out.cwd:sub(1, 1) ~= "/" then out.cwd = cwd .. "/" .. out.cwd end
  if out.inheritEnv == nil and out.baseEnv == nil then
    -- this process's environment, sent apart from `env`: the daemon uses
    -- it, and stores only what the caller set (secrets stay off disk)
    local env = uv.os_environ()
    env.BGPROC_SESSION = nil
    out.baseEnv = env
  end
  return out
end

-- A daemon's error reply to tools/call as the tool's error { code,
-- message }: the tool's own (TOOL_ERROR, its code in data.code), else
-- "unavailable" (no daemon, or it refused the request). Second value:
-- true when the tool itself failed.
function client.tool_error(err)
  if err.code == rpc.TOOL_ERROR then
    return { code = err.data and err.data.code or "error", message = err.message }, true
  end
  return { code = "unavailable", message = err.message }, false
end

function Client:dispatch(msg, line)
  if msg.method then
    local params = msg.params or {}
    -- progress of one of our requests goes to that request's handler
    local on_progress = msg.method == "notifications/progress" and self.progress[params.requestId]
    if on_progress then return on_progress(params.progress, params.total) end
    if self.on_notification then self.on_notification(msg.method, params, msg.id) end
    return
  end
  local cb = self.pending[msg.id]
  if not cb then return end
  self.pending[msg.id] = nil
  self.progress[msg.id] = nil
  -- the third value: the result's JSON text as the daemon wrote it
  if msg.error then
    cb(nil, json.normalize(msg.error))
  else
    cb(msg.result, nil, line and rpc.raw_result(line, msg.id))
  end
end

-- Send a request; cb(result, err) gets the reply, on_progress(progress,
-- total) its progress notifications, if given. Returns the id. Both are
-- registered before the send: a send that fails closes the connection,
-- which answers cb at once.
function Client:request(method, params, cb, on_progress)
  self.next_id = self.next_id + 1
  local id = self.next_id
  if self.closed then
    cb(nil, { code = errors.RPC.DISCONNECTED, message = "not connected to the daemon" })
    return id
  end
  self.pending[id] = cb
  self.progress[id] = on_progress
  self.conn:send { jsonrpc = "2.0", id = id, method = method, params = params or {} }
  return id
end

function Client:notify(method, params)
  self.conn:send { jsonrpc = "2.0", method = method, params = params }
end

-- Blocking request: result (normalized: whole numbers are integers, empty
-- arrays are arrays), or nil and the error object.
function Client:call(method, params, timeout_ms)
  local done, res, err = false, nil, nil
  self:request(method, params, function(r, e) done, res, err = true, r, e end)
  if not pump(function() return done end, timeout_ms or 3600 * 1000) then
    return nil, { code = errors.RPC.NO_ANSWER, message = "no answer from the daemon in time" }
  end
  return json.normalize(res), err
end

-- Close the connection. A blocking client (the CLI, scripts) also runs
-- the loop once so the close completes: luv must not meet a handle still
-- closing when the Lua state closes. A client used inside a running loop
-- (`in_loop`, e.g. the MCP server's) leaves that to the loop.
function Client:close()
  if not self.closed then self.conn:close("closed by client") end
  if not self.in_loop then uv.run("nowait") end
end

return client
