-- Jobs live as long as their owner means, on real process trees:
--   * the daemon is never a descendant of the client that started it, so a
--     client that kills its whole tree (by parent pids, process group or
--     session) leaves the daemon and the global jobs running, while its
--     own session's jobs end;
--   * a job started from a terminal (a real pty, its shell the session
--     leader) lives until that shell exits, also from a script, a subshell
--     or `time ( ... )`, and says why it ended;
--   * an agent's shell tool (a marker in the environment, or no terminal)
--     binds the job to the agent, not to the one-off `bash -c`;
--   * the end of each job says why, in JSON and in text.
local h = require "helpers"
local uv = require "luv"
local cjson = require "cjson"
local core = require "bgproc.core"

local daemons, loops = {}, {}

local function new_daemon()
  local d = h.private_daemon()
  daemons[#daemons + 1] = d
  return d
end

local function new_loop()
  local loop = core.new()
  loops[#loops + 1] = loop
  return loop
end

local function json_of(d, args)
  local out, code, stdout = d.run(args)
  local ok, v = pcall(cjson.decode, stdout)
  assert(ok, ("bgproc %s printed no JSON (exit %s): %s"):format(table.concat(args, " "), tostring(code), out))
  return v
end

local function record(d, id) return json_of(d, { "--json", "show", id }) end

local function list(d) return json_of(d, { "--json", "ls" }).processes end

local function daemon_pid(d)
  return json_of(d, { "--json", "daemon", "status" }).pid
end

-- Every live pid with its parent and session (one /proc scan).
local function proc_table()
  local out = {}
  for name in io.popen("ls /proc"):lines() do
    local pid = tonumber(name)
    local st = pid and h.stat(pid)
    if st then out[pid] = st end
  end
  return out
end

local function ancestors(pid)
  local chain, seen = {}, 0
  while pid and pid > 1 and seen < 64 do
    chain[#chain + 1] = pid
    local st = h.stat(pid)
    pid = st and st.ppid
    seen = seen + 1
  end
  return chain
end

local function is_descendant(pid, root)
  for _, p in ipairs(ancestors(pid)) do
    if p == root then return true end
  end
  return false
end

-- The three ways a client kills its whole tree.
local KILLS = {
  ["parent pids"] = function(root)
    local procs = proc_table()
    for pid in pairs(procs) do
      if is_descendant(pid, root) then uv.kill(pid, "sigkill") end
    end
  end,
  ["process group"] = function(root) uv.kill(-root, "sigkill") end,
  ["session"] = function(root)
    for pid, st in pairs(proc_table()) do
      if st.sid == root then uv.kill(pid, "sigkill") end
    end
  end,
}

local function wait_status(d, id, want, ms)
  local last
  local ok = h.wait_until(function()
    last = record(d, id)
    return last.status == want
  end, ms or 10000, 50)
  assert(ok, ("%s: wanted %s, got %s"):format(id, want, last and cjson.encode(last) or "nothing"))
  return last
end

local function job_ids_named(d, name)
  local out = {}
  for _, p in ipairs(list(d)) do
    if p.name == name then out[#out + 1] = p.id end
  end
  return out
end

-- A client started as `timeout 600 sh -c SCRIPT` in a session of its own
-- (the core spawns each job with setsid): `timeout` is its root, a
-- non-shell process as an agent is, and the owner of what it starts.
local function cli_client(d, loop, script)
  local env = h.env_with(d.env)
  env.PATH = h.root .. "/bin:" .. os.getenv("PATH")
  env.HOME = os.getenv("HOME")
  return assert(loop:spawn { argv = { "timeout", "600", "sh", "-c", script }, env = env })
end

describe("the daemon is owned by nobody", function()
  after_each(function()
    for _, loop in ipairs(loops) do loop:close() end
    loops = {}
    for _, d in ipairs(daemons) do d.stop() end
    daemons = {}
  end)

  local STARTERS = {
    -- the CLI: `bgproc start` finds no daemon and starts one
    cli = "bgproc start --name g --global -- sleep 300 && bgproc start --name s -- sleep 301 && exec sleep 600",
    -- the OpenCode plugin's way: `bgproc --json daemon start`, then calls
    plugin = "bgproc --json daemon start && bgproc start --name g --global -- sleep 300 "
      .. "&& bgproc start --name s -- sleep 301 && exec sleep 600",
  }

  for starter, script in pairs(STARTERS) do
    for how, kill in pairs(KILLS) do
      it(("started by the %s, survives the client's tree kill by %s"):format(starter, how), function()
        local d = new_daemon()
        local loop = new_loop()
        local client = cli_client(d, loop, script)
        local root = client:pid()
        assert(h.wait_until(function() return #job_ids_named(d, "s") == 1 end, 15000, 50),
          "the client's jobs did not start")
        local pid = daemon_pid(d)
        assert.is_false(is_descendant(pid, root), "the daemon is a descendant of its client")
        assert.are_not.equal(root, h.stat(pid).sid, "the daemon is in its client's session")
        kill(root)
        assert(h.pump(loop, function() return not client:alive() end, 5000))
        local s = wait_status(d, job_ids_named(d, "s")[1], "cancelled")
        assert.matches("^session ended %(timeout " .. root .. " exited%)$", s.endReason)
        assert.equal(pid, daemon_pid(d))
        assert.equal("running", record(d, job_ids_named(d, "g")[1]).status)
      end)
    end
  end

  for how, kill in pairs(KILLS) do
    it("started by bgproc mcp, survives the MCP client's tree kill by " .. how, function()
      local d = new_daemon()
      local loop = new_loop()
      local env = h.env_with(d.env)
      local mcp = assert(loop:spawn { argv = { "timeout", "600", h.lua, d.bin, "mcp" }, env = env, stdin = "pipe" })
      local root = mcp:pid()
      local function call(id, args)
        return cjson.encode { jsonrpc = "2.0", id = id, method = "tools/call",
                              params = { name = "createBackgroundProcess", arguments = args } } .. "\n"
      end
      mcp:write('{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}\n'
        .. call(1, { command = "sleep 300", name = "g", global = true }) .. call(2, { command = "sleep 301", name = "s" }))
      assert(h.pump(loop, function()
        local out = mcp:read(0, nil, "stdout")
        return out:find('"id":2', 1, true) ~= nil
      end, 15000), "bgproc mcp did not answer")
      local pid = daemon_pid(d)
      assert.is_false(is_descendant(pid, root), "the daemon is a descendant of bgproc mcp")
      kill(root)
      assert(h.pump(loop, function() return not mcp:alive() end, 5000))
      local s = wait_status(d, job_ids_named(d, "s")[1], "cancelled")
      assert.matches("^session ended %(MCP client timeout " .. root .. " disconnected", s.endReason)
      assert.equal(pid, daemon_pid(d))
      assert.equal("running", record(d, job_ids_named(d, "g")[1]).status)
    end)
  end
end)

describe("owners", function()
  local d
  before_each(function() d = new_daemon() end)
  after_each(function()
    for _, loop in ipairs(loops) do loop:close() end
    loops = {}
    for _, dd in ipairs(daemons) do dd.stop() end
    daemons = {}
  end)

  it("a terminal's jobs live until its shell exits: from a script, a subshell and time ( ... )", function()
    local loop = new_loop()
    local dir = h.tmpdir()
    local script = dir .. "/start-dev.sh"
    local f = assert(io.open(script, "w"))
    f:write("bgproc start --name from-script -- sleep 300\n")
    f:close()
    local env = h.env_with(d.env)
    env.PATH = h.root .. "/bin:" .. os.getenv("PATH")
    env.PS1 = "$ "
    -- a real terminal: bash on a pty, the session leader with it as its
    -- controlling terminal
    local shell = assert(loop:spawn { argv = { "bash", "--norc", "--noprofile", "-i" }, env = env, pty = true })
    shell:write("bash " .. script .. "\n(bgproc start --name from-subshell -- sleep 301)\n"
      .. "time (bgproc start --name from-time -- sleep 302)\necho started-$((40 + 2))\n")
    assert(h.pump(loop, function() return shell:read(0):find("started%-42") ~= nil end, 15000),
      "the shell did not run the commands: " .. shell:read(0))
    local names = { "from-script", "from-subshell", "from-time" }
    for _, name in ipairs(names) do
      local ids = job_ids_named(d, name)
      assert.equal(1, #ids, name .. ": " .. shell:read(0))
      local r = record(d, ids[1])
      assert.equal("running", r.status, name)
      assert.equal("shell-" .. shell:pid(), r.sessionId, name)
    end
    shell:write("exit\n")
    assert(h.pump(loop, function() return not shell:alive() end, 5000))
    for _, name in ipairs(names) do
      local r = wait_status(d, job_ids_named(d, name)[1], "cancelled")
      assert.equal("session", r.stopReason)
      assert.equal(("session ended (shell %d exited)"):format(shell:pid()), r.endReason)
    end
    local out = d.run { "ls" }
    assert.matches(("cancelled: session ended %%(shell %d exited%%)"):format(shell:pid()), out)
    out = d.run { "show", job_ids_named(d, "from-time")[1] }
    assert.matches(("status +cancelled: session ended %%(shell %d exited%%)"):format(shell:pid()), out)
    os.execute("rm -rf " .. dir)
  end)

  it("an agent's shell tool binds the job to the agent (CLAUDECODE), not to the tool's bash -c", function()
    local loop = new_loop()
    local env = h.env_with(d.env)
    env.PATH = h.root .. "/bin:" .. os.getenv("PATH")
    env.CLAUDECODE = "1"
    -- the "agent": timeout, running one tool call in bash -c, then living on
    local agent = assert(loop:spawn { argv = { "timeout", "600", "sh", "-c",
      "bash -c 'bgproc start --name tool-job -- sleep 300' && exec sleep 600" }, env = env })
    assert(h.wait_until(function() return #job_ids_named(d, "tool-job") == 1 end, 15000, 50))
    local id = job_ids_named(d, "tool-job")[1]
    assert.equal("shell-" .. agent:pid(), record(d, id).sessionId)
    assert.equal("running", record(d, id).status) -- the tool call's shells are gone
    uv.kill(agent:pid(), "sigterm")
    assert(h.pump(loop, function() return not agent:alive() end, 5000))
    local r = wait_status(d, id, "cancelled")
    assert.equal(("session ended (timeout %d exited)"):format(agent:pid()), r.endReason)
  end)

  it("a CLI that is itself its terminal's session leader (ssh -t host bgproc ...) binds to its parent", function()
    local loop = new_loop()
    local env = h.env_with(d.env, { PATH = h.root .. "/bin:" .. os.getenv("PATH") })
    local cli = assert(loop:spawn { argv = { h.lua, d.bin, "start", "--name", "led", "--", "sleep", "300" },
                                    env = env, pty = true })
    assert(h.pump(loop, function() return not cli:alive() end, 15000))
    assert.equal(0, (cli:exit()), cli:read(0))
    local id = job_ids_named(d, "led")[1]
    local r = record(d, id)
    assert.equal("shell-" .. h.self_pid(), r.sessionId) -- not its own, gone at once
    assert.equal("running", r.status)
    d.run { "kill", id }
  end)

  it("the daemon keeps none of its starter's identity: jobs without an env of their own see none", function()
    local caller = { BGPROC_SESSION = "leaky", CLAUDE_PID = tostring(h.self_pid()), CLAUDECODE = "1",
                     OPENCODE = "1", OPENCODE_PID = tostring(h.self_pid()), BGPROC_OWNER_PID = tostring(h.self_pid()) }
    d.run({ "start", "--", "true" }, caller) -- starts the daemon on demand, with that environment
    local c = assert(require("bgproc.client").connect { socket = d.socket, autostart = false })
    local r = assert(c:call("tools/call", { name = "createBackgroundProcess", arguments = { argv = { "env" } } }, 5000))
    local g = assert(c:call("tools/call", { name = "waitForBackgroundProcess", arguments = { processId = r.id } }, 5000))
    assert.equal("completed", g.status)
    local out = assert(c:call("tools/call", { name = "getBackgroundProcess", arguments = { processId = r.id, lines = 1000 } },
      5000)).output
    c:close()
    assert.matches("PATH=", out)
    for var in pairs(caller) do assert.is_nil(("\n" .. out):find("\n" .. var .. "=", 1, true), var .. " leaked") end
    assert.is_nil(out:find("BGPROC_SOCKET=", 1, true))
  end)

  it("every end says why, in JSON and text", function()
    local env = { BGPROC_SESSION = "why" }
    local function start(args)
      local out = d.run(args, env)
      return assert(out:match("started (%S+)"), out)
    end
    local killed = start { "start", "--", "sleep", "300" }
    local timed = start { "start", "--timeout", "100", "--", "sleep", "300" }
    local exited = start { "start", "sh -c 'exit 3'" }
    d.run { "kill", killed }
    assert.equal("killed by killProcesses", wait_status(d, killed, "cancelled").endReason)
    local t = wait_status(d, timed, "failed")
    assert.equal("timeout after 100 ms", t.endReason)
    assert.equal("timeout", t.stopReason)
    assert.equal("exited with code 3", wait_status(d, exited, "failed").endReason)
    local out = d.run { "ls" }
    assert.matches("cancelled: killed by killProcesses", out)
    assert.matches("failed: timeout after 100 ms", out)
    assert.matches("failed: exited with code 3", out)
  end)
end)

describe("unknown sessions", function()
  local m
  before_each(function() m = h.manager() end)
  after_each(h.cleanup)

  it("list an empty list, kill not_found naming the session", function()
    h.ok(m, "createBackgroundProcess", { command = "sleep 300" }, { sessionId = "known" })
    local r = h.ok(m, "listBackgroundProcesses", { sessionId = "ses_unknown" })
    assert.equal(0, r.count)
    local err = h.fails(m, "not_found", "killProcesses", { sessionId = "ses_unknown" })
    assert.equal("'sessionId': no session 'ses_unknown'", err)
    assert.equal(1, #h.ok(m, "killProcesses", { sessionId = "known" }).killed)
    -- a session that has ended but has records is known: nothing to kill
    m:session_close("known")
    assert.equal(0, #h.ok(m, "killProcesses", { sessionId = "known" }).killed)
  end)
end)
