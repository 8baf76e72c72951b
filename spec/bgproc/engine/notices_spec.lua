-- Owners are told, without polling, when a job ends, becomes ready, or
-- prints a line matching its notifyPattern: pushed to connections that
-- opened their session with notify (the OpenCode plugin), kept for
-- events/take (Claude Code's hooks), sent as MCP notifications/message.
-- Real daemons, real clients, real jobs.
local h = require "helpers"
local uv = require "luv"
local cjson = require "cjson"
local core = require "bgproc.core"
local client = require "bgproc.client"

local daemons = {}

local function new_daemon()
  local d = h.private_daemon()
  daemons[#daemons + 1] = d
  local out, code = d.run { "daemon", "start" }
  assert(code == 0, out)
  return d
end

local function connect(d)
  local c = assert(client.connect { socket = d.socket, autostart = false })
  c.in_loop = false
  return c
end

local function call(c, method, params)
  local r, err = c:call(method, params, 15000)
  assert(r, err and err.message)
  return r
end

local function create(c, sid, args)
  return call(c, "tools/call", { name = "createBackgroundProcess", arguments = args, sessionId = sid })
end

local function wall_ms()
  local sec, usec = uv.gettimeofday()
  return sec * 1000 + usec // 1000
end

-- Milliseconds since the epoch of an ISO 8601 UTC time.
local function iso_ms(iso)
  local y, mo, d, hh, mi, ss, ms = iso:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z$")
  local t = os.time { year = y, month = mo, day = d, hour = hh, min = mi, sec = ss, isdst = false }
  local utc_offset = os.time(os.date("*t", 0)) - os.time(os.date("!*t", 0))
  return (t + utc_offset) * 1000 + tonumber(ms)
end

-- events/take until it gives something (an end is taken once told)
local function take_some(c, params)
  local taken
  assert(h.wait_until(function()
    taken = call(c, "events/take", params)
    return #taken.events > 0
  end, 3000, 20), "nothing to take")
  return taken
end

-- notifications/jobs received on c, in order, each with when it came
local function collect(c)
  local got = {}
  c.on_notification = function(method, params)
    if method == "notifications/jobs" then
      params.received_ms = wall_ms()
      got[#got + 1] = params
    end
  end
  return got
end

-- s as a Lua pattern matching itself
local function lit(s) return (s:gsub("%p", "%%%0")) end

local function events_of(got)
  local out = {}
  for _, n in ipairs(got) do
    for _, ev in ipairs(n.events) do out[#out + 1] = ev end
  end
  return out
end

describe("notices", function()
  after_each(function()
    for _, d in ipairs(daemons) do d.stop() end
    daemons = {}
  end)

  it("a session opened with notify hears of its jobs' ends, readiness and notifyPattern lines, within 1 s", function()
    local d = new_daemon()
    local c = connect(d)
    local got = collect(c)
    call(c, "session/open", { sessionId = "ses_chat", bind = "connection", notify = true, owner = "OpenCode chat ses_chat" })
    local ended = create(c, "ses_chat", { command = "echo one; echo two; exit 3", name = "failing" })
    local ready = create(c, "ses_chat", { command = "echo booting; echo 'listening on 3000'; sleep 300",
                                          name = "web", readyPattern = "listening" })
    local noisy = create(c, "ses_chat", { command = "for i in 1 2 3; do echo ERROR $i; done; sleep 300",
                                          notifyPattern = "ERROR" })
    assert(client.pump(function() return #events_of(got) >= 3 end, 5000), "got " .. cjson.encode(got))
    local by, came = {}, {}
    for _, n in ipairs(got) do
      for _, ev in ipairs(n.events) do by[ev.processId .. ev.event], came[ev] = ev, n.received_ms end
    end
    local e = assert(by[ended.id .. "ended"], cjson.encode(got))
    assert.equal("failed", e.status)
    assert.equal(3, e.exitCode)
    assert.equal("exited with code 3", e.endReason)
    assert.equal("one\ntwo\n", e.lastLines)
    -- the end went out at most 1 s after the job ended
    local ended_at = call(c, "tools/call", { name = "getBackgroundProcess", arguments = { processId = ended.id } }).endedAt
    local latency = came[e] - iso_ms(ended_at)
    assert.is_true(latency >= 0 and latency <= 1000, ("the notice came %d ms after the end"):format(latency))
    local r = assert(by[ready.id .. "ready"])
    assert.equal("listening on 3000", r.line)
    local m = assert(by[noisy.id .. "matched"])
    assert.equal("ERROR 1", m.line)
    assert.equal("ERROR", m.pattern)
    -- at most one notice per job a second: the other two lines are counted
    for _, n in ipairs(got) do
      assert.equal("ses_chat", n.sessionId)
      assert.matches("^%[bgproc%]", n.text)
    end
    local all = table.concat((function()
      local t = {}
      for i, n in ipairs(got) do t[i] = n.text end
      return t
    end)(), "\n")
    assert.matches("job " .. lit(ended.id) .. " %(failing%) ended: failed: exited with code 3", all)
    assert.matches("  | two", all)
    assert.matches("job " .. lit(ready.id) .. " %(web%) is ready: listening on 3000", all)
    c:close()
  end)

  it("tells nothing of a job the session killed itself, nor of its session's own end", function()
    local d = new_daemon()
    local c = connect(d)
    local got = collect(c)
    call(c, "session/open", { sessionId = "ses_k", bind = "none", notify = true })
    local a = create(c, "ses_k", { command = "sleep 300" })
    local b = create(c, "ses_k", { command = "sleep 301" })
    local _, spawn_err = c:call("tools/call", { name = "createBackgroundProcess", sessionId = "ses_k",
                                                arguments = { argv = { "/no/such/program" } } }, 5000)
    assert.equal("spawn_failed", spawn_err.data.code) -- answered at once: not told again
    local marker = create(c, "ses_k", { command = "exit 0", name = "marker" })
    -- killed by another session: told
    call(c, "tools/call", { name = "killProcesses", arguments = { processId = b.id }, sessionId = "someone-else" })
    call(c, "tools/call", { name = "killProcesses", arguments = { processId = a.id }, sessionId = "ses_k" })
    assert(client.pump(function()
      local n = 0
      for _, ev in ipairs(events_of(got)) do if ev.processId == b.id or ev.processId == marker.id then n = n + 1 end end
      return n == 2
    end, 5000), cjson.encode(got))
    for _, ev in ipairs(events_of(got)) do
      assert.are_not.equal(a.id, ev.processId)
      assert.are_not.equal(spawn_err.data.processId, ev.processId)
    end
    local evb
    for _, ev in ipairs(events_of(got)) do if ev.processId == b.id then evb = ev end end
    assert.equal("killed by killProcesses", evb.endReason)
    c:close()
  end)

  it("events/take gives what ended since the last take, once; session/close records its reason", function()
    local d = new_daemon()
    local c = connect(d)
    call(c, "session/open", { sessionId = "hooked", bind = "none" })
    local j = create(c, "hooked", { command = "echo bye; exit 1", name = "quick" })
    call(c, "tools/call", { name = "waitForBackgroundProcess", arguments = { processId = j.id } })
    local taken = take_some(c, { sessionIds = { "hooked" } })
    assert.equal(j.id, taken.events[1].processId)
    assert.matches("job " .. lit(j.id) .. " %(quick%) ended: failed: exited with code 1", taken.text)
    assert.equal(0, #call(c, "events/take", { sessionIds = { "hooked" } }).events)
    local s = create(c, "hooked", { command = "sleep 300" })
    local closed = call(c, "session/close", { sessionId = "hooked", reason = "OpenCode chat deleted" })
    assert.same({ s.id }, closed.killed)
    local rec = call(c, "tools/call", { name = "getBackgroundProcess", arguments = { processId = s.id } })
    assert.equal("session ended (OpenCode chat deleted)", rec.endReason)
    local _, err = c:call("events/take", { sessionIds = "hooked" }, 5000)
    assert.equal(-32602, err.code)
    assert.matches("'sessionIds'", err.message)
    c:close()
  end)

  it("events/take by owner pid takes the events of every session that process owns (its MCP server's too)", function()
    local d = new_daemon()
    local c = connect(d)
    call(c, "session/open", { sessionId = "mcp-1", bind = "none", ownerPid = 4242 })
    call(c, "session/open", { sessionId = "mcp-2", bind = "none", ownerPid = 4343 })
    local mine = create(c, "mcp-1", { command = "exit 5" })
    local other = create(c, "mcp-2", { command = "exit 6" })
    call(c, "tools/call", { name = "waitForBackgroundProcess", arguments = { processIds = { mine.id, other.id } } })
    local taken = take_some(c, { ownerPid = 4242 })
    assert.equal(1, #taken.events)
    assert.equal(mine.id, taken.events[1].processId)
    for _, bad in ipairs { { ownerPid = "4242" }, { ownerPid = -1 }, {}, { sessionIds = {} } } do
      local _, err = c:call("events/take", bad, 5000)
      assert.equal(-32602, err.code, cjson.encode(bad))
    end
    local _, err = c:call("session/open", { sessionId = "x", ownerPid = "12" }, 5000)
    assert.equal(-32602, err.code)
    assert.matches("'ownerPid'", err.message)
    _, err = c:call("session/open", { sessionId = "x", bind = "pid", pid = "12" }, 5000)
    assert.equal(-32602, err.code)
    c:close()
  end)

  it("session/close by ownerPid ends every session that process owns; a connection's session opens again as it was", function()
    local d = new_daemon()
    local mcp = connect(d) -- as the agent's bgproc mcp would
    local got = collect(mcp)
    call(mcp, "session/open", { sessionId = "mcp-x", bind = "connection", notify = true, ownerPid = 4242,
                                owner = "MCP client\nclaude 4242" })
    local hook = connect(d)
    call(hook, "session/open", { sessionId = "shell-4242", bind = "none", ownerPid = 4242 })
    local a = create(mcp, "mcp-x", { command = "sleep 300" })
    local b = create(hook, "shell-4242", { command = "sleep 301" })
    local other = create(hook, "elsewhere", { command = "sleep 302" })
    local closed = call(hook, "session/close", { sessionId = "shell-4242", ownerPid = 4242, reason = "Claude Code\tended" })
    table.sort(closed.killed)
    local want = { a.id, b.id }
    table.sort(want)
    assert.same(want, closed.killed)
    local ra = call(hook, "tools/call", { name = "getBackgroundProcess", arguments = { processId = a.id } })
    assert.equal("session ended (Claude Code ended)", ra.endReason) -- control characters are spaces
    assert.equal("running", call(hook, "tools/call", { name = "getBackgroundProcess",
                                                       arguments = { processId = other.id } }).status)
    -- the MCP connection goes on: its next job opens its session as it was, told of again
    local again = create(mcp, "mcp-x", { command = "exit 7" })
    assert(client.pump(function()
      for _, ev in ipairs(events_of(got)) do if ev.processId == again.id then return true end end
    end, 5000), "the reopened session is not told of")
    call(hook, "tools/call", { name = "killProcesses", arguments = { processId = other.id } })
    mcp:close()
    hook:close()
  end)

  it("tools/call with text: true answers the text the model reads and the result", function()
    local d = new_daemon()
    local c = connect(d)
    local r = call(c, "tools/call", { name = "createBackgroundProcess", arguments = { command = "sleep 300", name = "t" },
                                      sessionId = "txt", text = true })
    assert.matches("^started " .. lit(r.result.id) .. " %(pid %d+%): t$", r.text)
    local l = call(c, "tools/call", { name = "listBackgroundProcesses", arguments = { sessionId = "txt" }, text = true })
    assert.matches(lit(r.result.id) .. "  running", l.text)
    local _, err = c:call("tools/call", { name = "createBackgroundProcess", arguments = { command = "x", timeoutMs = "soon" },
                                          text = true }, 5000)
    assert.equal(-32000, err.code)
    assert.matches("timeoutMs", err.message)
    c:close()
  end)

  it("bgproc hook claude: PostToolUse tells what ended, SessionEnd ends the session's jobs, bad input is harmless", function()
    local d = new_daemon()
    local loop = core.new()
    local env = h.env_with(d.env)
    env.PATH = h.root .. "/bin:" .. os.getenv("PATH")
    env.CLAUDECODE = "1"
    -- the "agent": a non-shell process whose hooks and tool run in sh -c
    local script = table.concat({
      "bgproc start --name quick -- sh -c 'echo done-marker; exit 3'",
      "bgproc start --name long -- sleep 300",
      "bgproc start --name killed-here -- sleep 300",
      "bgproc kill $(bgproc --json ls --name killed-here | sed 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/') >/dev/null",
      "bgproc wait quick >/dev/null",
      "until out=$(echo '{\"session_id\":\"abc\",\"hook_event_name\":\"PostToolUse\"}' | bgproc hook claude PostToolUse)"
        .. " && [ -n \"$out\" ]; do :; done; echo \"$out\"",
      "echo '{\"session_id\":\"abc\"}' | bgproc hook claude PostToolUse; echo second-take-done",
      "echo 'not json' | bgproc hook claude UserPromptSubmit; echo bad-input-exit=$?",
      "echo '{\"session_id\":\"abc\",\"reason\":\"exit\"}' | bgproc hook claude SessionEnd; echo end-exit=$?",
    }, "\n")
    local agent = assert(loop:spawn { argv = { "timeout", "60", "sh", "-c", script }, env = env })
    local out = h.finish(loop, agent, 30000)
    loop:close()
    local first = assert(out:match("(%b{})"), out)
    local hook = cjson.decode(first)
    assert.equal("PostToolUse", hook.hookSpecificOutput.hookEventName)
    assert.matches("%(quick%) ended: failed: exited with code 3", hook.hookSpecificOutput.additionalContext)
    assert.matches("done%-marker", hook.hookSpecificOutput.additionalContext)
    -- its own kill is not news to the agent
    assert.is_nil(hook.hookSpecificOutput.additionalContext:find("killed-here", 1, true))
    assert.matches("}\nsecond%-take%-done\n", out) -- nothing new the second time
    assert.matches("bad%-input%-exit=0\n", out)
    assert.matches("end%-exit=0", out)
    local c = connect(d)
    local l = call(c, "tools/call", { name = "listBackgroundProcesses", arguments = { name = "long" } })
    assert.equal("cancelled", l.processes[1].status)
    assert.equal("session ended (Claude Code session ended (exit))", l.processes[1].endReason)
    local k = call(c, "tools/call", { name = "listBackgroundProcesses", arguments = { name = "killed-here" } })
    assert.equal("killed by killProcesses", k.processes[1].endReason)
    c:close()
  end)

  it("bgproc hook never fails the hook: no daemon, an unknown event or agent, a stdin left open", function()
    local d = h.private_daemon()
    local out, code = d.run({ "hook", "claude", "PostToolUse" })
    assert.equal(0, code)
    assert.equal("", out)
    for _, args in ipairs { { "hook", "claude", "Stop" }, { "hook", "codex", "PostToolUse" } } do
      local _, code2, so, err = d.run(args)
      assert.equal(0, code2) -- exit 2 would block Claude Code's turn
      assert.equal("", so)
      assert.matches("nothing to do for", err)
    end
    -- stdin a pipe nobody closes: the hook gives up waiting for it
    local loop = core.new()
    local job = assert(loop:spawn { argv = { h.lua, d.bin, "hook", "claude", "UserPromptSubmit" }, env = d.env,
                                    stdin = "pipe" })
    job:write('{"session_id":"x"}')
    assert(h.pump(loop, function() return not job:alive() end, 10000), "the hook hangs on an open stdin")
    assert.equal(0, (job:exit()))
    loop:close()
    d.stop()
  end)

  it("bgproc mcp sends notifications/message for its session's job ends once a log level is set", function()
    local d = new_daemon()
    local loop = core.new()
    local mcp = assert(loop:spawn { argv = { h.lua, d.bin, "mcp" }, env = d.env, stdin = "pipe" })
    local function send(msg) mcp:write(cjson.encode(msg) .. "\n") end
    send { jsonrpc = "2.0", id = 0, method = "initialize", params = { protocolVersion = "2025-06-18" } }
    send { jsonrpc = "2.0", id = 1, method = "logging/setLevel", params = { level = "bogus" } }
    send { jsonrpc = "2.0", id = 2, method = "logging/setLevel", params = { level = "info" } }
    send { jsonrpc = "2.0", id = 3, method = "tools/call",
           params = { name = "createBackgroundProcess", arguments = { command = "echo last words; exit 4", name = "dying" } } }
    assert(h.pump(loop, function() return mcp:read(0, nil, "stdout"):find("notifications/message", 1, true) ~= nil end,
      10000), mcp:read(0))
    local init, bad, msg
    for line in mcp:read(0, nil, "stdout"):gmatch("[^\n]+") do
      local m = cjson.decode(line)
      if m.id == 0 then init = m end
      if m.id == 1 then bad = m end
      if m.method == "notifications/message" then msg = m end
    end
    assert.is_table(init.result.capabilities.logging)
    assert.equal(-32602, bad.error.code)
    assert.equal("warning", msg.params.level)
    assert.equal("bgproc", msg.params.logger)
    assert.matches("%(dying%) ended: failed: exited with code 4\nlast lines:\n  | last words", msg.params.data)
    mcp:close_stdin()
    assert(h.pump(loop, function() return not mcp:alive() end, 5000))
    loop:close()
  end)
end)

describe("waitForBackgroundProcess over several jobs", function()
  local m
  before_each(function() m = h.manager() end)
  after_each(h.cleanup)

  it("mode all waits for every job, any for the first; tags select too", function()
    local quick = h.ok(m, "createBackgroundProcess", { command = "exit 0", tags = { "build" } })
    local slow = h.ok(m, "createBackgroundProcess", { command = "sleep 300", tags = { "build" } })
    local any = h.ok(m, "waitForBackgroundProcess", { tags = { "build" }, mode = "any", timeoutMs = 5000 })
    assert.is_false(any.timedOut)
    assert.same({ quick.id }, any.done)
    assert.same({ slow.id }, any.pending)
    local all = h.ok(m, "waitForBackgroundProcess", { processIds = { quick.id, slow.id }, timeoutMs = 200 })
    assert.is_true(all.timedOut)
    assert.equal("all", all.mode)
    assert.same({ slow.id }, all.pending)
    h.ok(m, "killProcesses", { processId = slow.id })
    all = h.ok(m, "waitForBackgroundProcess", { processIds = { quick.id, slow.id } })
    assert.is_false(all.timedOut)
    assert.equal(2, #all.done)
    assert.matches("^2 of 2 done %(mode all%)", require("bgproc.tools").summary("waitForBackgroundProcess", all))
  end)

  it("waits for output on several jobs", function()
    local a = h.ok(m, "createBackgroundProcess", { command = "echo alpha ok; sleep 300" })
    local b = h.ok(m, "createBackgroundProcess", { command = "echo beta ok; sleep 300" })
    local r = h.ok(m, "waitForBackgroundProcess", { processIds = { a.id, b.id }, ["until"] = "output", pattern = "ok$" })
    assert.equal(2, #r.done)
    assert.equal("alpha ok", r.processes[1].line)
    assert.equal("beta ok", r.processes[2].line)
  end)

  it("bad selections are clear errors", function()
    local a = h.ok(m, "createBackgroundProcess", { command = "sleep 300" })
    local err = h.fails(m, "not_found", "waitForBackgroundProcess", { processIds = { a.id, "nope-1" } })
    assert.matches("'processIds': no process 'nope%-1'", err)
    err = h.fails(m, "invalid_argument", "waitForBackgroundProcess", { processId = a.id, processIds = { a.id } })
    assert.matches("not both", err)
    err = h.fails(m, "invalid_argument", "waitForBackgroundProcess", { processId = a.id, mode = "any" })
    assert.matches("'mode'", err)
    err = h.fails(m, "invalid_argument", "waitForBackgroundProcess", { processIds = { a.id }, mode = "some" })
    assert.matches("mode", err)
    h.fails(m, "not_found", "waitForBackgroundProcess", { tags = { "none-such" } })
    -- an empty list selects nothing, not every job
    assert.matches("'tags' must name at least one tag",
      h.fails(m, "invalid_argument", "waitForBackgroundProcess", { tags = {}, mode = "any" }))
    assert.matches("'since'", h.fails(m, "invalid_argument", "waitForBackgroundProcess",
      { processIds = { a.id }, since = 0 }))
  end)
end)
