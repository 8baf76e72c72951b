-- The per-user daemon: one engine, many clients, on a Unix socket.
--
-- Protocol: newline-delimited JSON-RPC 2.0 (docs/protocol.md). Each
-- connection works in one session: the one it opens with session/open, or
-- a session of its own that ends when the connection drops. A session can
-- instead be bound to a process (the CLI binds to its calling shell) and
-- ends when that process exits.
--
-- This file is the daemon's life: the lock, the socket, accepting
-- connections, signals and the stop. What each request does is in
-- daemon/methods.lua; what is kept of each session, in daemon/sessions.lua.
local sys = require "bgproc.sys"
local uv = require "luv"
local bgproc = require "bgproc"
local json = require "bgproc.lib.json"
local clock = require "bgproc.lib.clock"
local connection = require "bgproc.daemon.conn"
local methods = require "bgproc.daemon.methods"
local owner = require "bgproc.owner"
local paths = require "bgproc.lib.paths"
local rpc = require "bgproc.rpc"
local sessions = require "bgproc.daemon.sessions"

local daemon = {}

daemon.ACCEPT_RETRY_MS = 200 -- out of fds: how often to try accept() again
daemon.SWEEP_MS = 2000       -- how often to reap strays and check the socket is still ours

-- The daemon's state, one table passed around (d):
--   opts, socket, uid (ours), lock, log(level, msg), log_path (nil: none),
--   engine, sessions,
--   listener, accept_poll, accept_retry, starved (out of fds at the last accept),
--   connections (set of connection states), nconn (connections so far),
--   handles (to close at the stop), started (uv.now()), stopping
local Daemon = {}
Daemon.__index = Daemon

local function complain(msg)
  io.stderr:write("bgproc daemon: ", msg, "\n")
end

-- ---- before serving: the socket's directory, the lock, the log -----------------------

-- Whether dir holds nothing but bgproc's own files (sockets, locks,
-- logs): a directory of bgproc's, which it may make private.
local function ours_only(dir)
  local scan = uv.fs_scandir(dir)
  if not scan then return false end
  while true do
    local name = uv.fs_scandir_next(scan)
    if not name then return true end
    if not (name:find("%.sock$") or name:find("%.lock$") or name:find("%.log[%.%d]*$")) then return false end
  end
end

-- The socket's directory. One someone else owns could have its socket
-- replaced under us: refused. A shared sticky one (like /tmp) is left as
-- it is. Returns true, or nil (the trouble told). A directory of bgproc's own is made 0700; any
-- other (a socket named in $HOME, or in /) is never changed, and is
-- refused when others may write to it.
local function claim_dir(dir)
  local ok, err = paths.ensure_dir(dir)
  if not ok then return complain(("cannot create %s: %s"):format(dir, err)) end
  local st, serr = uv.fs_stat(dir)
  if not st then return complain(("cannot use %s: %s"):format(dir, serr)) end
  if st.uid ~= sys.getuid() then
    return complain(("%s belongs to uid %d, not to uid %d: refusing to put the socket there")
      :format(dir, st.uid, sys.getuid()))
  end
  if st.mode & tonumber("1000", 8) ~= 0 then return true end -- shared and sticky
  if ours_only(dir) then
    uv.fs_chmod(dir, tonumber("700", 8))
  elseif st.mode & tonumber("022", 8) ~= 0 then
    return complain(("%s may be written by others: refusing to put the socket there"):format(dir))
  end
  return true
end

-- The lock that makes this the socket's only daemon; or nil and the exit
-- code (0 when another one runs and opts.quiet_if_running).
local function take_lock(socket, opts)
  local lock, err, ename = sys.lock(paths.lock(socket))
  if lock then return lock end
  if ename ~= "EAGAIN" then
    complain(err)
    return nil, 1
  end
  if opts.quiet_if_running then return nil, 0 end
  complain("already running on " .. socket)
  return nil, 1
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

