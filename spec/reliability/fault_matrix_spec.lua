-- The fault matrix: every kind of job through every way a job can end,
-- BGPROC_MATRIX_ROUNDS rounds each (default 20). In a round the five kinds
-- start at once, the ending hits them, and then the whole process table
-- is checked: no process of the round alive within 2 s of the ending, no
-- zombie of it left, and every record in its right final state.
--
-- Jobs are marked with an environment variable holding a random token, so
-- /proc/*/environ finds ours and never another user's processes. A zombie
-- has no environ any more: the pids (and start times) seen while the
-- round ran are kept and checked one by one.
--
-- BGPROC_MATRIX_VERBOSE=1 prints, per ending, the slowest cleanup seen.
local h = require "helpers"
local uv = require "luv"
local cjson = require "cjson"
local core = require "bgproc.core"
local client = require "bgproc.client"
local json = require "bgproc.lib.json"

local ROUNDS = math.tointeger(tonumber(os.getenv("BGPROC_MATRIX_ROUNDS") or "")) or 20
local VERBOSE = os.getenv("BGPROC_MATRIX_VERBOSE") == "1"
local GRACE_MS = 150      -- TERM -> KILL, for the kind that ignores TERM
-- The job timeout of the timeout ending: the round must have seen every
-- job start before it strikes (about 100 ms with both cores busy; a
-- loaded machine's process starts are slow, 700 ms was too close).
local TIMEOUT_MS = 1500
local WINDOW_MS = 2000    -- everything of a round is gone this long after its ending
local REAP_MS = 1000      -- and reaped (no zombie) at most this much later
-- Bounds of waits for what follows once the round's processes are gone
-- (a reader's answer, final records, a guardian's or an engine process's
-- exit): what the matrix measures is WINDOW_MS; these only keep a broken
-- run from hanging, and cost nothing when things work.
local SETTLE_MS = 10000
local MARK = "BGPROC_MATRIX_MARK"

local function random_token()
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(6)
  f:close()
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
local TOKEN = random_token()

-- The job kinds. sleeps: how many `sleep` processes a started job has;
-- leader_exits: the leader exits 0 at once, leaving a grandchild that
-- holds its stdout (the record is `completed`, the grandchild must still
-- be ended).
local KINDS = {
  { name = "two children", command = "sleep 1000 & sleep 1000 & wait", sleeps = 2 },
  { name = "double fork", command = "(sleep 1000 &); sleep 1000", sleeps = 2 },
  { name = "ignores TERM", command = "trap '' TERM; sleep 1000", sleeps = 1 },
  { name = "stdout held by a grandchild", command = "sleep 1000 & exit 0", sleeps = 1, leader_exits = true },
  { name = "pty", command = "sleep 1000 & sleep 1000", pty = true, sleeps = 2 },
}
local SLEEPS = 0
for _, k in ipairs(KINDS) do SLEEPS = SLEEPS + k.sleeps end

-- createBackgroundProcess arguments of every kind for one round.
local function round_args(mark, tag, extra)
  local list = {}
  for i, k in ipairs(KINDS) do
    local a = { command = k.command, name = "matrix-" .. i, pty = k.pty or nil,
                env = { [MARK] = mark, BGPROC_MATRIX_KIND = tostring(i) }, tags = { tag } }
    for key, v in pairs(extra or {}) do a[key] = v end
    list[i] = a
  end
  return list
end

-- ---- the process table ---------------------------------------------------------

local read_file = h.read_file

local proc_stat = h.stat -- state, ppid, comm, start (tells a reused pid apart)

-- Live processes carrying our token: { pid, mark, kind, stat } each.
local function marked()
  local out = {}
  local needle = "\0" .. MARK .. "=" .. TOKEN
  for name in uv.fs_scandir_next, assert(uv.fs_scandir("/proc")) do
    if name:match("^%d+$") then
      local env = read_file("/proc/" .. name .. "/environ")
      local at = env and ("\0" .. env):find(needle, 1, true)
      if at then
        local st = proc_stat(name)
        if st then
          local e = "\0" .. env
          out[#out + 1] = { pid = tonumber(name), stat = st,
                            mark = e:match("%z" .. MARK .. "=([^%z]*)"),
                            kind = tonumber(e:match("%zBGPROC_MATRIX_KIND=(%d+)")) }
        end
      end
    end
  end
  return out
end

local function cmdline(pid)
  return ((read_file("/proc/" .. pid .. "/cmdline") or "?"):gsub("%z", " "))
end

local function describe_proc(p, st)
  return ("%d [%s] ppid %d kind %s (%s): %s"):format(p.pid, st.state, st.ppid, tostring(p.kind),
    p.kind and KINDS[p.kind].name or "?", cmdline(p.pid))
end

-- A round's processes: wait until every kind is up (all its sleeps there,
-- a leader that exits at once reaped), remembering every pid seen.
local Round = {}
Round.__index = Round

local rounds_made = 0
local function new_round(label, n)
  rounds_made = rounds_made + 1
  local mark = ("%s.%d"):format(TOKEN, rounds_made)
  return setmetatable({ mark = mark, tag = ("mx%s%d"):format(TOKEN:sub(1, 8), rounds_made),
                        label = label, n = n, seen = {}, records = {} }, Round)
end

function Round:args(extra) return round_args(self.mark, self.tag, extra) end

function Round:scan()
  local sleeps = 0
  for _, p in ipairs(marked()) do
    if p.mark == self.mark then
      self.seen[p.pid] = self.seen[p.pid] or p
      if p.stat.comm == "sleep" and p.stat.state ~= "Z" then sleeps = sleeps + 1 end
    end
  end
  return sleeps
end

-- records: the five job records (in KINDS order), with their pids.
function Round:started(records, pump)
  self.records = records
  local function leaders_done()
    for i, k in ipairs(KINDS) do
      if k.leader_exits and proc_stat(records[i].pid) then return false end
    end
    return true
  end
  local ok = h.wait_until(function()
    if pump then pump() end
    return self:scan() == SLEEPS and leaders_done()
  end, 10000, 20)
  assert(ok, ("round %s %d: the jobs did not all start: %d of %d sleeps"):format(
    self.label, self.n, self:scan(), SLEEPS))
end

-- After the ending (at t0, ms): nothing of the round alive within
-- WINDOW_MS, then nothing of it left as a zombie. Returns the ms it took.
function Round:check_clean(t0)
  local function live()
    for _, p in ipairs(marked()) do
      if p.mark == self.mark then self.seen[p.pid] = self.seen[p.pid] or p end
    end
    local out = {}
    for pid, p in pairs(self.seen) do
      local st = proc_stat(pid)
      if st and st.start == p.stat.start and st.state ~= "Z" then out[#out + 1] = describe_proc(p, st) end
    end
    return out
  end
  local function zombies()
    local out = {}
    for pid, p in pairs(self.seen) do
      local st = proc_stat(pid)
      if st and st.start == p.stat.start then out[#out + 1] = describe_proc(p, st) end
    end
    return out
  end
  local function within(pred, deadline)
    while not pred() and h.now_ms() < deadline do uv.sleep(10) end
    return pred()
  end
  local left
  within(function() left = live() return #left == 0 end, t0 + WINDOW_MS)
  assert(#left == 0, ("round %s %d: alive %d ms after the ending:\n%s"):format(
    self.label, self.n, WINDOW_MS, table.concat(left, "\n")))
  within(function() left = zombies() return #left == 0 end, t0 + WINDOW_MS + REAP_MS)
  assert(#left == 0, ("round %s %d: not reaped:\n%s"):format(self.label, self.n, table.concat(left, "\n")))
  return h.now_ms() - t0
end

-- Every record of the round: status, stopReason, error as want(kind) says.
local function check_records(round, records, want)
  for i, k in ipairs(KINDS) do
    local r, w = records[i], want(k)
    local where = ("round %s %d, kind %d (%s), job %s"):format(round.label, round.n, i, k.name, tostring(r and r.id))
    assert(r, where .. ": no record")
    assert.equal(w.status, r.status, where .. ": " .. cjson.encode(r))
    if w.stopReason then assert.equal(w.stopReason, r.stopReason, where .. ": " .. cjson.encode(r)) end
    if w.error then assert.equal(w.error, r.error, where) end
    if w.exitCode then assert.equal(w.exitCode, r.exitCode, where) end
    assert.is_nil(r.stopping, where .. ": still stopping")
  end
end

-- What a record that was stopped for `reason` must say: cancelled, or
-- completed for the kind whose leader had already exited 0.
local function stopped_for(reason)
  return function(k)
    if k.leader_exits then return { status = "completed", exitCode = 0, stopReason = reason } end
    return { status = "cancelled", stopReason = reason }
  end
end

-- ---- timing figures ------------------------------------------------------------------

local slowest = {}
local function note_time(label, ms)
  slowest[label] = math.max(slowest[label] or 0, ms)
end

-- The process that ran the engine (what) has ended, the ending at t0:
-- its exit code and signal as wanted, nothing of the round left, and its
-- guardian gone.
local function engine_ended(round, t0, what, got, want, guardian)
  assert.equal(want[1], got[1], what .. ": exit code")
  assert.equal(want[2], got[2], what .. ": signal")
  note_time(round.label, round:check_clean(t0))
  assert(h.wait_until(function() return proc_stat(guardian) == nil end, SETTLE_MS),
    what .. ": its guardian is still there")
end

-- ROUNDS rounds of an ending: state = start(round), then body(round,
-- state); done(state) runs after each, even when the round failed.
local function rounds(label, start, body, done)
  for n = 1, ROUNDS do
    local round = new_round(label, n)
    local state = start(round)
    local ok, err = pcall(body, round, state)
    done(state)
    assert(ok, err)
  end
end

-- Kill whatever of ours is left (a failed round), by pid: marked only.
local function kill_marked()
  for _, p in ipairs(marked()) do uv.kill(p.pid, "sigkill") end
end

-- ---- daemons and clients ----------------------------------------------------------

-- `bgproc daemon run` on d's socket, as our child (its exit is ours to see).
local spawn_daemon = h.spawn_daemon

-- The daemon process's guardian (its child named bgproc-guardian).
local function guardian_of(pid)
  for _, c in ipairs(h.children(pid)) do
    local st = proc_stat(c.pid)
    if st and st.comm == "bgproc-guardian" then return c.pid end
  end
end

local function stop_daemon(dm)
  if dm.client then dm.client:close() end
  if dm.job:alive() then
    dm.job:kill("TERM")
    if not h.pump(dm.loop, function() return not dm.job:alive() end, 5000) then dm.job:kill("KILL") end
  end
  dm.loop:close()
end

local tool = h.tool_call

-- The round's records as the daemon has them, in KINDS order.
local function daemon_records(c, round)
  local byname = {}
  local list = tool(c, "listBackgroundProcesses", { tags = { round.tag } })
  for _, p in ipairs(list.processes) do byname[p.name] = p end
  local out = {}
  for i in ipairs(KINDS) do out[i] = byname["matrix-" .. i] end
  return out
end

local function all_final(records)
  for i in ipairs(KINDS) do
    local r = records[i]
    if not r or r.stopping or not ({ completed = true, failed = true, cancelled = true })[r.status] then
      return false
    end
  end
  return true
end

-- Readers of the job whose leader exits at once: a wait for its exit
-- answers at once; a wait for output that never comes must answer when
-- the ending closes that output (a grandchild held it open), not hang.
local function start_reader(c, round)
  for i, k in ipairs(KINDS) do
    if k.leader_exits then
      local id = round.records[i].id
      local r = tool(c, "waitForBackgroundProcess", { processId = id, timeoutMs = 10000 })
      assert(r.timedOut == false and r.status == "completed", "wait for exit: " .. cjson.encode(r))
      local reader = {}
      c:request("tools/call", { name = "waitForBackgroundProcess", arguments = {
        processId = id, ["until"] = "output", pattern = "^never printed$", timeoutMs = 30000 } },
        function(res, err) reader.res, reader.err, reader.done = res, err, true end)
      round.reader = reader
    end
  end
end

-- The reader's answer, once the round's jobs are gone (deadline: now +
-- SETTLE_MS; the wait itself would time out only after 30 s).
local function check_reader(round, deadline)
  deadline = deadline or h.now_ms() + SETTLE_MS
  local reader = round.reader
  assert(client.pump(function() return reader.done end, math.max(1, deadline - h.now_ms())),
    ("round %s %d: a wait for output of the job that left a grandchild did not end with it"):format(
      round.label, round.n))
  assert(reader.res, "the wait failed: " .. cjson.encode(reader.err or {}))
  assert.is_false(reader.res.timedOut)
  assert.is_false(reader.res.matched)
end

-- Start the round's jobs through a client, in session sid.
local function daemon_start(c, round, sid, extra)
  local records = {}
  for i, a in ipairs(round:args(extra)) do records[i] = tool(c, "createBackgroundProcess", a, sid) end
  round:started(records)
  start_reader(c, round)
  return records
end

local DAEMON_CONFIG = ("return { plugins = {}, graceMs = %d }\n"):format(GRACE_MS)

-- ---- MCP servers ------------------------------------------------------------------------

-- `bgproc mcp` (on d's daemon, or --standalone), with the round's jobs started.
-- (c: a client of the daemon for the reader; nil with standalone = true)
local function mcp_start(d, c, round, standalone)
  local loop = core.new()
  local argv = { h.lua, d.bin, "mcp", standalone and "--standalone" or nil }
  local job = assert(loop:spawn { argv = argv, env = d.env, stdin = "pipe" })
  local s = { loop = loop, job = job }
  local function send(id, method, params)
    job:write(json.encode { jsonrpc = "2.0", id = id, method = method, params = params } .. "\n")
  end
  send(1, "initialize", { protocolVersion = "2025-11-25", capabilities = {},
                          clientInfo = { name = "matrix", version = "1" } })
  job:write('{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
  for i, a in ipairs(round:args()) do send(i + 1, "tools/call", { name = "createBackgroundProcess", arguments = a }) end
  local replies, cursor, buf = {}, 0, ""
  local function have_all()
    loop:wait(10)
    local data, next = job:read(cursor, nil, "stdout")
    cursor, buf = next, buf .. data
    for line in buf:gmatch("([^\n]*)\n") do
      local msg = cjson.decode(line)
      if msg.id then replies[msg.id] = msg end
    end
    buf = buf:match("[^\n]*$")
    for i = 1, #KINDS + 1 do if not replies[i] then return not job:alive() end end
    return true
  end
  local ok = h.wait_until(have_all, 15000, 0)
  assert(ok and job:alive(), "bgproc mcp did not answer: " .. tostring((job:read(0, nil, "stderr"))))
  local records = {}
  for i in ipairs(KINDS) do
    local r = replies[i + 1]
    assert(r.result and not r.result.isError, "create failed: " .. cjson.encode(r))
    records[i] = json.normalize(r.result.structuredContent)
  end
  round:started(records, function() loop:wait(0) end)
  if c then start_reader(c, round) end
  s.records = records
  return s
end

-- Wait for the server's exit; returns code, signal.
local function mcp_exit(s)
  local ok = h.pump(s.loop, function() return not s.job:alive() end, 10000)
  assert(ok, "bgproc mcp did not exit")
  return s.job:exit()
end

-- Kill the process of a { loop, job } if it is still there; close its loop.
local function process_done(s)
  if s.job:alive() then s.job:kill("KILL") end
  s.loop:close()
end

-- ---- the matrix ----------------------------------------------------------------------------

describe("fault matrix (" .. ROUNDS .. " rounds per ending)", function()
  -- (bgproc.client ignores SIGPIPE: a daemon gone mid-write fails a
  -- test, not busted)
  lazy_teardown(function()
    kill_marked()
    if VERBOSE then
      local names = {}
      for k in pairs(slowest) do names[#names + 1] = k end
      table.sort(names)
      for _, k in ipairs(names) do
        io.stderr:write(("fault matrix: %-28s slowest cleanup %4d ms\n"):format(k, math.floor(slowest[k])))
      end
    end
  end)

  -- Endings inside a live daemon: the API's and the MCP server's.
  describe("in a daemon that lives on", function()
    local d, dm
    lazy_setup(function()
      d = h.private_daemon(DAEMON_CONFIG)
      dm = spawn_daemon(d)
    end)
    lazy_teardown(function()
      stop_daemon(dm)
      d.stop()
    end)

    local function daemon_ok()
      return dm.job:alive() and h.alive(dm.pid) and not dm.client.closed
    end

    -- What became of a lost daemon: its exit, its output, its log's end.
    local function daemon_diag()
      dm.loop:dispatch()
      local code, sig = dm.job:exit()
      local log = h.read_file(d.dir .. "/state/bgproc/daemon.log") or "(no log)"
      local tail = {}
      for l in log:gmatch("[^\n]+") do
        tail[#tail + 1] = l
        if #tail > 30 then table.remove(tail, 1) end
      end
      return ("\n-- the daemon (pid %d): %s, exit code %s, signal %s; its client %s\n-- its output:\n%s\n"
        .. "-- the end of its log:\n%s"):format(dm.pid, h.alive(dm.pid) and "alive" or "gone",
        tostring(code), tostring(sig), dm.client.closed and "disconnected" or "connected",
        tostring((dm.job:read(0))), table.concat(tail, "\n"))
    end

    -- Daemons on our socket that we did not start: `bgproc mcp` starts
    -- one (detached, so no child of ours) when it finds none answering.
    local function strays()
      local out = {}
      for name in uv.fs_scandir_next, assert(uv.fs_scandir("/proc")) do
        local pid = tonumber(name)
        local cmd = pid and pid ~= dm.pid and read_file("/proc/" .. name .. "/cmdline") or ""
        if cmd:find(("%q"):format(d.socket), 1, true) and cmd:find("'daemon', 'run'", 1, true) and h.alive(pid) then
          out[#out + 1] = pid
        end
      end
      return out
    end

    -- After each ending: the round's processes killed if a check failed;
    -- a daemon started by someone else on our socket stopped (and a
    -- failure: ours was lost); ours, if it was lost, replaced, so that one
    -- loss fails one test (with the diagnosis), not every later one.
    after_each(function()
      kill_marked()
      local others = strays()
      for _, pid in ipairs(others) do uv.kill(pid, "sigterm") end
      h.wait_until(function() return #strays() == 0 end, 5000)
      for _, pid in ipairs(strays()) do uv.kill(pid, "sigkill") end
      local lost = not daemon_ok()
      if lost then
        stop_daemon(dm)
        dm = spawn_daemon(d)
      end
      assert(#others == 0, ("a daemon was started on the spec's socket (pids %s): ours was lost")
        :format(table.concat(others, " ")))
    end)

    -- run(round, c): start the jobs, end them; returns t0 and the records
    -- (or nil: read them from the daemon once final), want: per kind.
    local function api_ending(label, run, want)
      it(label .. ": every kind ends, nothing survives, records final", function()
        local ok, err = pcall(function()
          for n = 1, ROUNDS do
            local round = new_round(label, n)
            local t0, records = run(round, dm.client)
            note_time(label, round:check_clean(t0))
            check_reader(round)
            if not records then
              assert(h.wait_until(function()
                records = daemon_records(dm.client, round)
                return all_final(records)
              end, SETTLE_MS, 20), "records not final: " .. cjson.encode(records))
            end
            check_records(round, records, want)
            assert(daemon_ok(), "the daemon was lost")
          end
        end)
        if not ok and not daemon_ok() then error(tostring(err) .. daemon_diag(), 0) end
        assert(ok, err)
      end)
    end

    -- a list of requests sent at once; their results, in order
    local function at_once(c, calls)
      local results, left = {}, #calls
      for i, call in ipairs(calls) do
        c:request("tools/call", { name = call[1], arguments = call[2] }, function(r, err)
          results[i] = r and json.normalize(r) or { error = err }
          left = left - 1
        end)
      end
      assert(client.pump(function() return left == 0 end, 15000), "no answer from the daemon")
      return results
    end

    local function killed_all(reply, records)
      assert.same({}, reply.errors)
      local want = {}
      for _, r in ipairs(records) do want[#want + 1] = r.id end
      local got = table.move(reply.killed, 1, #reply.killed, 1, {})
      table.sort(want)
      table.sort(got)
      assert.same(want, got)
    end

    api_ending("killProcesses by id", function(round, c)
      local records = daemon_start(c, round)
      local calls = {}
      for i, r in ipairs(records) do calls[i] = { "killProcesses", { processId = r.id, graceMs = GRACE_MS } } end
      local t0 = h.now_ms()
      local replies = at_once(c, calls)
      for i, rep in ipairs(replies) do
        assert.is_nil(rep.error, cjson.encode(rep))
        killed_all(rep, { records[i] })
      end
      return t0, daemon_records(c, round)
    end, stopped_for("kill"))

    api_ending("killProcesses by tag", function(round, c)
      local records = daemon_start(c, round)
      local t0 = h.now_ms()
      killed_all(tool(c, "killProcesses", { tags = records[1].tags, graceMs = GRACE_MS }), records)
      return t0, daemon_records(c, round)
    end, stopped_for("kill"))

    api_ending("killProcesses by session", function(round, c)
      local sid = "mx-kill-" .. round.n
      assert(c:call("session/open", { sessionId = sid, bind = "none" }, 5000))
      local records = daemon_start(c, round, sid)
      local t0 = h.now_ms()
      killed_all(tool(c, "killProcesses", { sessionId = sid, graceMs = GRACE_MS }), records)
      assert(c:call("session/close", { sessionId = sid }, 5000))
      return t0, daemon_records(c, round)
    end, stopped_for("kill"))

    api_ending("the job's timeout", function(round, c)
      -- the ending is the timer, TIMEOUT_MS after each spawn: counting
      -- from before the first one only makes the window shorter
      local t0 = h.now_ms() + TIMEOUT_MS
      daemon_start(c, round, nil, { timeoutMs = TIMEOUT_MS })
      return t0, nil
    end, function(k)
      if k.leader_exits then return { status = "completed", exitCode = 0, stopReason = "timeout" } end
      return { status = "failed", stopReason = "timeout", error = ("timed out after %d ms"):format(TIMEOUT_MS) }
    end)

    api_ending("session end", function(round, c)
      local sid = "mx-end-" .. round.n
      assert(c:call("session/open", { sessionId = sid, bind = "none" }, 5000))
      local records = daemon_start(c, round, sid)
      local t0 = h.now_ms()
      local res = assert(c:call("session/close", { sessionId = sid }, 10000))
      killed_all(res, records)
      return t0, daemon_records(c, round)
    end, stopped_for("session"))

    -- The MCP server goes away; its session ends, the daemon stays.
    local function mcp_ending(label, finish, want_code, want_signal)
      api_ending("MCP: " .. label, function(round)
        local s = mcp_start(d, dm.client, round)
        local ok, err = pcall(function()
          local t0 = h.now_ms()
          finish(s)
          local code, sig = mcp_exit(s)
          assert.equal(want_code, code, "exit code of bgproc mcp")
          assert.equal(want_signal, sig, "signal of bgproc mcp")
          s.t0 = t0
        end)
        process_done(s)
        assert(ok, err)
        return s.t0, nil
      end, stopped_for("session"))
    end
    mcp_ending("client EOF", function(s) s.job:close_stdin() end, 0, nil)
    mcp_ending("SIGINT", function(s) s.job:kill("INT") end, 0, nil)
    mcp_ending("SIGKILL of the server", function(s) s.job:kill("KILL") end, nil, "KILL")
  end)

  -- The timeout bug the matrix found, alone and in-process: a leader that
  -- exits 0 at once is `completed`, and its grandchild must still be
  -- stopped when the timeout comes.
  describe("a job's timeout", function()
    after_each(h.cleanup)

    it("also ends what a leader that already exited left running", function()
      local m = h.manager { graceMs = GRACE_MS }
      local r = h.ok(m, "createBackgroundProcess", { command = "sleep 1000 & exit 0", timeoutMs = 300 })
      assert(m:run_until(function() return m:record(r.id).status == "completed" end, 5000))
      assert.equal(1, #h.group(r.pid), "the grandchild holding stdout")
      assert.truthy(m:run_until(function() return #h.group(r.pid) == 0 end, 3000),
        "the grandchild outlived the timeout")
      local rec = m:record(r.id)
      assert.equal("completed", rec.status)
      assert.equal(0, rec.exitCode)
      assert.equal("timeout", rec.stopReason)
    end)

    it("holds nothing once the leftover exits by itself: uv.run() returns", function()
      local m = h.manager { luv = true }
      local r = h.ok(m, "createBackgroundProcess", { command = "sleep 0.3 & exit 0", timeoutMs = 600000 })
      local watchdog = uv.new_timer()
      watchdog:start(5000, 0, function() uv.stop() end)
      watchdog:unref()
      local t0 = h.now_ms()
      uv.run()
      watchdog:close()
      uv.run("nowait")
      assert.is_true(h.now_ms() - t0 < 4000, "the engine kept luv's loop running")
      local rec = m:record(r.id)
      assert.equal("completed", rec.status)
      assert.is_nil(rec.stopReason)
      -- its output closed before it was quite gone (a process closes its
      -- files before it becomes a zombie)
      assert.truthy(h.wait_until(function() return #h.group(r.pid) == 0 end, 2000))
    end)
  end)

  -- Endings that take the engine's process down: the daemon (a fresh one
  -- per round) and, beyond the issue's list, `bgproc mcp --standalone`,
  -- whose engine runs in-process. Records die with them: what is checked
  -- is the process's exit, the process table and the guardian.
  describe("when the daemon ends", function()
    local d
    lazy_setup(function() d = h.private_daemon(DAEMON_CONFIG) end)
    lazy_teardown(function() d.stop() end)
    after_each(kill_marked)

    local function daemon_ending(label, finish, want_code, want_signal)
      it(label .. ": every kind ends with it, its guardian too", function()
        rounds(label, function() return spawn_daemon(d) end, function(round, dm)
          daemon_start(dm.client, round)
          local guardian = assert(guardian_of(dm.pid), "the daemon has no guardian")
          local t0 = h.now_ms()
          t0 = finish(dm) or t0 -- (when the daemon took the ending)
          dm.client:close()
          dm.client = nil
          assert(h.pump(dm.loop, function() return not dm.job:alive() end, SETTLE_MS), "the daemon did not exit")
          engine_ended(round, t0, "the daemon", { dm.job:exit() }, { want_code, want_signal }, guardian)
          if want_code == 0 then assert.is_nil(uv.fs_stat(d.socket), "the socket file is still there") end
        end, stop_daemon)
      end)
    end

    -- When (on our clock) the daemon's log last said `text`: its lines start
    -- with a UTC time to the ms (2026-01-02T03:04:05.678Z).
    local function logged_at(text)
      local log = h.read_file(d.dir .. "/state/bgproc/daemon.log") or ""
      local iso
      for line in log:gmatch("[^\n]+") do
        if line:find(text, 1, true) then iso = line:match("^(%S+)") end
      end
      local Y, M, D, hh, mm, ss, ms = (iso or ""):match("^(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z$")
      if not Y then return nil end
      Y, M, D = tonumber(Y), tonumber(M), tonumber(D)
      local y = M <= 2 and Y - 1 or Y -- days from the civil date (H. Hinnant)
      local era = y // 400
      local yoe = y - era * 400
      local doe = yoe * 365 + yoe // 4 - yoe // 100 + (153 * ((M + 9) % 12) + 2) // 5 + D - 1
      local days = era * 146097 + doe - 719468
      local at = ((days * 24 + tonumber(hh)) * 60 + tonumber(mm)) * 60000 + tonumber(ss) * 1000 + tonumber(ms)
      local sec, usec = uv.gettimeofday()
      return h.now_ms() - (sec * 1000 + usec / 1000 - at)
    end

    -- The ending starts when the daemon takes the request, not when the
    -- CLI that sends it starts (a new lua5.4: up to a second when loaded).
    daemon_ending("`bgproc daemon stop`", function(dm)
      local out, code = d.run { "daemon", "stop" }
      assert.equal(0, code, out)
      assert.matches("stopped %(pid " .. dm.pid .. "%)", out)
      return assert(logged_at(("info stopping: asked by a client")), "the daemon did not log its stop")
    end, 0, nil)
    daemon_ending("SIGTERM of the daemon", function(dm) assert(uv.kill(dm.pid, "sigterm")) end, 0, nil)
    daemon_ending("SIGKILL of the daemon", function(dm) assert(uv.kill(dm.pid, "sigkill")) end, nil, "KILL")

    local function standalone_ending(label, finish, want_code, want_signal)
      it(label .. ": every kind ends with it, its guardian too", function()
        rounds(label, function(round) return mcp_start(d, nil, round, true) end, function(round, s)
          local guardian = assert(guardian_of(s.job:pid()), "the server has no guardian")
          local t0 = h.now_ms()
          finish(s)
          engine_ended(round, t0, "bgproc mcp --standalone", { mcp_exit(s) }, { want_code, want_signal }, guardian)
        end, process_done)
      end)
    end
    standalone_ending("standalone MCP: client EOF", function(s) s.job:close_stdin() end, 0, nil)
    standalone_ending("standalone MCP: SIGINT", function(s) s.job:kill("INT") end, 0, nil)
    standalone_ending("standalone MCP: SIGKILL", function(s) s.job:kill("KILL") end, nil, "KILL")
  end)

  -- An embedding host (build/lua-host, bgproc on luv's loop) that goes
  -- away without m:shutdown().
  describe("in an embedding host", function()
    after_each(kill_marked)

    local function host_ending(label, modes, finish, want_code, want_signal)
      it(label .. ": every kind ends with it, its guardian too", function()
        rounds(label, function(round)
          local mode = modes[(round.n - 1) % #modes + 1]
          local loop = core.new()
          local host = assert(loop:spawn {
            argv = { h.root .. "/build/lua-host", h.fixture("matrix_host.lua"), json.encode(round:args()), mode },
            env = h.lua_env(), stdin = "pipe",
          })
          return { loop = loop, job = host, mode = mode }
        end, function(round, st)
          local loop, host = st.loop, st.job
          local line = h.wait_until(function()
            loop:wait(10)
            return (host:read(0, nil, "stdout")):match("^[^\n]*\n") or not host:alive()
          end, 15000, 0)
          assert(type(line) == "string", "the host printed nothing: " .. tostring((host:read(0))))
          local info = json.normalize(cjson.decode(line))
          round:started(info.jobs, function() loop:wait(0) end)
          local t0 = h.now_ms()
          finish(host)
          assert(h.pump(loop, function() return not host:alive() end, SETTLE_MS), "the host did not exit")
          local what = ("the host (%s; stderr: %s)"):format(st.mode, (host:read(0, nil, "stderr")))
          engine_ended(round, t0, what, { host:exit() }, { want_code, want_signal }, info.guardian)
        end, process_done)
      end)
    end

    -- alternately: lua_close runs the __gc, or the state is never closed
    host_ending("host exits without shutdown", { "close", "noclose" }, function(host) host:write("go\n") end, 0, nil)
    host_ending("host is SIGKILLed", { "hold" }, function(host) host:kill("KILL") end, nil, "KILL")
  end)
end)
