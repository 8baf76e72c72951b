-- The per-user daemon end to end: real daemons on private sockets
-- (helpers.private_daemon), real clients (bin/bgproc, bgproc.client, raw
-- luv pipes speaking the JSON-RPC lines by hand) and real jobs. Every
-- daemon a test starts is stopped after it, and every job group it made is
-- killed if it is still there.
local h = require "helpers"
local uv = require "luv"
local cjson = require "cjson"
local core = require "bgproc.core"
local sys = require "bgproc.sys"
local client = require "bgproc.client"
local json = require "bgproc.lib.json"

local NULL = cjson.null

-- ---- plumbing -------------------------------------------------------------------------

local rawconn = require "rawconn"
local pump, raw = rawconn.pump, rawconn.connect

local function since_ms(t0) return (uv.hrtime() - t0) / 1e6 end

local read_file = h.read_file

local function mode_of(path)
  local st = uv.fs_stat(path)
  return st and (st.mode & 511), st and st.type
end

-- A ping on a fresh connection: true, or false and why.
local function answers_ping(d)
  local r, err = raw(d.socket)
  if not r then return false, "cannot connect: " .. tostring(err) end
  r:send('{"jsonrpc":"2.0","id":"probe","method":"ping"}\n')
  local m = r:recv(3000)
  r:close()
  if not (m and m.id == "probe" and type(m.result) == "table") then
    return false, "no answer to ping, got " .. tostring(m and cjson.encode(m))
  end
  return true
end

-- ---- daemons, clients, jobs -------------------------------------------------------------

local daemons, groups = {}, {}