-- log(level, msg): a line in the log file, and on stderr when verbose.
local function logger(file, verbose)
  return function(level, msg)
    local line = ("%s %s %s\n"):format(clock.iso(), level, msg)
    if file then
      file:write(line)
      file:flush()
    end
    if verbose then io.stderr:write(line) end
  end
end

-- ---- connections ----------------------------------------------------------------------

-- A peer of another uid gets one error line, and the door.
local function refuse(d, pipe, pid, uid)
  d.log("warn", ("refused a connection from uid %s (pid %s): only uid %d may use this daemon")
    :format(tostring(uid), tostring(pid), d.uid))
  local line = json.encode { jsonrpc = "2.0", id = json.null,
    error = rpc.error(rpc.PERMISSION_DENIED, "permission denied: this daemon belongs to another user") } .. "\n"
  pipe:write(line, function() pipe:close() end)
end

-- A connection (c, see daemon/conn.lua), served by methods.
local function new_connection(d, pipe)
  d.nconn = d.nconn + 1
  local c = connection.new(d, d.nconn)
  c.conn = rpc.conn {
    input = pipe, log = d.log,
    on_message = function(conn, msg) rpc.dispatch(conn, msg, methods, c) end,
    on_close = function(_, why)
      d.connections[c] = nil
      if why ~= "eof" and not d.stopping then d.log("info", ("client %d gone: %s"):format(c.n, why)) end
      c:gone()
      d.sessions:disconnected(c, why)
    end,
  }
  return c
end

-- Serve an accepted socket: only its owner's uid may talk to us.
local function serve(d, fd)
  local pipe = uv.new_pipe(false)
  local ok, err = pipe:open(fd)
  if not ok then
    d.log("error", "accepted fd " .. fd .. ": " .. tostring(err))
    pipe:close()
    uv.fs_close(fd)
    return
  end
  local pid, uid = sys.peercred(pipe:fileno())
  if uid ~= d.uid then return refuse(d, pipe, pid, uid) end
  local c = new_connection(d, pipe)
  d.connections[c] = true
  c.conn:start()
end

-- ---- accepting ---------------------------------------------------------------------------

-- We accept, not libuv: out of fds, libuv's accept resets the clients
-- that wait. Here they stay in the backlog; we stop polling (a listener
-- with clients waiting is always ready: that would spin) and try again
-- every ACCEPT_RETRY_MS, so each is served once fds are free.
local accept_all

local function poll_again(d)
  if not d.stopping then d.accept_poll:start("r", function() accept_all(d) end) end
end

function accept_all(d)
  while not d.stopping do
    local fd, err, ename = d.listener:accept()
    if fd then
      if d.starved then d.log("info", "accepting clients again") end
      d.starved = false
      serve(d, fd)
    elseif ename == "EAGAIN" then
      return
    else
      -- EMFILE, ENFILE, ENOBUFS, ENOMEM: wait for room, without spinning
      if not d.starved then d.log("warn", err .. "; new clients wait until there is room") end
      d.starved = true
      d.accept_poll:stop()
      d.accept_retry:start(daemon.ACCEPT_RETRY_MS, 0, function() poll_again(d) end)
      return
    end
  end
end

local function start_accepting(d)
  d.accept_poll, d.accept_retry, d.starved = uv.new_poll(d.listener:fd()), uv.new_timer(), false
  poll_again(d)
end

local function stop_accepting(d)
  for _, h in ipairs { d.accept_poll, d.accept_retry } do
    if not h:is_closing() then h:close() end
  end
  d.listener:close() -- after its poll
end

-- ---- watching: signals, orphans, the socket ---------------------------------------------

-- Orphans of the jobs are ours (subreaper): reap them as they exit.
local function reap(d)
  if d.stopping then return end
  d.engine:guarded(function()
    d.engine.core:reap_strays()
    d.engine:dispatch()
  end)
