-- Reliability: the daemon out of fds, out of processes, with a full log
-- disk, and with clients that stall or vanish. Each test starts a real
-- daemon (`bgproc daemon run`, a child of this spec, under the limits it
-- needs) on a private socket and talks to it over the socket like any
-- client; its jobs carry a token in their environment, so a leftover one is
-- found without counting other people's processes.
local h = require "helpers"
local uv = require "luv"
local core = require "bgproc.core"
local client = require "bgproc.client"
local json = require "bgproc.lib.json"
local rawconn = require "rawconn"

local steps = dofile(h.fixture("exhaust_client.lua"))
local NOBODY = 65534

-- ---- plumbing -------------------------------------------------------------------------

local read_file = h.read_file

local function since_ms(t0) return (uv.hrtime() - t0) / 1e6 end

local function cpu_ticks(pid) return assert(h.stat(pid)).cpu end

local marked = h.marked -- processes carrying BGPROC_SPEC_MARK=token

-- A raw connection, connected (or the test fails).
local function raw(socket, opts)
  return assert(rawconn.connect(socket, opts))
end

local function ping_line(id)
  return ('{"jsonrpc":"2.0","id":"%s","method":"ping"}\n'):format(id)
end

-- ---- daemons ----------------------------------------------------------------------------

local daemons = {}