local function new_daemon(config)
  local d = h.private_daemon(config)
  d.log = d.dir .. "/state/bgproc/daemon.log"
  daemons[#daemons + 1] = d
  return d
end

local function status(d)
  local out, code, stdout = d.run { "--json", "daemon", "status" }
  local ok, s = pcall(cjson.decode, stdout)
  assert(ok, "daemon status printed no JSON: " .. out)
  return json.normalize(s), code
end

local function start(d)
  local out, code = d.run { "daemon", "start" }
  assert(code == 0, "daemon start failed: " .. out)
  d.pid = assert(status(d).pid, "no pid in daemon status")
  return d
end

local function log_text(d) return read_file(d.log) or "" end

-- Remember a job's process group: killed after the test if still there.
local function track(pgid)
  groups[#groups + 1] = pgid
  return pgid
end

local function cleanup()
  for i = #daemons, 1, -1 do
    daemons[i].stop()
    daemons[i] = nil
  end
  for _, pg in ipairs(groups) do
    if #h.group(pg) > 0 then uv.kill(-pg, "sigkill") end
  end
  groups = {}
  uv.run("nowait")
end

local function connect(d)
  return assert(client.connect { socket = d.socket, autostart = false })
end

-- A tool call that must succeed.
local tool = h.tool_call

-- A job's record, asked on a fresh connection.
local function job(d, id)
  local c = connect(d)
  local r = tool(c, "getBackgroundProcess", { processId = id })
  c:close()
  return r
end

local function wait_status(d, id, want, ms)
  return h.wait_until(function() return job(d, id).status == want end, ms or 5000, 50)
end

-- How many clients the daemon serves besides the one asking (daemon/status
-- on a fresh connection). 0 once it has handled every other client's close.
local function other_clients(d)
  local c = connect(d)
  local s, err = c:call("daemon/status", {}, 5000)
  c:close()
  assert(s, err and err.message)
  return s.clients - 1
end

-- The daemon has handled every other connection's close, and the job is
-- running with no stop begun (a session ending with it would have begun one).
local function untouched_after_closes(d, id)
  assert.truthy(h.wait_until(function() return other_clients(d) == 0 end, 5000),
    "the daemon still counts a closed connection")
  local r = job(d, id)
  return r.status == "running" and not r.stopping, r
end

-- The job's leader has exec'd its program (comm is `name`).
local function execd(pid, name)
  return h.wait_until(function()
    local st = h.stat(pid)
    return st and st.comm == name
  end, 5000)
end

-- `bgproc --json start ARGS...`: the record.
local function cli_start(d, args)
  local argv = { "--json", "start" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local out, code, stdout = d.run(argv)
  assert(code == 0, "bgproc start failed: " .. out)
  local r = json.normalize(cjson.decode(stdout))
  track(r.pid)
  return r
end

-- Live daemon processes (not their guardians) serving socket.
local function daemons_on(socket)
  local out = {}
  for name in uv.fs_scandir_next, assert(uv.fs_scandir("/proc")) do
    local pid = tonumber(name)
    if pid then
      local comm = read_file("/proc/" .. name .. "/comm") or ""
      local cmd = read_file("/proc/" .. name .. "/cmdline") or ""
      local env = "\0" .. (read_file("/proc/" .. name .. "/environ") or "")
      -- started on demand: the socket is on its command line; by hand
      -- (`bgproc daemon run`): in its environment
      local on_demand = cmd:find("'daemon', 'run'", 1, true) and cmd:find(("%q"):format(socket), 1, true)
      local by_hand = cmd:find("\0daemon\0run", 1, true)
        and env:find("\0BGPROC_SOCKET=" .. socket .. "\0", 1, true)
      if not comm:find("guardian", 1, true) and (on_demand or by_hand) and h.alive(pid) then
        out[#out + 1] = pid
      end
    end
  end
  table.sort(out)
  return out
end

local function count(s, plain)
  local n, pos = 0, 1
  while true do
    local i = s:find(plain, pos, true)
    if not i then return n end
    n, pos = n + 1, i + 1
  end
end

-- ---- the specs ----------------------------------------------------------------------------

describe("daemon", function()
  local sigpipe
  lazy_setup(function()
    -- a daemon dying under a test must fail the test, not kill busted
    sigpipe = uv.new_signal()
    sigpipe:start("sigpipe", function() end)
    sigpipe:unref()
  end)
  lazy_teardown(function()
    sigpipe:close()
    uv.run("nowait")
  end)
  after_each(cleanup)

  describe("socket", function()
    it("is mode 0600 in a 0700 directory, even one that was wider before", function()
      local d = new_daemon()
      local dir = d.dir .. "/run"
      assert(uv.fs_mkdir(dir, tonumber("755", 8)))
      assert(uv.fs_chmod(dir, tonumber("755", 8)))
      start(d)
      local dmode, dtype = mode_of(dir)
      assert.equal("directory", dtype)
      assert.equal("700", ("%o"):format(dmode))
      local smode, stype = mode_of(d.socket)
      assert.equal("socket", stype)
      assert.equal("600", ("%o"):format(smode))
      assert.equal("600", ("%o"):format((mode_of(d.socket .. ".lock"))))
    end)

    it("never changes a directory that is not bgproc's own (a socket named in $HOME), refuses one others may write", function()
      local d = new_daemon()
      local home = d.dir .. "/home"
      assert(uv.fs_mkdir(home, tonumber("755", 8)))
      h.write_file(home .. "/notes.txt", "mine\n")
      assert(uv.fs_chmod(home, tonumber("755", 8)))
      local in_home = { BGPROC_SOCKET = home .. "/x.sock" }
      local out, code = d.run({ "daemon", "start" }, in_home)
      assert.equal(0, code, out)
      assert.equal("755", ("%o"):format((mode_of(home))), "the user's directory is left as it was")
      assert.equal("600", ("%o"):format((mode_of(home .. "/x.sock"))))
      d.run({ "daemon", "stop" }, in_home)
      -- a directory anyone may write to, not sticky: anyone could replace the socket
      local open = d.dir .. "/open"
      assert(uv.fs_mkdir(open, tonumber("777", 8)))
      h.write_file(open .. "/other.txt", "theirs\n")
      assert(uv.fs_chmod(open, tonumber("777", 8)))
      out, code = d.run({ "daemon", "start" }, { BGPROC_SOCKET = open .. "/x.sock" })
      assert.equal(1, code, out)
      assert.matches("may be written by others: refusing", log_text(d))
      assert.equal("777", ("%o"):format((mode_of(open))))
    end)

    it("refuses a peer of another uid with -32001, logs it, and keeps serving", function()
      if sys.getuid() ~= 0 then
        pending("needs root, to run a client as user nobody (setpriv)")
        return
      end
      local d = start(new_daemon())
      -- let user nobody reach the socket at all
      for _, p in ipairs { d.dir, d.dir .. "/run" } do assert(uv.fs_chmod(p, tonumber("755", 8))) end
      assert(uv.fs_chmod(d.socket, tonumber("666", 8)))
      local loop = core.new()
      local child = assert(loop:spawn {
        argv = { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                 h.lua, h.fixture("daemon_peer.lua") },
        env = h.lua_env { BGPROC_SOCKET = d.socket },
      })
      local out = h.finish(loop, child, 10000)
      loop:close()
      local lines = {}
      for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.equal("uid 65534", lines[1], out)
      assert.equal(3, #lines, out)
      local reply = cjson.decode(lines[2])
      assert.equal("2.0", reply.jsonrpc)
      assert.equal(NULL, reply.id)
      assert.equal(-32001, reply.error.code)
      assert.matches("permission denied", reply.error.message)
      assert.equal("EOF", lines[3], "the peer must be disconnected")
      assert.matches("warn refused a connection from uid 65534 %(pid %d+%)", log_text(d))
      assert(answers_ping(d))
      assert.equal(1, status(d).clients) -- the status call itself
    end)
  end)

  describe("start", function()
    it("the CLI starts the daemon when none answers", function()
      local d = new_daemon()
      local s, code = status(d)
      assert.is_false(s.running)
      assert.equal(1, code)
      assert.is_nil(uv.fs_stat(d.socket), "`daemon status` must not start a daemon")
      local out, lcode, stdout = d.run { "--json", "ls" }
      assert.equal(0, lcode, out)
      assert.equal(0, cjson.decode(stdout).count)
      s = status(d)
      assert.is_true(s.running)
      assert.truthy(h.alive(s.pid))
      assert.same({ s.pid }, daemons_on(d.socket))
      assert(answers_ping(d))
    end)

    it("gives clients that start it at the same time one daemon", function()
      local d = new_daemon()
      local loop = core.new()
      local kids = {}
      for i = 1, 6 do
        local args = i % 2 == 0 and { "daemon", "start" } or { "--json", "ls" }
        local argv = { h.lua, d.bin }
        for _, a in ipairs(args) do argv[#argv + 1] = a end
        kids[i] = assert(loop:spawn { argv = argv, env = d.env })
      end
      for i, kid in ipairs(kids) do
        local out = h.finish(loop, kid, 20000)
        assert.equal(0, (kid:exit()), ("client %d: %s"):format(i, out))
      end
      loop:close()
      local s = status(d)
      assert.is_true(s.running)
      -- the losers exit at once; one daemon stays
      assert.truthy(h.wait_until(function() return #daemons_on(d.socket) == 1 end, 3000),
        "daemons on the socket: " .. table.concat(daemons_on(d.socket), " "))
      assert.same({ s.pid }, daemons_on(d.socket))
      assert.equal(1, count(log_text(d), " started, pid "), log_text(d))
    end)

    it("a second daemon on the same socket finds it taken and exits", function()
      local d = start(new_daemon())
      local out, code = d.run { "daemon", "run", "--quiet-if-running" }
      assert.equal(0, code)
      assert.equal("", out)
      out, code = d.run { "daemon", "run" }
      assert.equal(1, code)
      assert.matches("already running on " .. d.socket:gsub("%p", "%%%0"), out)
      out, code = d.run { "daemon", "start" }
      assert.equal(0, code)
      assert.matches("already running", out)
      assert.same({ d.pid }, daemons_on(d.socket))
      assert.equal(1, count(log_text(d), " started, pid "))
      assert(answers_ping(d))
    end)

    it("replaces the stale socket of a daemon that was SIGKILLed", function()
      local d = start(new_daemon())
      local old = d.pid
      assert(uv.kill(old, "sigkill"))
      assert.truthy(h.wait_until(function() return not h.alive(old) end, 3000))
      assert.equal("socket", select(2, mode_of(d.socket)), "the dead daemon's socket file stays")
      assert.is_nil((raw(d.socket)), "nobody answers on it")
      local s, code = status(d)
      assert.is_false(s.running)
      assert.equal(1, code)
      -- the next command starts a new daemon on the same path
      local out, lcode = d.run { "--json", "ls" }
      assert.equal(0, lcode, out)
      s = status(d)
      assert.is_true(s.running)
      assert.are_not.equal(old, s.pid)
      assert.truthy(h.alive(s.pid))
      d.pid = s.pid
      assert.matches("removing stale socket " .. d.socket:gsub("%p", "%%%0"), log_text(d))
      assert(answers_ping(d))
    end)

    it("takes its jobs down with it when it is SIGKILLed", function()
      local d = start(new_daemon())
      local j = cli_start(d, { "--global", "sleep 1000 & sleep 1000 & wait" })
      assert.truthy(h.wait_until(function() return #h.group(j.pid) == 3 end, 3000))
      assert(uv.kill(d.pid, "sigkill"))
      assert.truthy(h.wait_until(function() return #h.group(j.pid) == 0 end, 5000),
        "the jobs outlived their daemon: " .. table.concat(h.group(j.pid), " "))
    end)
  end)

  describe("stopping", function()
    local ways = {
      { "`bgproc daemon stop`", "asked by a client", function(d)
        local out, code = d.run { "daemon", "stop" }
        assert.equal(0, code, out)
        assert.matches("stopped %(pid " .. d.pid .. "%)", out)
      end },
      { "SIGTERM", "signal sigterm", function(d) assert(uv.kill(d.pid, "sigterm")) end },
      { "SIGINT", "signal sigint", function(d) assert(uv.kill(d.pid, "sigint")) end },
      { "SIGHUP", "signal sighup", function(d) assert(uv.kill(d.pid, "sighup")) end },
    }
    for _, way in ipairs(ways) do
      it(way[1] .. " ends every job, global ones too, hangs up on clients and removes the socket", function()
        local d = start(new_daemon())
        local a = cli_start(d, { "sleep 1000 & sleep 1000 & wait" })
        local g = cli_start(d, { "--global", "sleep 1000 & sleep 1000 & wait" })
        assert.is_true(g.global)
        -- a client with a session and a job of its own, connected throughout
        local r = assert(raw(d.socket))
        r:request(1, "session/open", { bind = "connection" })
        local sid = assert(r:recv()).result.sessionId
        r:request(2, "tools/call", { name = "createBackgroundProcess", sessionId = sid,
                                     arguments = { command = "sleep 1000 & sleep 1000 & wait" } })
        local c = assert(r:recv()).result
        track(c.pid)
        for _, pg in ipairs { a.pid, g.pid, c.pid } do
          assert.truthy(h.wait_until(function() return #h.group(pg) == 3 end, 3000))
        end
        local t0 = uv.hrtime()
        way[3](d)
        for _, pg in ipairs { a.pid, g.pid, c.pid } do
          assert.truthy(h.wait_until(function() return #h.group(pg) == 0 end, 5000),
            ("group %d survived: %s"):format(pg, table.concat(h.group(pg), " ")))
        end
        assert.truthy(h.wait_until(function() return not h.alive(d.pid) end, 5000), "the daemon process lingers")
        assert.truthy(pump(function() return r.eof end, 3000), "the client was not hung up on")
        r:close()
        assert.is_nil(uv.fs_stat(d.socket), "the socket file is still there")
        assert.is_true(since_ms(t0) < 5000)
        local log = log_text(d)
        local i = log:find("info stopping: " .. way[2], 1, true)
        assert.truthy(i, log)
        assert.truthy(log:find("info stopped\n", i, true), log)
        -- and the next command starts a fresh one
        local out, code = d.run { "--json", "ls" }
        assert.equal(0, code, out)
        assert.are_not.equal(d.pid, status(d).pid)
      end)
    end
  end)

  describe("sessions", function()
    it("a connection-bound session ends when the connection closes; its global job survives", function()
      local d = start(new_daemon())
      local c = connect(d)
      local s = assert(c:call("session/open", { bind = "connection" }, 5000))
      assert.equal("connection", s.bind)
      local sid = s.sessionId
      local mine = tool(c, "createBackgroundProcess", { command = "sleep 1000" }, sid)
      local glob = tool(c, "createBackgroundProcess", { command = "sleep 1000", global = true }, sid)
      track(mine.pid)
      track(glob.pid)
      assert.equal(sid, mine.sessionId)
      assert.equal(sid, glob.sessionId)
      assert.truthy(execd(mine.pid, "sleep"), "the session's job never started")
      assert.equal("running", job(d, mine.id).status)
      c:close()
      assert.truthy(wait_status(d, mine.id, "cancelled"), "the session's job was not cancelled")
      assert.truthy(h.wait_until(function() return not h.alive(mine.pid) end, 3000))
      local g = job(d, glob.id)
      assert.equal("running", g.status)
      assert.truthy(h.alive(glob.pid))
      assert.matches("session " .. sid:gsub("%p", "%%%0") .. " ended %(connection closed", log_text(d))
    end)

    it("a connection that never opened a session gets one of its own, ending with it", function()
      local d = start(new_daemon())
      local c = connect(d)
      local r = tool(c, "createBackgroundProcess", { command = "sleep 1000" })
      track(r.pid)
      assert.matches("^conn%-", r.sessionId)
      c:close()
      assert.truthy(wait_status(d, r.id, "cancelled"))
      assert.falsy(h.alive(r.pid))
    end)

    it("a client that is SIGKILLed ends its session", function()
      local d = start(new_daemon())
      local loop = core.new()
      local kid = assert(loop:spawn { argv = { h.lua, h.fixture("daemon_client.lua") },
                                      env = h.lua_env { BGPROC_SOCKET = d.socket } })
      local got = h.pump(loop, function() return ((kid:read(0)) or ""):find("\n") end, 10000)
      local line = kid:read(0)
      if not got then kid:kill("KILL") h.finish(loop, kid, 5000) loop:close() end
      assert.truthy(got, "the client printed nothing: " .. tostring(line))
      local rec = cjson.decode(line:match("^[^\n]*"))
      assert.is_string(rec.id, line)
      track(rec.pid)
      -- started; and the session does not end while its client lives
      local held = execd(rec.pid, "sleep") and h.holds_for(200, function() return h.alive(rec.pid) end)
      local before = job(d, rec.id).status
      kid:kill("KILL")
      h.finish(loop, kid, 5000)
      loop:close()
      assert.truthy(held, "the job ended while its client lived")
      assert.equal("running", before)
      assert.truthy(wait_status(d, rec.id, "cancelled"), "the crashed client's job lives on")
      assert.falsy(h.alive(rec.pid))
    end)

    it("a pid-bound session ends when that process exits, not with the connection", function()
      local d = start(new_daemon())
      local loop = core.new()
      local holder = assert(loop:spawn { argv = { "sleep", "1000" } })
      local c = connect(d)
      local s, err = c:call("session/open", { sessionId = "pid-bound", bind = "pid", pid = holder:pid() }, 5000)
      assert(s, err and err.message)
      assert.same({ sessionId = "pid-bound", bind = "pid" }, s)
      local r = tool(c, "createBackgroundProcess", { command = "sleep 1000" }, "pid-bound")
      track(r.pid)
      c:close()
      local ok, still = pcall(untouched_after_closes, d, r.id)
      holder:kill("KILL")
      h.finish(loop, holder, 5000)
      loop:close()
      assert(ok, still)
      assert.truthy(ok and still, "the job ended with the connection")
      assert.truthy(wait_status(d, r.id, "cancelled"), "the job outlived the session's process")
      assert.falsy(h.alive(r.pid))
      assert.matches("session pid%-bound ended %(process %d+ exited%)", log_text(d))
    end)

    it("refuses to bind a session to a process that is gone", function()
      local d = start(new_daemon())
      local loop = core.new()
      local gone = assert(loop:spawn { argv = { "true" } })
      h.finish(loop, gone, 5000)
      local pid = gone:pid()
      loop:close()
      local c = connect(d)
      local s, err = c:call("session/open", { sessionId = "late", bind = "pid", pid = pid }, 5000)
      c:close()
      assert.is_nil(s)
      assert.equal(-32602, err.code)
      assert.matches("'pid': cannot watch process " .. pid, err.message, 1, true)
    end)

    it("the CLI's jobs end when their owner exits (the process that ran the script)", function()
      local d = start(new_daemon())
      local loop = core.new()
      local sh = assert(loop:spawn {
        argv = { "timeout", "60", "sh", h.fixture("daemon_shell.sh"), h.lua, d.bin },
        env = d.env,
      })
      local shell_pid = sh:pid()
      local out = h.finish(loop, sh, 20000)
      loop:close()
      assert.matches("shell%-done", out)
      local rec = cjson.decode(out:match("^[^\n]*"))
      track(rec.pid)
      assert.equal("shell-" .. shell_pid, rec.sessionId)
      assert.truthy(wait_status(d, rec.id, "cancelled"), "the job outlived its shell")
      assert.falsy(h.alive(rec.pid))
    end)

    it("session/close stops the session's jobs and says which", function()
      local d = start(new_daemon())
      local c = connect(d)
      assert(c:call("session/open", { sessionId = "named", bind = "none" }, 5000))
      local a = tool(c, "createBackgroundProcess", { command = "sleep 1000" }, "named")
      local g = tool(c, "createBackgroundProcess", { command = "sleep 1000", global = true }, "named")
      track(a.pid)
      track(g.pid)
      local res, err = c:call("session/close", { sessionId = "named" }, 10000)
      assert(res, err and err.message)
      assert.same({ a.id }, res.killed)
      assert.falsy(h.alive(a.pid))
      assert.equal("running", job(d, g.id).status)
      -- bind = "none": the session outlives its connection
      assert(c:call("session/open", { sessionId = "kept", bind = "none" }, 5000))
      local k = tool(c, "createBackgroundProcess", { command = "sleep 1000" }, "kept")
      track(k.pid)
      c:close()
      local untouched, rec = untouched_after_closes(d, k.id)
      assert.truthy(untouched, "the job ended with its connection: " .. cjson.encode(rec))
    end)
  end)

  describe("protocol", function()
    local d
    before_each(function() d = start(new_daemon()) end)

    local PING = '{"jsonrpc":"2.0","id":%s,"method":"ping"}'
    -- { what, line, expected reply: { code = , id = } | { result = true, id = } | "none" }
    local cases = {
      { "binary garbage", "\0\1\2\255\254\253garbage\27[0m", { code = -32700, id = NULL } },
      { "a truncated object", '{"jsonrpc":"2.0","id":1,"method":"ping"', { code = -32700, id = NULL } },
      { "JSON followed by junk", PING:format(1) .. " junk", { code = -32700, id = NULL } },
      { "nesting 100000 deep", ("["):rep(100000), { code = -32700, id = NULL } },
      { "jsonrpc \"1.0\"", '{"jsonrpc":"1.0","id":1,"method":"ping"}', { code = -32600, id = 1 } },
      { "no jsonrpc member", '{"id":2,"method":"ping"}', { code = -32600, id = 2 } },
      { "a string id", PING:format('"abc"'), { result = true, id = "abc" } },
      { "an integer id", PING:format("42"), { result = true, id = 42 } },
      { "a negative fractional id", PING:format("-1.5"), { result = true, id = -1.5 } },
      { "a null id", PING:format("null"), { result = true, id = NULL } },
      { "an id with escapes", PING:format('"a\\u0000b\\n\\"c"'), { result = true, id = 'a\0b\n"c' } },
      { "an object id", PING:format('{"a":1}'), { code = -32600, id = NULL } },
      -- Found by bench/fuzz.lua: these were answered with id null as if valid
      { "an id of 1e999 (infinite)", PING:format("1e999"), { code = -32600, id = NULL, message = "'id'" } },
      { "an id NaN (not JSON)", PING:format("NaN"), { code = -32700, id = NULL } },
      { "a hex id (not JSON)", PING:format("0x10"), { code = -32700, id = NULL } },
      { "notifications/cancelled as a request", '{"jsonrpc":"2.0","id":13,"method":"notifications/cancelled","params":{"requestId":99}}',
        { result = true, id = 13 } },
      { "an array id", PING:format("[1]"), { code = -32600, id = NULL } },
      { "a boolean id", PING:format("true"), { code = -32600, id = NULL } },
      { "a batch", "[" .. PING:format(1) .. "]", { code = -32600, id = NULL } },
      { "an empty array", "[]", { code = -32600, id = NULL } },
      -- A bare JSON scalar line is an invalid request, not the daemon's death (regression).
      { "a number", "42", { code = -32600, id = NULL } },
      { "a fraction", "1.5", { code = -32600, id = NULL } },
      { "null", "null", { code = -32600, id = NULL } },
      { "true", "true", { code = -32600, id = NULL } },
      { "a string", '"ping"', { code = -32600, id = NULL } },
      { "a method that is not a string", '{"jsonrpc":"2.0","id":3,"method":5}', { code = -32600, id = 3 } },
      { "params as an array", '{"jsonrpc":"2.0","id":4,"method":"ping","params":[1,2]}', { code = -32602, id = 4 } },
      { "params as a string", '{"jsonrpc":"2.0","id":5,"method":"ping","params":"x"}', { code = -32600, id = 5 } },
      { "params as a number", '{"jsonrpc":"2.0","id":5,"method":"tools/list","params":7}', { code = -32600, id = 5 } },
      { "params null", '{"jsonrpc":"2.0","id":6,"method":"ping","params":null}', { result = true, id = 6 } },
      { "an unknown method", '{"jsonrpc":"2.0","id":7,"method":"no/such"}', { code = -32601, id = 7, message = "no/such" } },
      { "tools/call without a name", '{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"arguments":{}}}',
        { code = -32602, id = 8, message = "'name'" } },
      { "tools/call with a numeric name", '{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":5}}',
        { code = -32602, id = 8 } },
      { "tools/call with string arguments",
        '{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"listBackgroundProcesses","arguments":"x"}}',
        { code = -32602, id = 8, message = "'arguments'" } },
      { "tools/call of an unknown tool", '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"rm -rf"}}',
        { code = -32000, id = 9, data = "not_found" } },
      { "tools/call with bad arguments",
        '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"createBackgroundProcess","arguments":{"command":5}}}',
        { code = -32000, id = 9, data = "invalid_argument" } },
      { "session/open with a bad bind", '{"jsonrpc":"2.0","id":10,"method":"session/open","params":{"bind":"forever"}}',
        { code = -32602, id = 10 } },
      { "session/open bind pid without a pid", '{"jsonrpc":"2.0","id":10,"method":"session/open","params":{"bind":"pid"}}',
        { code = -32602, id = 10 } },
      { "session/open with a numeric sessionId", '{"jsonrpc":"2.0","id":10,"method":"session/open","params":{"sessionId":5}}',
        { code = -32602, id = 10 } },
      -- A pid out of range is invalid params, and opens no session (regression).
      { "session/open with a pid past 2^31", '{"jsonrpc":"2.0","id":10,"method":"session/open","params":{"bind":"pid","pid":4294967296}}',
        { code = -32602, id = 10 } },
      { "session/open with a pid of 1e300", '{"jsonrpc":"2.0","id":10,"method":"session/open","params":{"bind":"pid","pid":1e300}}',
        { code = -32602, id = 10 } },
      { "session/open with a fractional pid", '{"jsonrpc":"2.0","id":10,"method":"session/open","params":{"bind":"pid","pid":1.5}}',
        { code = -32602, id = 10 } },
      -- An empty sessionId is invalid params (regression).
      { "tools/call with an empty sessionId",
        '{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"createBackgroundProcess","sessionId":"","arguments":{"command":"true"}}}',
        { code = -32602, id = 10 } },
      { "session/close with a numeric sessionId", '{"jsonrpc":"2.0","id":10,"method":"session/close","params":{"sessionId":5}}',
        { code = -32602, id = 10 } },
      { "a response", '{"jsonrpc":"2.0","id":11,"result":{}}', "none" },
      { "a notification of an unknown method", '{"jsonrpc":"2.0","method":"no/such"}', "none" },
      { "a notification with array params", '{"jsonrpc":"2.0","method":"ping","params":[1]}', "none" },
      { "a cancel of nothing", '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}}', "none" },
      { "blank lines", "   \n\t\n", "none" },
      { "a CRLF line", PING:format(12) .. "\r", { result = true, id = 12 } },
    }
    for _, case in ipairs(cases) do
      it("answers " .. case[1] .. " and keeps serving", function()
        local r = assert(raw(d.socket))
        r:send(case[2] .. "\n")
        local want = case[3]
        if want ~= "none" then
          local m = r:recv()
          if not m and h.wait_until(function() return not h.alive(d.pid) end, 500) then
            error("no reply: the daemon died on this line", 0)
          end
          assert.is_table(m, "no reply")
          assert.equal("2.0", m.jsonrpc)
          assert.equal(want.id, m.id)
          if want.result then
            assert.same({}, m.result)
            assert.is_nil(m.error)
          else
            assert.is_nil(m.result)
            assert.equal(want.code, m.error.code, m.error.message)
            assert.is_string(m.error.message)
            if want.message then assert.truthy(m.error.message:find(want.message, 1, true), m.error.message) end
            if want.data then assert.equal(want.data, m.error.data.code) end
          end
        end
        -- the same connection still works, and nothing else was sent
        r:send(PING:format('"after"') .. "\n")
        local m = r:recv()
        assert.is_table(m, "no reply to the ping after it")
        assert.equal("after", m.id)
        r:close()
        assert(answers_ping(d))
      end)
    end

    it("writes replies as {\"jsonrpc\":\"2.0\",\"id\":ID,\"result\":...} (relays rely on it)", function()
      local r = assert(raw(d.socket))
      r:request(5, "daemon/status", {})
      local line = r:recv_line()
      assert.equal('{"jsonrpc":"2.0","id":5,"result":{', line:sub(1, 34))
      r:request("s-1", "tools/list", {})
      line = r:recv_line()
      assert.equal('{"jsonrpc":"2.0","id":"s-1","result":{', line:sub(1, 38))
      assert.equal(#require("bgproc.tools").list, #cjson.decode(line).result.tools)
      r:close()
    end)

    it("answers a reply with valid JSON when the id is not valid UTF-8", function()
      local r = assert(raw(d.socket))
      r:send(PING:format('"\255\254"') .. "\n")
      local line = r:recv_line()
      r:close()
      assert.truthy(line)
      local m = cjson.decode(line)
      assert.same({}, m.result)
      assert.is_string(m.id)
      assert.truthy(utf8.len(line), "the reply is not UTF-8")
      assert(answers_ping(d))
    end)

    it("answers a 10 MB line of garbage with a parse error", function()
      local r = assert(raw(d.socket))
      r:send(("x"):rep(10 * 1024 * 1024) .. "\n", 20000)
      local m = r:recv(10000)
      assert.is_table(m)
      assert.equal(-32700, m.error.code)
      r:send(PING:format(2) .. "\n")
      assert.equal(2, r:recv().id)
      r:close()
      assert(answers_ping(d))
    end)

    it("serves a valid 10 MB request", function()
      local r = assert(raw(d.socket))
      local pad = ("y"):rep(10 * 1024 * 1024)
      r:send('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' .. pad .. '"}}\n', 20000)
      local m = r:recv(10000)
      assert.is_table(m)
      assert.equal(1, m.id)
      assert.same({}, m.result)
      r:close()
      assert(answers_ping(d))
    end)

    -- The second case was found by bench/fuzz.lua: the last piece of a
    -- long line, read with its newline, was not counted, so a line just
    -- over the limit was served.
    local long_lines = {
      { "without buffering it", ("z"):rep(25 * 1024 * 1024), "\n" },
      { "even one just over that comes with its newline", ("z"):rep(24 * 1024 * 1024 + 1) .. "\n", "" },
    }
    for _, case in ipairs(long_lines) do
      it("refuses a line over 24 MiB " .. case[1] .. ", and serves the next one", function()
        local r = assert(raw(d.socket))
        r:send(case[2], 20000)
        local m = r:recv(10000)
        assert.is_table(m)
        assert.equal(-32600, m.error.code, m.error.message)
        assert.equal(NULL, m.id)
        assert.matches("longer than", m.error.message)
        r:send(case[3] .. PING:format(3) .. "\n")
        m = r:recv()
        assert.is_table(m)
        assert.equal(3, m.id)
        r:close()
        assert(answers_ping(d))
      end)
    end

    it("answers a half line before EOF, then hangs up", function()
      local r = assert(raw(d.socket))
      r:send(PING:format(7))
      r.pipe:shutdown()
      local m = r:recv()
      assert.is_table(m)
      assert.equal(7, m.id)
      assert.same({}, m.result)
      assert.is_nil(r:recv(3000))
      assert.truthy(r.eof)
      r:close()
      -- and a half line of garbage
      r = assert(raw(d.socket))
      r:send('{"jsonrpc":"2.0","id":')
      r.pipe:shutdown()
      m = r:recv()
      assert.is_table(m)
      assert.equal(-32700, m.error.code)
      assert.is_nil(r:recv(3000))
      r:close()
      assert(answers_ping(d))
    end)

    it("frames requests split byte by byte and many in one write", function()
      local r = assert(raw(d.socket))
      local line = PING:format(1) .. "\n"
      for i = 1, #line do
        r:send(line:sub(i, i), 5000) -- one write each, each written before the next
      end
      local m = r:recv()
      assert.is_table(m)
      assert.equal(1, m.id)
      local t = {}
      for i = 1, 1000 do t[i] = PING:format(i + 1) end
      r:send(table.concat(t, "\n") .. "\n")
      for i = 1, 1000 do
        m = r:recv()
        assert.is_table(m)
        assert.equal(i + 1, m.id)
      end
      r:close()
    end)

    it("survives clients that hang up before reading their replies", function()
      -- A client that hangs up before its reply is written must not kill the daemon by SIGPIPE (regression).
      local fd = new_daemon()
      local loop = core.new()
      local run = assert(loop:spawn { argv = { h.lua, fd.bin, "daemon", "run" }, env = fd.env })
      local up = h.wait_until(function()
        loop:wait(0)
        local r = raw(fd.socket)
        if r then r:close() end
        return r ~= nil
      end, 5000, 20)
      local served = 0
      if up then
        for i = 1, 20 do
          local r = raw(fd.socket, { silent = true })
          if not r then break end
          r:send(PING:format(i) .. "\n")
          r:close()
          served = i
        end
        -- every hung-up client handled: its ping read, its reply written
        -- into a closed socket, its close seen (or the daemon is dead)
        h.wait_until(function()
          loop:wait(0)
          if run:info().state ~= "running" then return true end
          local c = client.connect { socket = fd.socket, autostart = false }
          if not c then return true end
          local s = c:call("daemon/status", {}, 5000)
          c:close()
          return s and s.clients == 1
        end, 10000, 20)
      end
      loop:wait(0)
      local state = run:info().state
      local code, sig = run:exit()
      local still = state == "running" and answers_ping(fd)
      -- stop it (if alive) before asserting anything
      fd.run { "daemon", "stop" }
      local out = h.finish(loop, run, 10000)
      loop:close()
      assert.truthy(up, "the daemon did not start: " .. out)
      assert.equal("running", state, ("the daemon exited (code %s, signal %s) after %d clients hung up early: %s")
        :format(tostring(code), tostring(sig), served, out))
      assert.equal(20, served, "the socket stopped answering")
      assert.truthy(still)
    end)

    it("binds a job's session that nobody opened to the connection that named it", function()
      local c = connect(d)
      local j = tool(c, "createBackgroundProcess", { command = "sleep 1000" }, "never-opened")
      track(j.pid)
      c:close()
      assert.truthy(h.wait_until(function() return job(d, j.id).status == "cancelled" end, 5000))
      assert.is_false(h.alive(j.pid))
    end)

    it("cancels a wait on notifications/cancelled, and when its connection drops", function()
      local c = connect(d)
      -- global: the job must outlive this connection
      local j = tool(c, "createBackgroundProcess", { command = "sleep 1000", global = true }, "waits")
      track(j.pid)
      c:close()
      local r = assert(raw(d.socket))
      r:request(11, "tools/call", { name = "waitForBackgroundProcess", arguments = { processId = j.id, timeoutMs = 60000 } })
      -- a connection's lines are served in order: the ping's answer comes
      -- after the wait has begun, and before any answer the wait would give
      r:request(111, "ping", {})
      local first = r:recv(5000)
      assert.is_table(first, "no answer to the ping")
      assert.equal(111, first.id, "the wait answered early")
      local t0 = uv.hrtime()
      r:send('{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":11}}\n')
      local m = r:recv(3000)
      assert.is_table(m, "the cancelled wait never answered")
      assert.equal(11, m.id)
      assert.equal(-32000, m.error.code)
      assert.equal("cancelled", m.error.data.code)
      assert.is_true(since_ms(t0) < 1000)
      -- a wait whose client goes away
      r:request(12, "tools/call", { name = "waitForBackgroundProcess", arguments = { processId = j.id, timeoutMs = 60000 } })
      r:request(112, "ping", {})
      local pong = r:recv(5000)
      assert.is_table(pong, "no answer to the ping")
      assert.equal(112, pong.id, "the wait answered early") -- it has begun
      r:close()
      assert.truthy(h.wait_until(function() return other_clients(d) == 0 end, 5000),
        "the daemon still counts the closed connection")
      assert(answers_ping(d))
      local rec = job(d, j.id)
      assert.equal("running", rec.status)
      assert.is_nil(rec.stopping)
    end)

    it("sends progress notifications for a wait that asks for them", function()
      local c = connect(d)
      local j = tool(c, "createBackgroundProcess", { command = "sleep 0.7", global = true }, "progress")
      track(j.pid)
      c:close()
      local r = assert(raw(d.socket))
      r:request(13, "tools/call", { name = "waitForBackgroundProcess", progress = true,
                                    arguments = { processId = j.id, timeoutMs = 10000 } })
      local notes, final = 0, nil
      repeat
        local m = r:recv(5000)
        if m and m.method then
          assert.equal("notifications/progress", m.method)
          assert.is_nil(m.id)
          assert.equal(13, m.params.requestId)
          assert.equal(10000, m.params.total)
          notes = notes + 1
        else
          final = m
        end
      until final or not m
      r:close()
      assert.is_table(final)
      assert.equal(13, final.id)
      assert.equal("completed", final.result.status)
      assert.is_false(final.result.timedOut)
      assert.is_true(notes >= 1)
    end)
  end)

  describe("its socket", function()
    it("stops the daemon and its jobs when it is removed", function()
      local d = start(new_daemon())
      local c = connect(d)
      local j = tool(c, "createBackgroundProcess", { command = "sleep 1000", global = true })
      track(j.pid)
      c:close()
      os.remove(d.socket)
      assert.truthy(h.wait_until(function() return not h.alive(d.pid) end, 6000), "the daemon kept running")
      assert.is_false(h.alive(j.pid))
    end)
  end)

  describe("jobs", function()
    it("the daemon reaps the orphans of its jobs (it is their subreaper)", function()
      local d = start(new_daemon())
      local c = connect(d)
      local r = tool(c, "createBackgroundProcess", { command = "(sleep 0.4 &); sleep 1000", global = true }, "orphans")
      c:close()
      track(r.pid)
      local orphan = h.wait_until(function()
        for _, ch in ipairs(h.children(d.pid)) do
          if (read_file("/proc/" .. ch.pid .. "/cmdline") or ""):find("sleep\0000.4", 1, true) then return ch.pid end
        end
      end, 3000)
      assert.truthy(orphan, "the orphan was not adopted by the daemon")
      assert.truthy(h.wait_until(function() return h.stat(orphan) == nil end, 3000),
        "the orphan was not reaped: " .. tostring((h.stat(orphan) or {}).state))
      assert.same({}, h.zombies_of(d.pid))
      assert.equal("running", job(d, r.id).status)
    end)
  end)

  describe("slow clients", function()
    it("a client that says nothing, or never reads, does not hold up others", function()
      local d = start(new_daemon())
      local silent = assert(raw(d.socket, { silent = true }))
      local deaf = assert(raw(d.socket, { silent = true }))
      local N = 3000 -- about 22 MB of tools/list replies, under the 64 MiB cap
      local t = {}
      for i = 1, N do t[i] = ('{"jsonrpc":"2.0","id":%d,"method":"tools/list"}'):format(i) end
      -- its first line opens a session: once the daemon counts it, it is
      -- serving the backlog (a line per loop turn) while c asks
      deaf:send('{"jsonrpc":"2.0","id":0,"method":"session/open","params":{"sessionId":"deaf","bind":"connection"}}\n'
        .. table.concat(t, "\n") .. "\n", 10000)
      local c = connect(d)
      assert.truthy(h.wait_until(function()
        local s = c:call("daemon/status", {}, 5000)
        return s and s.sessions >= 1
      end, 5000), "the daemon never began on the deaf client's requests")
      local t0 = uv.hrtime()
      assert.same({}, assert(c:call("ping", {}, 5000)))
      local list = tool(c, "listBackgroundProcesses", {})
      local took = since_ms(t0)
      assert.equal(0, list.count)
      assert.is_true(took < 2000, ("other clients waited %.0f ms"):format(took))
      local s = assert(c:call("daemon/status", {}, 5000))
      assert.equal(3, s.clients)
      c:close()
      -- the deaf client still gets every reply, in order, once it reads
      deaf:start_reading()
      assert.equal(0, deaf:recv(10000).id)
      for i = 1, N do
        local m = deaf:recv(10000)
        assert.is_table(m, "reply " .. i .. " missing")
        assert.equal(i, m.id)
      end
      deaf:close()
      silent:close()
      assert(answers_ping(d))
    end)

    it("drops a client whose unread replies pass 64 MiB, and keeps serving", function()
      local d = start(new_daemon())
      local deaf = assert(raw(d.socket, { silent = true }))
      local t = { '{"jsonrpc":"2.0","id":0,"method":"session/open","params":{"sessionId":"deaf","bind":"connection"}}' }
      for i = 1, 11000 do t[#t + 1] = ('{"jsonrpc":"2.0","id":%d,"method":"tools/list"}'):format(i) end
      deaf:send(table.concat(t, "\n") .. "\n")
      local c = connect(d)
      local dropped = h.wait_until(function()
        local s = c:call("daemon/status", {}, 5000)
        return s and s.clients == 1
      end, 30000, 100)
      c:close()
      deaf:close()
      assert.truthy(dropped, "the deaf client was never dropped")
      assert.matches("session deaf ended %(connection closed %(peer is not reading its replies%)%)", log_text(d))
      assert.truthy(h.alive(d.pid))
      assert(answers_ping(d))
    end)
  end)

  describe("health", function()
    it("logs its start and stop, and reports itself", function()
      local d = start(new_daemon())
      local log = log_text(d)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ info started, pid " .. d.pid
        .. ", socket " .. d.socket:gsub("%p", "%%%0") .. "\n", log)
      local s = status(d)
      assert.equal(d.log, s.log)
      assert.equal(d.socket, s.socket)
      assert.equal(0, s.jobs)
      assert.is_number(s.uptimeMs)
      local c = connect(d)
      local hello = assert(c:call("hello", { client = "daemon_spec" }, 5000))
      assert.equal(d.pid, hello.pid)
      assert.equal(d.socket, hello.socket)
      assert.equal(require("bgproc").version, hello.version)
      local tl = assert(c:call("tools/list", {}, 5000))
      assert.equal(#require("bgproc.tools").list, #tl.tools)
      c:close()
      local out, code = d.run { "daemon", "stop" }
      assert.equal(0, code, out)
      assert.truthy(h.wait_until(function() return not h.alive(d.pid) end, 5000))
      log = log_text(d)
      assert.matches("info stopping: asked by a client\n", log)
      assert.matches("info stopped\n$", log)
      assert.equal(1, count(log, " started, pid "))
    end)

    it("reports the log it writes when it was given one (daemon.run's log), and none with log = false", function()
      local d = new_daemon()
      for _, want in ipairs { d.dir .. "/elsewhere/custom.log", false } do
        local code = ("os.exit(require('bgproc.daemon').run { socket = %q, log = %s })")
          :format(d.socket, want and ("%q"):format(want) or "false")
        local dm = h.spawn_daemon(d, { h.lua, "-e", code })
        local s = assert(dm.client:call("daemon/status", {}, 5000))
        dm.client:call("daemon/stop", {}, 5000)
        dm.client:close()
        assert.truthy(h.pump(dm.loop, function() return not dm.job:alive() end, 10000))
        dm.loop:close()
        assert.equal(want or nil, s.log)
        if want then assert.matches(" info started, pid ", read_file(want) or "") end
      end
      assert.is_nil(read_file(d.log), "nothing went to the default log")
    end)

    it("moves a log over 10 MiB to daemon.log.1 when it starts", function()
      local d = new_daemon()
      assert(os.execute("mkdir -p " .. d.dir .. "/state/bgproc"))
      local f = assert(io.open(d.log, "w"))
      f:write(("old\n"):rep(11 * 1024 * 1024 // 4))
      f:close()
      start(d)
      local st = uv.fs_stat(d.log .. ".1")
      assert.truthy(st)
      assert.equal(11 * 1024 * 1024, st.size)
      local log = log_text(d)
      assert.is_true(#log < 4096)
      assert.matches("^[^\n]* info started, pid " .. d.pid, log)
    end)

    it("a daemon that loses the race for the lock leaves the running one's log alone", function()
      -- The loser of the lock race must not rotate the running daemon's log (regression).
      local d = start(new_daemon())
      local f = assert(io.open(d.log, "a"))
      f:write(("filler\n"):rep(11 * 1024 * 1024 // 7))
      f:close()
      local out, code = d.run { "daemon", "run", "--quiet-if-running" }
      assert.equal(0, code, out)
      -- make the running daemon log a line
      local c = connect(d)
      assert(c:call("session/open", { sessionId = "after-race", bind = "connection" }, 5000))
      c:close()
      local function logged(path)
        local text = read_file(path) or ""
        return text:find("session after-race ended", 1, true) ~= nil
      end
      h.wait_until(function() return logged(d.log) or logged(d.log .. ".1") end, 3000, 100)
      assert.is_false(logged(d.log .. ".1"), "the running daemon now writes to daemon.log.1")
      assert.is_true(logged(d.log), "the line is not in daemon.log")
    end)
  end)
end)