end

local function add_handle(d, h) d.handles[#d.handles + 1] = h end

-- Stop on SIGINT, SIGTERM, SIGHUP; reap on SIGCHLD and every SWEEP_MS;
-- and stop when the socket is gone: nobody could reach us or our jobs.
local function watch(d)
  for _, s in ipairs(rpc.stop_signals(function(why) d:stop(why) end)) do add_handle(d, s) end
  local chld = uv.new_signal()
  chld:start("sigchld", function() reap(d) end)
  add_handle(d, chld)
  local ino = (uv.fs_stat(d.socket) or {}).ino
  local sweep = uv.new_timer()
  sweep:start(daemon.SWEEP_MS, daemon.SWEEP_MS, function()
    reap(d)
    local st = uv.fs_stat(d.socket)
    if not st or st.ino ~= ino then d:stop("socket " .. d.socket .. " was removed") end
  end)
  add_handle(d, sweep)
end

-- ---- the stop ---------------------------------------------------------------------------

-- Stop: every connection closed, every job ended, the socket removed;
-- the loop then runs out and daemon.run returns.
function Daemon:stop(why)
  if self.stopping then return end
  self.stopping = true
  self.log("info", "stopping: " .. why)
  stop_accepting(self)
  for c in pairs(self.connections) do c:close("daemon stopping") end
  self.sessions:unwatch_all()
  self.engine:shutdown(why)
  os.remove(self.socket)
  for _, h in ipairs(self.handles) do
    if not h:is_closing() then h:close() end
  end
  self.lock:close()
  self.log("info", "stopped")
end

-- ---- run ----------------------------------------------------------------------------------

-- The engine, and the socket it is served on. Returns true, or nil (told).
local function open(d)
  -- We hold the lock: a socket file left here is from a daemon that died.
  if uv.fs_stat(d.socket) then
    d.log("info", "removing stale socket " .. d.socket)
    os.remove(d.socket)
  end
  d.engine = bgproc.new { subreaper = true, log = d.log, defaultStore = paths.state_dir() .. "/bgproc.db" }
  -- the starter's identity is not ours: jobs created without an env of
  -- their own (the OpenCode plugin's) must not join its session or agent
  for _, var in ipairs(owner.CALLER_VARS) do uv.os_unsetenv(var) end
  local listener, err = sys.listen(d.socket, 128)
  if not listener then
    complain(("cannot bind %s: %s"):format(d.socket, tostring(err)))
    d.engine:shutdown()
    return nil
  end
  uv.fs_chmod(d.socket, tonumber("600", 8))
  d.listener = listener
  d.sessions = sessions.new(d.engine, d.connections, d.log)
  return true
end

-- Run the daemon in the foreground until it is stopped. Returns an exit
-- code: 0 after a clean stop, or when another daemon already holds the
-- socket (`quiet_if_running`), 1 on failure.
-- opts: { socket?, log? (a path, or false), verbose?, quiet_if_running?, on_ready? }
function daemon.run(opts)
  opts = opts or {}
  local socket = opts.socket or paths.socket()
  if not claim_dir(paths.dir(socket)) then return 1 end
  local lock, code = take_lock(socket, opts)
  if not lock then return code end
  local log_path = opts.log == nil and paths.log() or opts.log or nil
  local logf = open_log(log_path)
  local d = setmetatable({ opts = opts, socket = socket, uid = sys.getuid(), lock = lock,
                           log = logger(logf, opts.verbose), log_path = log_path,
                           connections = {}, nconn = 0, handles = {}, started = uv.now(),
                           stopping = false }, Daemon)
  if not open(d) then return 1 end
  watch(d)
  start_accepting(d)
  d.log("info", ("started, pid %d, socket %s"):format(uv.os_getpid(), socket))
  if opts.on_ready then opts.on_ready() end
  uv.run()
  if logf then logf:close() end
  return 0
end

return daemon
