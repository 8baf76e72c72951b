-- Security, end to end: who may reach the daemon (directory mode, socket
-- mode, the peer-credential check), argv jobs never seen by a shell, jobs
-- that get nothing of bgproc's own (fds, variables) through any
-- interface, and signals that never reach a process that took a finished
-- job's pid.
local h = require "helpers"
local uv = require "luv"
local core = require "bgproc.core"
local sys = require "bgproc.sys"
local client = require "bgproc.client"

local ROOT = sys.getuid() == 0

-- A job's report from spec/fixtures/show_self.lua: { args, fds, env }.
local function parse_self(out)
  local r = { args = {}, fds = {}, env = {} }
  for line in out:gmatch("[^\n]+") do
    local kind, v = line:match("^(%a+) (.*)$")
    if kind == "arg" then r.args[#r.args + 1] = load("return " .. v)()
    elseif kind == "fd" then r.fds[#r.fds + 1] = tonumber(v)
    elseif kind == "env" then r.env[v] = true end
  end
  assert(out:find("\nend\n"), "the job did not finish its report: " .. out)
  return r
end

-- Arguments no shell may see: each must arrive verbatim.
local NASTY = { "a;b", "$(touch made-by-subst)", "`touch made-by-backtick`", "*", "> made-by-redirect",
                "line\nbreak", "'quoted'", "$HOME", "&& touch made-by-and", "|" }

local function show_argv(extra)
  local argv = { h.lua, h.fixture("show_self.lua") }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  return argv
end

local function names(dir)
  local out = {}
  for name in uv.fs_scandir_next, assert(uv.fs_scandir(dir)) do out[#out + 1] = name end
  return out
end

local function exe_of(pid) return uv.fs_readlink("/proc/" .. pid .. "/exe") end

describe("security", function()
  local d, tmp
  before_each(function()
    tmp = h.tmpdir()
    d = h.private_daemon()
    local out, code = d.run { "daemon", "start" }
    assert(code == 0, out)
  end)
  after_each(function()
    d.stop()
    h.cleanup()
    os.execute("rm -rf " .. tmp)
  end)

  local function connect()
    return assert(client.connect { socket = d.socket, autostart = false })
  end

  local function call(c, name, args)
    local r, err = c:call("tools/call", { name = name, arguments = args }, 20000)
    assert(r, name .. ": " .. tostring(err and err.message))
    return r
  end

  -- Run a job through the daemon to the end; its output.
  local function daemon_job(args)
    local c = connect()
    local r = call(c, "createBackgroundProcess", args)
    call(c, "waitForBackgroundProcess", { processId = r.id, timeoutMs = 15000 })
    local g = call(c, "getBackgroundProcess", { processId = r.id, lines = 1000, stripAnsi = false })
    c:close()
    return g.output, r
  end

  describe("the socket", function()
    it("lives in a 0700 directory of the user's, is 0600, and refuses other users at both layers", function()
      local dir = d.dir .. "/run"
      local dst, sst = uv.fs_stat(dir), uv.fs_stat(d.socket)
      assert.equal("700", ("%o"):format(dst.mode & 511))
      assert.equal(sys.getuid(), dst.uid)
      assert.equal("socket", sst.type)
      assert.equal("600", ("%o"):format(sst.mode & 511))
      assert.equal(sys.getuid(), sst.uid)
      if not ROOT then
        pending("needs root, to connect as user nobody (setpriv)")
        return
      end
      local function as_nobody()
        local loop = core.new()
        local job = assert(loop:spawn {
          argv = { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", h.lua, h.fixture("daemon_peer.lua") },
          env = h.lua_env { BGPROC_SOCKET = d.socket },
        })
        local out = h.finish(loop, job, 10000)
        loop:close()
        return out
      end
      -- layer 1: the directory. The path up to it is opened so that only
      -- its own mode stands in the way.
      assert(uv.fs_chmod(d.dir, tonumber("755", 8)))
      local out = as_nobody()
      assert.matches("^uid 65534\nCONNECT EACCES", out)
      -- layer 2: with the directory and the socket opened up, the daemon's
      -- own check refuses the peer by its uid, says why, and serves on
      assert(uv.fs_chmod(dir, tonumber("755", 8)))
      assert(uv.fs_chmod(d.socket, tonumber("666", 8)))
      out = as_nobody()
      local reply = require("cjson").decode((assert(out:match("^uid 65534\n([^\n]+)\n"), out)))
      assert.equal(-32001, reply.error.code)
      assert.matches("^permission denied", reply.error.message)
      assert.matches("\nEOF\n$", out)
      local c = connect()
      assert.same({}, (c:call("ping", {}, 5000)))
      c:close()
    end)
  end)

  describe("the socket's directory", function()
    local function start_on(socket)
      local out, code = d.run({ "daemon", "run" }, { BGPROC_SOCKET = socket }, 10000)
      return out, code
    end

    it("is refused when another user owns it", function()
      if not ROOT then
        pending("needs root, to give a directory to user nobody")
        return
      end
      local dir = tmp .. "/theirs"
      assert(uv.fs_mkdir(dir, tonumber("777", 8)))
      assert(uv.fs_chown(dir, 65534, 65534))
      local out, code = start_on(dir .. "/daemon.sock")
      assert.equal(1, code)
      assert.matches("belongs to uid 65534, not to uid 0: refusing to put the socket there", out)
      assert.is_nil(uv.fs_stat(dir .. "/daemon.sock"))
      assert.equal(65534, uv.fs_stat(dir).uid)
    end)

    it("is left as it is when it is a shared sticky one (like /tmp), the socket 0600", function()
      local dir = tmp .. "/shared"
      assert(uv.fs_mkdir(dir, tonumber("1777", 8)))
      assert(uv.fs_chmod(dir, tonumber("1777", 8)))
      local socket = dir .. "/daemon.sock"
      local loop = core.new()
      local env = {}
      for k, v in pairs(d.env) do env[k] = v end
      env.BGPROC_SOCKET = socket
      local daemon = assert(loop:spawn { argv = { h.lua, d.bin, "daemon", "run" }, env = env })
      assert(h.wait_until(function() return uv.fs_stat(socket) ~= nil end, 10000), "no socket")
      local mode = uv.fs_stat(dir).mode & tonumber("7777", 8)
      local smode = uv.fs_stat(socket).mode & 511
      daemon:kill("TERM")
      h.finish(loop, daemon, 10000)
      loop:close()
      assert.equal("1777", ("%o"):format(mode))
      assert.equal("600", ("%o"):format(smode))
    end)
  end)

  describe("argv jobs", function()
    it("get shell metacharacters verbatim, and no shell runs: via the daemon, MCP's path and the engine", function()
      -- the daemon (as the CLI and `bgproc mcp` call it: localized to our cwd)
      local c = connect()
      local args = client.localize_create { argv = show_argv(NASTY), cwd = tmp, stdin = "pipe" }
      local r = call(c, "createBackgroundProcess", args)
      assert.is_nil(r.command)
      assert(h.wait_until(function() return h.alive(r.pid) end, 5000))
      -- the leader is the program itself: no shell in between, and it is
      -- the daemon's child
      assert.equal(uv.fs_realpath(uv.exepath()), uv.fs_realpath(exe_of(r.pid)))
      assert.equal(#h.group(r.pid), 1)
      call(c, "sendBackgroundProcessInput", { processId = r.id, eof = true })
      call(c, "waitForBackgroundProcess", { processId = r.id, timeoutMs = 15000 })
      local g = call(c, "getBackgroundProcess", { processId = r.id, lines = 1000, stripAnsi = false })
      c:close()
      local got = parse_self(g.output)
      assert.same(NASTY, got.args)
      -- the engine, embedded
      local m = h.manager()
      m:session_open("s")
      local e = h.ok(m, "createBackgroundProcess", { argv = show_argv(NASTY), cwd = tmp }, { sessionId = "s" })
      h.ok(m, "waitForBackgroundProcess", { processId = e.id, timeoutMs = 15000 })
      assert.same(NASTY, parse_self(h.ok(m, "getBackgroundProcess", { processId = e.id, lines = 1000 }).output).args)
      -- the CLI: several words are an argv
      local cli = { "start", "--cwd", tmp, "--", h.lua, h.fixture("show_self.lua") }
      for _, a in ipairs(NASTY) do cli[#cli + 1] = a end
      local out, code = d.run(cli)
      assert.equal(0, code, out)
      -- nothing a shell would have made
      assert(h.wait_until(function() return #names(tmp) == 0 end, 1000))
      assert.same({}, names(tmp))
    end)
  end)

  describe("job environments", function()
    it("hold only fds 0-2 and no variable of bgproc's own: daemon, CLI and embedded engine", function()
      local mark = "mark" .. math.random(1 << 30)
      -- through the daemon as a client asks: the caller's env plus what it asked for
      local out = daemon_job(client.localize_create { argv = show_argv(), env = { ASKED_FOR = mark } })
      local seen = parse_self(out)
      assert.same({ 0, 1, 2 }, seen.fds)
      assert.is_true(seen.env.ASKED_FOR)
      for k in pairs(seen.env) do
        assert(k == "ASKED_FOR" or os.getenv(k), "the job got a variable its caller does not have: " .. k)
        assert.not_equal("BGPROC_SESSION", k)
      end
      -- straight from the daemon's environment (inheritEnv, no localizing)
      local daemon_env = {}
      local pid = tonumber(d.run { "daemon", "status" }:match("pid (%d+)"))
      local f = assert(io.open("/proc/" .. pid .. "/environ", "rb"))
      for k in f:read("a"):gmatch("([^%z=]+)=[^%z]*") do daemon_env[k] = true end
      f:close()
      seen = parse_self(daemon_job { argv = show_argv() })
      assert.same({ 0, 1, 2 }, seen.fds)
      for k in pairs(seen.env) do
        assert(daemon_env[k], "the job got a variable the daemon was not started with: " .. k)
        assert.is_nil(k:match("^BGPROC_SESSION"), k)
      end
      -- the CLI, with BGPROC_SESSION set: the job must not join that session
      local o, code = d.run({ "--json", "start", "--", h.lua, h.fixture("show_self.lua") }, { BGPROC_SESSION = mark })
      assert.equal(0, code, o)
      local id = o:match('"id":"([^"]+)"')
      local c = connect()
      call(c, "waitForBackgroundProcess", { processId = id, timeoutMs = 15000 })
      seen = parse_self(call(c, "getBackgroundProcess", { processId = id, lines = 1000 }).output)
      c:close()
      assert.same({ 0, 1, 2 }, seen.fds)
      assert.is_nil(seen.env.BGPROC_SESSION)
      -- embedded in this busted process (which has many fds open)
      local m = h.manager()
      m:session_open("s")
      local e = h.ok(m, "createBackgroundProcess", { argv = show_argv(), env = { ASKED_FOR = mark } }, { sessionId = "s" })
      h.ok(m, "waitForBackgroundProcess", { processId = e.id, timeoutMs = 15000 })
      seen = parse_self(h.ok(m, "getBackgroundProcess", { processId = e.id, lines = 1000 }).output)
      assert.is_true(h.open_fds() > 3)
      assert.same({ 0, 1, 2 }, seen.fds)
      assert.is_true(seen.env.ASKED_FOR)
      for k in pairs(seen.env) do assert(k == "ASKED_FOR" or os.getenv(k), "unexpected variable " .. k) end
    end)
  end)

  describe("signals", function()
    it("never reach a foreign process that took a finished job's pid", function()
      -- the kernel gives the next process pid n + 1 (root only)
      local function last_pid(n)
        local f = io.open("/proc/sys/kernel/ns_last_pid", "w")
        return f and f:write(tostring(n)) and f:close()
      end
      if not last_pid(tonumber(io.open("/proc/sys/kernel/ns_last_pid"):read("l"))) then
        pending("needs root, to choose the next pid (ns_last_pid)")
        return
      end
      local m = h.manager()
      m:session_open("s")
      local job = h.ok(m, "createBackgroundProcess", { argv = { "true" } }, { sessionId = "s" })
      h.ok(m, "waitForBackgroundProcess", { processId = job.id, timeoutMs = 10000 })
      local P = job.pid
      -- a process of someone else's, started with the dead leader's pid
      -- (other processes of this busy machine may take it first: retry)
      local foreign, fpid
      -- SIGKILL, reaped (luv reaps only handles still open), closed
      local function stop(p)
        p.handle:kill("sigkill")
        client.pump(function() return p.exited end, 5000)
        p.handle:close()
        uv.run("nowait")
      end
      for _ = 1, 20 do
        last_pid(P - 1)
        local p = {}
        p.handle, p.pid = uv.spawn("sleep", { args = { "30" } }, function() p.exited = true end)
        if p.pid == P then
          foreign, fpid = p, p.pid
          break
        end
        stop(p)
      end
      if not foreign then
        pending("another process kept taking pid " .. P)
        return
      end
      local k = m:call("killProcesses", { processId = job.id, signal = "KILL" })
      local all = m:call("killProcesses", { all = true, signal = "KILL" })
      m:step(200)
      local alive = h.alive(fpid)
      stop(foreign) -- before any assertion: it must not outlive the test
      assert.same({ job.id }, k.alreadyFinished)
      assert.same({}, all.killed)
      assert.is_true(alive, "the foreign process holding the old pid was signalled")
    end)

    it("are sent through pidfds to what is left of a group whose leader is gone", function()
      local loop = core.new()
      local strace = loop:spawn { argv = { "strace", "-f", "-qq", "-e", "trace=kill,pidfd_send_signal", h.lua, "-e", [[
        local core = require "bgproc.core"
        local loop = core.new()
        local job = assert(loop:spawn { command = "sleep 30 >/dev/null 2>&1 & echo x" })
        while not (job:info().eof and not job:alive()) do loop:wait(50) end
        io.stderr:write("KILLING\n")
        job:kill("KILL")
        loop:close()
      ]] }, env = h.lua_env() }
      if not strace then
        loop:close()
        pending("strace is not installed")
        return
      end
      local out = h.finish(loop, strace, 20000)
      loop:close()
      local after = out:match("KILLING\n(.*)$")
      assert(after, out)
      assert.matches("pidfd_send_signal%(%d+, SIGKILL", after)
      assert.is_nil(after:match("kill%(%d+, SIGKILL"), "a pid was signalled by number: " .. after)
    end)
  end)
end)