-- A daemon of our own, started as `sh -c "<limits> && exec lua5.4 bgproc
-- daemon run"` (as nobody: setpriv, then bash, whose ulimit has -u). opts: limits (shell, e.g. "ulimit -n 64"), config (Lua
-- text), nobody (run it as uid 65534, from a copy of the modules that
-- nobody can read: the checkout may be closed to it). Returns d with pid,
-- socket, env, dir, log, token, and tree (nobody's copy).
local function start_daemon(opts)
  opts = opts or {}
  local d = h.private_daemon(opts.config)
  d.token = tostring(math.random(1, 1e9)) .. "-" .. tostring(uv.hrtime())
  d.log = d.dir .. "/state/bgproc/daemon.log"
  d.loop = core.new()
  daemons[#daemons + 1] = d
  local env = {}
  for k, v in pairs(d.env) do env[k] = v end
  env.BGPROC_BIN = d.bin
  local run = (opts.limits and (opts.limits .. " && ") or "") .. 'exec lua5.4 "$BGPROC_BIN" daemon run'
  local argv = { "sh", "-c", run }
  if opts.nobody then
    -- RLIMIT_NPROC does not bind root. nobody needs its own copy of the
    -- modules and a directory of its own for the socket and the state.
    d.tree = d.dir .. "/tree"
    assert(os.execute(("mkdir -p %s/lua %s/bin && cp -r %s/lua/bgproc %s/lua/ && cp %s/bin/bgproc %s/bin/ "
      .. "&& cp %s %s/ && chmod -R a+rX %s && chown %d %s")
      :format(d.tree, d.tree, h.root, d.tree, h.root, d.tree, h.fixture("exhaust_client.lua"), d.tree,
        d.dir, NOBODY, d.dir)))
    d.bin = d.tree .. "/bin/bgproc"
    env.BGPROC_BIN = d.bin
    env.LUA_PATH_5_4 = d.tree .. "/lua/?.lua;" .. d.tree .. "/lua/?/init.lua;;"
    env.LUA_CPATH_5_4 = d.tree .. "/lua/?.so;;"
    d.env = env
    argv = { "setpriv", "--reuid=" .. NOBODY, "--regid=" .. NOBODY, "--clear-groups", "bash", "-c", run }
  end
  d.job = assert(d.loop:spawn { argv = argv, env = env, cwd = d.dir })
  -- ready once its socket answers (as root we can ask; as nobody, wait for the log)
  local ready = h.wait_until(function()
    if opts.nobody then return (read_file(d.log) or ""):find("info started, pid") end
    local c = client.connect { socket = d.socket, autostart = false, timeout_ms = 100 }
    if not c then return false end
    local st = c:call("daemon/status", {}, 5000)
    c:close()
    d.pid = st and st.pid
    return d.pid
  end, 10000, 50)
  d.loop:wait(0)
  assert(ready, "the daemon did not start: " .. tostring(d.job:read(0)))
  d.pid = d.pid or tonumber((read_file(d.log) or ""):match("started, pid (%d+)"))
  assert.equal(d.job:pid(), d.pid) -- exec'ed, so the job is the daemon
  return d
end

-- SIGTERM ends the daemon and every job it has (docs/protocol.md).
local function stop_daemon(d)
  if d.job:alive() then d.job:kill("TERM") end
  local gone = h.pump(d.loop, function() return not d.job:alive() end, 15000)
  local log = read_file(d.log)
  d.loop:close()
  local left = marked(d.token)
  os.execute("rm -rf " .. d.dir)
  assert(gone, "the daemon did not stop on SIGTERM; its log:\n" .. tostring(log))
  assert.same({}, left, "jobs outlived their daemon")
end

local function connect(d)
  return assert(client.connect { socket = d.socket, autostart = false })
end

-- A tool call that must succeed.
local function tool(c, name, args)
  local r, err = steps.tool(c, name, args)
  assert(r, "tools/call " .. name .. " failed: " .. (err and tostring(err.message) or "?"))
  return r
end

-- ---- the specs --------------------------------------------------------------------------

describe("daemon under exhaustion", function()
  -- a daemon dying under a test must fail it, not kill busted by SIGPIPE
  lazy_setup(function() require("bgproc.rpc").ignore_sigpipe() end)
  local function stop_daemons()
    for i = #daemons, 1, -1 do
      local d = table.remove(daemons, i)
      stop_daemon(d)
    end
    uv.run("nowait")
  end
  after_each(stop_daemons)

  it("out of fds: refuses jobs with EMFILE, keeps serving, makes new clients wait, and recovers", function()
    local d = start_daemon { limits = "ulimit -n 64" }
    local c = connect(d)
    -- the first job starts the guardian, which has fds of its own
    local first = tool(c, "createBackgroundProcess", { argv = { "true" } })
    tool(c, "waitForBackgroundProcess", { processId = first.id, timeoutMs = 10000 })
    local fds_idle = h.open_fds(d.pid)
    local ids, err = steps.fill(c, 100, d.token)
    assert.is_true(#ids >= 5, "only " .. #ids .. " jobs before the refusal")
    assert.is_table(err, "no refusal under ulimit -n 64")
    assert.equal("spawn_failed", err.data.code)
    assert.matches("^EMFILE: spawn 'sleep' %(%a+%): Too many open files$", err.message)
    -- a refused job is on record as failed, saying why
    local failed = tool(c, "listBackgroundProcesses", { status = "failed" })
    assert.equal(1, failed.count)
    assert.matches("Too many open files", failed.processes[1].error)
    -- and the CLI says so too
    local out, code = d.run({ "start", "--", "sleep", "100" }, { BGPROC_SESSION = "cli" })
    assert.equal(1, code, out)
    assert.matches("^bgproc: .*EMFILE: .*Too many open files\n$", out)
    -- still serving its clients
    assert.equal(#ids, tool(c, "listBackgroundProcesses", { status = "running" }).count)
    assert.equal(#ids, assert(c:call("daemon/status", {}, 5000)).jobsRunning)

    -- new clients take its last fds, until it has none
    local idle = {}
    while h.open_fds(d.pid) < 64 do
      assert.is_true(#idle < 20, "the daemon never reached 64 fds")
      local r = raw(d.socket)
      r:send(ping_line("idle" .. #idle))
      assert.truthy(r:recv_line(5000), "a client was not answered while the daemon had fds")
      idle[#idle + 1] = r
    end
    -- the next one cannot be accepted: it waits, and the daemon does not spin
    local waiting = raw(d.socket)
    waiting:send(ping_line("waiting"))
    local ticks = cpu_ticks(d.pid)
    local t0 = uv.hrtime()
    assert.is_nil(waiting:recv_line(1000), "answered without an fd?")
    local busy = (cpu_ticks(d.pid) - ticks) / 100 / (since_ms(t0) / 1000)
    assert.is_true(busy < 0.25, ("the daemon used %.0f%% CPU while out of fds"):format(busy * 100))
    assert.is_false(waiting.eof, "a client was hung up on while the daemon was out of fds: " .. tostring(waiting.eof))
    assert.matches("warn EMFILE: accept: Too many open files; new clients wait until there is room", read_file(d.log))
    -- connected clients are still served, and what needs an fd says why it fails
    assert.equal(#ids, tool(c, "listBackgroundProcesses", { status = "running" }).count)
    local me = h.self_pid()
    local none, serr = c:call("session/open", { sessionId = "watch", bind = "pid", pid = me }, 5000)
    assert.is_nil(none)
    assert.equal(-32000, serr.code)
    assert.equal("limit", serr.data.code)
    assert.equal("'pid': cannot watch process " .. me .. ": EMFILE: pidfd_open " .. me .. ": Too many open files", serr.message)

    -- room again: the waiting client is served and jobs start
    assert.equal(3, steps.kill(c, ids, 3))
    local line = waiting:recv_line(5000)
    assert.truthy(line, "the waiting client was never served")
    assert.equal("waiting", json.decode(line).id)
    assert.matches("info accepting clients again", read_file(d.log))
    local again = tool(c, "createBackgroundProcess", { argv = { "sleep", "100" }, env = { BGPROC_SPEC_MARK = d.token } })
    assert.equal("running", again.status)

    -- nothing leaked: with the clients gone and the jobs ended, the fds are back
    waiting:close()
    for _, r in ipairs(idle) do r:close() end
    tool(c, "killProcesses", { all = true, graceMs = 500 })
    assert.truthy(h.wait_until(function() return h.open_fds(d.pid) == fds_idle end, 5000, 20),
      ("the daemon has %d fds, %d before"):format(h.open_fds(d.pid), fds_idle))
    c:close()
  end)

  it("out of processes: refuses jobs with EAGAIN naming the limit, keeps serving, and recovers", function()
    if not os.execute("command -v setpriv >/dev/null") then
      pending("setpriv (util-linux) is not installed")
      return
    end
    -- nobody's process limit: what nobody runs now, plus room for a few jobs
    local d = start_daemon {
      nobody = true,
      limits = "ulimit -u $(( $(ps -u " .. NOBODY .. " --no-headers | wc -l) + 10 ))",
    }
    -- the client must be the daemon's user too (SO_PEERCRED check)
    local kid = assert(d.loop:spawn {
      command = ("setpriv --reuid=%d --regid=%d --clear-groups lua5.4 %s/exhaust_client.lua 100")
        :format(NOBODY, NOBODY, d.tree),
      env = { LUA_PATH_5_4 = d.env.LUA_PATH_5_4, LUA_CPATH_5_4 = d.env.LUA_CPATH_5_4,
              BGPROC_SOCKET = d.socket, BGPROC_SPEC_MARK = d.token },
    })
    local out = h.finish(d.loop, kid, 30000)
    local r = {}
    for k, v in out:gmatch("([%w_]+)=([^\n]*)") do r[k] = v end
    assert.equal("done", out:match("done"), out)
    assert.is_true(tonumber(r.started) >= 3, out)
    assert.equal("spawn_failed", r.code, out)
    assert.matches("^EAGAIN: spawn 'sleep' %(clone%): Resource temporarily unavailable "
      .. "%(too many processes: the user's process limit, ulimit %-u, or a pids limit%)$", r.errmsg)
    assert.equal(r.started, r.listed) -- listing answered at the limit
    assert.equal("3", r.killed)
    assert.equal("true", r.again, out)
    assert.truthy(h.alive(d.pid))
    -- the client's session ended with it: its jobs are stopped
    assert.truthy(h.wait_until(function() return #marked(d.token) == 0 end, 10000, 50),
      "the client's jobs outlived its session")
  end)

  describe("with a full log disk", function()
    local mnt
    after_each(function()
      stop_daemons() -- first: its logfile plugin may hold a file there
      if not mnt then return end
      local path = mnt
      mnt = nil
      if read_file("/proc/mounts"):find(" " .. path .. " ", 1, true) then
        local ok, out = h.sh("umount " .. path)
        assert(ok, "cannot unmount " .. path .. ": " .. out)
      end
      os.execute("rmdir " .. path)
    end)

    it("the logfile plugin reports it, and the job goes on with its output captured", function()
      mnt = h.tmpdir()
      local ok, why = h.sh("mount -t tmpfs -o size=256k tmpfs " .. mnt)
      if not ok then
        pending("cannot mount a small tmpfs here: " .. why)
        return
      end
      local d = start_daemon { config = ("return { plugins = { 'logfile' }, logfile = { dir = %q } }"):format(mnt) }
      local c = connect(d)
      -- 600 kB of lines, more than the disk holds, then a last line
      local job = tool(c, "createBackgroundProcess", {
        command = "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 600000; echo; echo the-end",
        env = { BGPROC_SPEC_MARK = d.token },
      })
      local w = tool(c, "waitForBackgroundProcess", { processId = job.id, timeoutMs = 20000 })
      assert.is_false(w.timedOut)
      local rec = tool(c, "getBackgroundProcess", { processId = job.id, lines = 2 })
      assert.equal("completed", rec.status)
      assert.equal(0, rec.exitCode)
      assert.equal(600000 + 1 + 8, rec.outputBytes) -- all of it in the ring
      assert.equal("the-end", rec.output:match("([^\n]*)\n?$"))
      assert.matches("^error: .*No space left on device %(logging stopped%)$", rec.notes.logfile)
      assert.matches("logfile: .*No space left on device; no more logging for " .. job.id:gsub("%p", "%%%0"), read_file(d.log))
      local st = assert(uv.fs_stat(mnt .. "/" .. job.id .. ".log"))
      assert.is_true(st.size > 0 and st.size <= 256 * 1024)
      -- the daemon goes on: another job runs and is reported too
      local next_job = tool(c, "createBackgroundProcess", { command = "echo second", env = { BGPROC_SPEC_MARK = d.token } })
      tool(c, "waitForBackgroundProcess", { processId = next_job.id, timeoutMs = 10000 })
      local rec2 = tool(c, "getBackgroundProcess", { processId = next_job.id })
      assert.equal("completed", rec2.status)
      assert.equal("second\n", rec2.output)
      assert.matches("No space left on device", rec2.notes.logfile)
      c:close()
    end)
  end)

  describe("clients", function()
    it("one that stops reading neither stalls others nor grows the daemon past its cap", function()
      local d = start_daemon()
      local c = connect(d)
      -- 1 MB of output to ask for, again and again
      local job = tool(c, "createBackgroundProcess", {
        command = "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 1000000; sleep 100",
        env = { BGPROC_SPEC_MARK = d.token },
      })
      assert.truthy(h.wait_until(function()
        return tool(c, "getBackgroundProcess", { processId = job.id, lines = 0 }).outputBytes == 1000000
      end, 10000, 20))
      local rss0 = h.vm_kib("VmRSS", d.pid)
      -- 400 requests for 1 MB each, never read: 400 MB if nothing capped it
      local stalled = raw(d.socket, { silent = true })
      assert.truthy(h.wait_until(function() return assert(c:call("daemon/status", {}, 5000)).clients == 2 end, 5000, 10))
      local t = {}
      for i = 1, 400 do
        t[i] = json.encode { jsonrpc = "2.0", id = i, method = "tools/call", params = {
          name = "getBackgroundProcess", arguments = { processId = job.id, lines = 100000, maxBytes = 1000000 } } }
      end
      stalled:send(table.concat(t, "\n") .. "\n")
      -- meanwhile another client's calls stay fast, until the stalled one is dropped
      local slowest, dropped = 0, false
      local deadline = uv.hrtime() + 30e9
      repeat
        local t0 = uv.hrtime()
        local s = assert(c:call("daemon/status", {}, 5000))
        slowest = math.max(slowest, since_ms(t0))
        dropped = s.clients == 1
      until dropped or uv.hrtime() > deadline
      assert.truthy(dropped, "the stalled client was never dropped")
      assert.is_true(slowest < 1000, ("another client waited %.0f ms"):format(slowest))
      local grew = (h.vm_kib("VmHWM", d.pid) - rss0) / 1024
      -- the 64 MiB queued, and the garbage of making it that the collector has not freed yet
      assert.is_true(grew < 2.5 * 64, ("the daemon grew by %.0f MiB for one stalled client"):format(grew))
      assert.matches("info client %d+ gone: peer is not reading its replies", read_file(d.log))
      stalled:close()
      assert.same({}, assert(c:call("ping", {}, 5000)))
      c:close()
    end)

    it("one that sends half a line and vanishes is dropped, its fd closed", function()
      local d = start_daemon()
      local c = connect(d)
      local function clients_are(n)
        return h.wait_until(function() return assert(c:call("daemon/status", {}, 5000)).clients == n end, 5000, 10)
      end
      -- counted once our own connection is accepted (connect returns while
      -- it may still wait in the backlog: a loaded machine showed one fd more)
      assert.truthy(clients_are(1), "not accepted")
      local fds = h.open_fds(d.pid)
      for i = 1, 20 do
        local r = raw(d.socket, { silent = true })
        assert.truthy(clients_are(2), "not accepted")
        r:send('{"jsonrpc":"2.0","id":' .. i .. ',"method":"tools/call","params":{"name":"listBack')
        r:close()
        assert.truthy(clients_are(1), "a client that went away mid-line is still counted")
      end
      -- and one whose process is killed mid-line
      local kid = assert(d.loop:spawn {
        argv = { "lua5.4", "-e", [[
          local uv = require "luv"
          local p = uv.new_pipe(false)
          p:connect(os.getenv("BGPROC_SOCKET"), function(err)
            assert(not err, err)
            p:read_start(function() end) -- keeps it here until killed
            p:write('{"jsonrpc":"2.0","id":1,"meth', function() io.stdout:write("sent\n") io.stdout:flush() end)
          end)
          uv.run()
        ]] },
        env = d.env,
      })
      assert.truthy(h.pump(d.loop, function() return (kid:read(0) or ""):find("sent") end, 10000))
      assert.truthy(clients_are(2), "not accepted")
      kid:kill("KILL")
      h.finish(d.loop, kid, 5000)
      assert.truthy(clients_are(1), "a client killed mid-line is still counted")
      assert.truthy(h.wait_until(function() return h.open_fds(d.pid) == fds end, 5000, 20),
        ("the daemon has %d fds, %d before"):format(h.open_fds(d.pid), fds))
      assert.same({}, assert(c:call("ping", {}, 5000)))
      c:close()
    end)
  end)
end)
