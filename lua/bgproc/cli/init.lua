-- The `bgproc` command line. Every subcommand is a tool call to the
-- per-user daemon (started on demand); --json prints the tool's result.
--
-- Exit codes: 0 ok, 1 failure, 2 usage, 124 when `wait` times out.
local argparse = require "argparse"
local uv = require "luv"
local filter = require "bgproc.engine.select"
local json = require "bgproc.lib.json"

local cli = {}

local EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 124

-- ---- output -------------------------------------------------------------------

local function isatty(fd) return uv.guess_handle(fd) == "tty" end

local color_ok = isatty(1) and (os.getenv("NO_COLOR") or "") == ""
local COLORS = { running = "32", completed = "90", failed = "31", cancelled = "33", pending = "36" }
local function paint(code, s)
  if not color_ok or not code then return s end
  return "\27[" .. code .. "m" .. s .. "\27[0m"
end

local function out(...) io.stdout:write(...) end

local function fail(msg, code)
  io.stderr:write("bgproc: ", msg, "\n")
  return code or EXIT_FAIL
end

local function age(iso)
  if not iso then return "-" end
  local y, mo, d, h, mi, s = iso:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
  if not y then return "-" end
  local t = os.time { year = y, month = mo, day = d, hour = h, min = mi, sec = s, isdst = false }
  local now = os.time(os.date("!*t"))
  local secs = math.max(0, now - t)
  if secs < 60 then return secs .. "s" end
  if secs < 3600 then return secs // 60 .. "m" end
  if secs < 86400 then return secs // 3600 .. "h" end
  return secs // 86400 .. "d"
end

local function width(s) return utf8.len(s) or #s end

local function clip(s, n)
  if width(s) <= n then return s end
  if n <= 1 then return "…" end
  return s:sub(1, (utf8.offset(s, n) or n) - 1) .. "…"
end

local function term_columns()
  if not isatty(1) then return nil end
  local tty = uv.new_tty(1, false)
  local w = tty and tty:get_winsize()
  if tty then tty:close() end
  return w
end

-- "cancelled: session ended (shell 4321 exited)"; a running job's status.
local function status_text(r)
  if not r.endReason or r.endReason == r.status or r.status == "completed" and r.exitCode == 0
      and not r.stopReason then
    return r.status
  end
  return r.status .. ": " .. r.endReason
end

local function print_table(procs)
  local rows = { { "ID", "NAME", "STATUS", "PID", "AGE", "TAGS", "LAST LINE" } }
  for _, p in ipairs(procs) do
    rows[#rows + 1] = { p.id, clip(p.name, 30), clip(status_text(p), 48), p.pid and ("%d"):format(p.pid) or "-",
                        age(p.startedAt), table.concat(p.tags or {}, ","), p.lastLine or "" }
  end
  local widths = {}
  for _, row in ipairs(rows) do
    for i = 1, 6 do widths[i] = math.max(widths[i] or 0, width(row[i])) end
  end
  local cols = term_columns()
  for r, row in ipairs(rows) do
    local parts = {}
    local used = 0
    for i = 1, 6 do
      local cell = row[i] .. (" "):rep(widths[i] - width(row[i]))
      if i == 3 and r > 1 then cell = paint(COLORS[row[3]:match("^%a+")], cell) end
      parts[i] = cell
      used = used + widths[i] + 2
    end
    local last = row[7]
    if cols then last = clip(last, math.max(10, cols - used)) else last = clip(last, 80) end
    parts[7] = r == 1 and last or paint("2", last)
    out(table.concat(parts, "  "), "\n")
  end
end

local function print_record(r)
  local lines = {
    { "id", r.id }, { "name", r.name }, { "status", paint(COLORS[r.status], status_text(r)) },
    { "pid", r.pid }, { "command", r.command or (r.argv and table.concat(r.argv, " ")) },
    { "cwd", r.cwd }, { "session", r.sessionId .. (r.global and " (global)" or "") },
    { "tags", #r.tags > 0 and table.concat(r.tags, ", ") or nil },
    { "started", r.startedAt }, { "ended", r.endedAt },
    { "exit code", r.exitCode }, { "signal", r.signal }, { "error", r.error },
    { "output", ("%d bytes (%d dropped)"):format(r.outputBytes or 0, r.droppedBytes or 0) },
    { "ready", r.ready ~= nil and tostring(r.ready) or nil },
    { "restarts", r.restarts },
  }
  for k, v in pairs(r.notes or {}) do lines[#lines + 1] = { k, tostring(v) } end
  for _, l in ipairs(lines) do
    if l[2] ~= nil then out(("%-10s %s\n"):format(l[1], tostring(l[2]))) end
  end
end

-- ---- talking to the daemon ---------------------------------------------------------

-- Ctrl-C ends the command at once, exit status 130, without a traceback;
-- what the daemon was asked to do (a kill) goes on there.
local function on_interrupt()
  local s = uv.new_signal()
  s:start("sigint", function()
    io.stderr:write("\n")
    os.exit(130)
  end)
  s:unref()
end

local function connect(args)
  on_interrupt()
  return require("bgproc.client").connect { socket = args.socket }
end

-- The session of CLI jobs: the owner's (see owner.lua: a terminal's
-- shell, an agent), ending when it exits, or the one BGPROC_SESSION names.
-- Returns the session/open params.
local function own_session()
  local named = os.getenv("BGPROC_SESSION")
  if named and named ~= "" then return { sessionId = named, bind = "none" } end
  local owner = require "bgproc.owner"
  local who = owner.find(math.tointeger(uv.os_getppid()))
  return { sessionId = owner.session_id(who.pid), bind = "pid", pid = who.pid, owner = who.description }
end

local function open_session(c)
  local params = own_session()
  local res, err = c:call("session/open", params, 10000)
  if not res then return nil, err.message end
  return res.sessionId
end

-- Call a tool: result (normalized by the client), or nil and an exit code
-- (the error printed).
local function tool(c, name, arguments, sid)
  local res, err = c:call("tools/call", { name = name, arguments = arguments, sessionId = sid })
  if res then return res end
  local code = err.data and err.data.code
  return nil, fail(code and ("%s: %s"):format(code, err.message) or err.message)
end

-- The tool's own one-line text for a result (as MCP clients see it).
local function summary(name, r)
  return require("bgproc.tools").summary(name, r)
end

-- ---- subcommands ---------------------------------------------------------------------

local commands = {}
local usage_of -- defined with the parser

-- Usage checks that argparse cannot make, before anything is started.
local checks = {}

function checks.start(a)
  for _, kv in ipairs(a.env) do
    if not kv:find("^[^=]+=") then return ("--env: expected NAME=VALUE, got '%s'"):format(kv) end
  end
end

function commands.start(a, c)
  local words = a.command
  local env = {}
  for _, kv in ipairs(a.env) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    env[k] = v
  end
  local args = {
    name = a.name, tags = #a.tag > 0 and a.tag or nil, global = a.global or nil,
    cwd = a.cwd, env = env, pty = a.pty or nil, stdin = a.stdin and "pipe" or nil,
    timeoutMs = a.timeout, readyPattern = a.ready, outputBytes = a.output_bytes,
    notifyPattern = a.notify,
  }
  if #words == 1 then args.command = words[1] else args.argv = words end
  -- the job gets this shell's directory and environment (and --env), not the daemon's
  args = require("bgproc.client").localize_create(args)
  local sid, serr = open_session(c)
  if not sid then return fail(serr) end
  local r, code = tool(c, "createBackgroundProcess", args, sid)
  if not r then return code end
  if a.json then out(json.encode(r), "\n") else out(summary("createBackgroundProcess", r), "\n") end
  return EXIT_OK
end

function commands.list(a, c)
  local r, code = tool(c, "listBackgroundProcesses", {
    sessionId = a.session, status = #a.status > 0 and a.status or nil,
    tags = #a.tag > 0 and a.tag or nil, allTags = #a.all_tags > 0 and a.all_tags or nil,
    name = a.name, global = a.global or nil, limit = a.limit,
  })
  if not r then return code end
  if a.json then out(json.encode(r), "\n")
  elseif r.count == 0 then out("no background processes\n")
  else print_table(r.processes) end
  return EXIT_OK
end

function commands.show(a, c)
  local r, code = tool(c, "getBackgroundProcess", { processId = a.id, lines = a.lines })
  if not r then return code end
  if a.json then out(json.encode(r), "\n") return EXIT_OK end
  print_record(r)
  if r.output ~= "" then out("\n", r.output, r.output:sub(-1) == "\n" and "" or "\n") end
  return EXIT_OK
end

local function stream_of(a)
  return a.stderr and "stderr" or a.stdout and "stdout" or nil
end

function commands.logs(a, c)
  -- the arguments of each read: these, and where it starts
  local function read_args(since, lines)
    return { processId = a.id, filter = a.grep, stream = stream_of(a), stripAnsi = not a.raw or nil,
             since = since, lines = lines }
  end
  local r, code = tool(c, "getBackgroundProcess", read_args(a.since, not a.since and a.n or nil))
  if not r then return code end
  if a.json and not a.follow then out(json.encode(r), "\n") return EXIT_OK end
  local function emit(res)
    if a.json then out(json.encode(res), "\n") else out(res.output) end
    io.stdout:flush()
  end
  emit(r)
  if not a.follow then return EXIT_OK end
  local cursor = r.cursor
  while true do
    local w, wcode = tool(c, "waitForBackgroundProcess",
      { processId = a.id, ["until"] = "output", pattern = "^", since = cursor, timeoutMs = 2000 })
    if not w then return wcode end
    local g, gcode = tool(c, "getBackgroundProcess", read_args(cursor))
    if not g then return gcode end
    if g.output ~= "" then emit(g) end
    cursor = g.cursor
    if filter.FINAL[g.status] and not w.timedOut and g.output == "" and not g.truncated then return EXIT_OK end
  end
end

function commands.kill(a, c)
  if not a.id and #a.tag == 0 and not a.session and #a.status == 0 and not a.all then
    return fail("kill: give an ID, --tag, --session, --status or --all", EXIT_USAGE)
  end
  -- the caller's session asks: its owner is not told of a kill it made
  local r, code = tool(c, "killProcesses", {
    processId = a.id, tags = #a.tag > 0 and a.tag or nil, sessionId = a.session,
    status = #a.status > 0 and a.status or nil, all = a.all or nil,
    signal = a.signal and (tonumber(a.signal) or a.signal), graceMs = a.grace,
  }, own_session().sessionId)
  if not r then return code end
  if a.json then out(json.encode(r), "\n") return #r.errors > 0 and EXIT_FAIL or EXIT_OK end
  if #r.killed > 0 then out(("killed %s\n"):format(table.concat(r.killed, " "))) end
  if #r.alreadyFinished > 0 then out(("already finished %s\n"):format(table.concat(r.alreadyFinished, " "))) end
  if #r.killed == 0 and #r.alreadyFinished == 0 then out("nothing matched\n") end
  for _, e in ipairs(r.escaped or {}) do
    out(("escaped %s: pid %d (%s) %s\n"):format(e.processId, e.pid, e.command,
      e.killed and "killed" or "left running"))
  end
  for _, e in ipairs(r.errors) do io.stderr:write(("bgproc: %s: %s\n"):format(e.processId, e.message)) end
  return #r.errors > 0 and EXIT_FAIL or EXIT_OK
end

function checks.wait(a)
  if #a.id == 0 and #a.tag == 0 then return "wait: give an ID (or several), or --tag" end
  if a.any and #a.id < 2 and #a.tag == 0 then return "wait: --any is for several jobs (IDs or --tag)" end
end

-- Several jobs: one line each, exit 0 when the wait was met (each job, or
-- one with --any, completed or matched), 1 when not, 124 on timeout.
local function wait_several(a, r)
  if a.json then out(json.encode(r), "\n") else out(summary("waitForBackgroundProcess", r), "\n") end
  if r.timedOut then return EXIT_TIMEOUT end
  local good = 0
  for _, p in ipairs(r.processes) do
    local ok = p.done and (p.matched == true or (p.matched == nil and p.status == "completed"))
    if ok then good = good + 1 end
  end
  if a.any then return good > 0 and EXIT_OK or EXIT_FAIL end
  return good == #r.processes and EXIT_OK or EXIT_FAIL
end

function commands.wait(a, c)
  local several = #a.id > 1 or #a.tag > 0
  local args = { timeoutMs = a.timeout }
  if several then
    args.processIds = #a.id > 0 and a.id or nil
    args.tags = #a.tag > 0 and a.tag or nil
    args.mode = a.any and "any" or nil
  else
    args.processId = a.id[1]
  end
  if a["for"] then args["until"], args.pattern = "output", a["for"]
  elseif a.ready then args["until"] = "ready" end
  local r, code = tool(c, "waitForBackgroundProcess", args)
  if not r then return code end
  if several then return wait_several(a, r) end
  if a.json then out(json.encode(r), "\n")
  elseif r.timedOut then out(("%s: still %s after %d ms\n"):format(r.id, r.status, a.timeout))
  elseif r.matched then out(r.line, "\n") -- just the line, for scripts
  else out(summary("waitForBackgroundProcess", r), "\n") end
  if r.timedOut then return EXIT_TIMEOUT end
  if r.matched ~= nil then return r.matched and EXIT_OK or EXIT_FAIL end
  return r.status == "completed" and EXIT_OK or EXIT_FAIL
end

function commands.send(a, c)
  local r, code = tool(c, "sendBackgroundProcessInput", { processId = a.id, input = a.text, eof = a.eof or nil })
  if not r then return code end
  if a.json then out(json.encode(r), "\n") else out(summary("sendBackgroundProcessInput", r), "\n") end
  return EXIT_OK
end

local function daemon_command(a)
  local paths = require "bgproc.lib.paths"
  local client = require "bgproc.client"
  local socket = a.socket or paths.socket()
  local action = a.action
  if action == "run" then
    return require("bgproc.daemon").run { socket = socket, quiet_if_running = a.quiet_if_running,
                                          verbose = a.verbose }
  end
  local c = client.connect { socket = socket, autostart = false }
  if action == "status" then
    if not c then
      if a.json then out(json.encode { running = false, socket = socket }, "\n") else out("not running (", socket, ")\n") end
      return EXIT_FAIL
    end
    local s, err = c:call("daemon/status", {}, 5000)
    c:close()
    if not s then return fail(err.message) end
    s.running = true
    if a.json then out(json.encode(s), "\n") else
      out(("running: pid %d, %d jobs (%d running), %d sessions, %d clients, up %ds\nsocket: %s\n")
        :format(s.pid, s.jobs, s.jobsRunning, s.sessions, s.clients,
          s.uptimeMs // 1000, s.socket))
      if s.cgroup then out("cgroup: ", s.cgroup, " (processes that leave a job's group die with it)\n")
      elseif s.cgroupWhy then out("cgroup: none, ", s.cgroupWhy, " (escaped processes are reported, left running)\n") end
    end
    return EXIT_OK
  elseif action == "start" then
    local already = c ~= nil
    if not c then
      c = client.connect { socket = socket }
      if not c then return fail("the daemon did not start (see " .. paths.log() .. ")") end
    end
    local s = c:call("daemon/status", {}, 5000) or {}
    c:close()
    local pid = s.pid or -1
    if a.json then
      out(json.encode { running = true, started = not already, pid = pid, socket = socket }, "\n")
    elseif already then
      out(("already running: pid %d, socket %s\n"):format(pid, socket))
    else
      out(("started: pid %d, socket %s\n"):format(pid, socket))
    end
    return EXIT_OK
  elseif action == "stop" then
    if not c then
      if a.json then out(json.encode { running = false, stopped = false, socket = socket }, "\n") else out("not running\n") end
      return EXIT_OK
    end
    local pid = (c:call("daemon/status", {}, 5000) or {}).pid
    c:call("daemon/stop", {}, 5000)
    c:close()
    -- gone when its socket no longer answers
    client.pump(function()
      local probe = client.connect { socket = socket, autostart = false }
      if probe then probe:close() return false end
      return true
    end, 30000)
    if a.json then out(json.encode { running = false, stopped = true, pid = pid, socket = socket }, "\n")
    else out(("stopped%s\n"):format(pid and (" (pid %d)"):format(pid) or "")) end
    return EXIT_OK
  end
  return fail("daemon: unknown action " .. tostring(action), EXIT_USAGE)
end

-- ---- the parser -------------------------------------------------------------------------

-- A converter for an integer flag whose error names the flag.
local function integer(flag)
  return function(s)
    local n = math.tointeger(tonumber(s))
    if n then return n end
    return nil, ("%s: expected a whole number, got '%s'"):format(flag, s)
  end
end

local STATUSES = filter.STATUSES

local function build_parser()
  local p = argparse("bgproc", "Run, watch and stop background processes.")
    :epilog("Jobs run in a per-user daemon, started on demand. `bgproc mcp` serves the same tools to AI agents over MCP.")
    :require_command(false)
    :command_target("cmd")
  p:flag("--json", "Print results as JSON.")
  p:option("--socket", "Daemon socket (default: $BGPROC_SOCKET, $XDG_RUNTIME_DIR/bgproc/daemon.sock).")
  p:flag("-v --version", "Print the version and exit.")

  local start = p:command("start", "Start a command in the background.")
  start:usage("Usage: bgproc start [options] -- COMMAND [ARGS...]\n       bgproc start [options] 'shell command string'")
  start:option("--name", "A descriptive name.")
  start:option("--tag", "A tag (repeatable)."):count("*"):init({})
  start:flag("--global", "Outlive the owner's session (the terminal's shell, the agent): until killed.")
  start:option("--cwd", "Working directory (default: the current one).")
  start:option("--env", "NAME=VALUE added to the environment (repeatable)."):count("*"):init({})
  start:flag("--pty", "Run on a pseudo-terminal.")
  start:flag("--stdin", "Keep stdin open as a pipe (see `bgproc send`).")
  start:option("--timeout", "Stop it after MS milliseconds.", nil, integer("--timeout")):argname("<ms>")
  start:option("--ready", "Regex: the first matching line marks it ready."):argname("<re>")
  start:option("--notify", "Regex: a matching line is told to the session's owner (an agent's notices)."):argname("<re>")
  start:option("--output-bytes", "Output kept in memory.", nil, integer("--output-bytes")):argname("<n>")
  start:argument("command", "The command: words become an argv; one quoted string runs in a shell."):args("+")

  local list = p:command("list ls", "List background processes.")
  list:option("--session", "Only this session's.")
  list:option("--status", "Only this status (repeatable)."):count("*"):init({}):choices(STATUSES)
  list:option("--tag", "With any of these tags (repeatable)."):count("*"):init({})
  list:option("--all-tags", "With all of these tags (repeatable)."):count("*"):init({})
  list:option("--name", "Name contains this.")
  list:flag("--global", "Only global ones.")
  list:option("--limit", "At most N (the newest).", nil, integer("--limit")):argname("<n>")

  local show = p:command("show", "Show one process: its record and last lines.")
  show:argument("id", "Process id.")
  show:option("-n --lines", "Lines of output.", "20", integer("--lines"))

  local logs = p:command("logs", "Print a process's output.")
  logs:argument("id", "Process id.")
  logs:option("-n", "Last N lines.", "100", integer("-n"))
  logs:flag("-f --follow", "Keep printing new output until the job ends.")
  logs:option("--since", "Only output after this cursor.", nil, integer("--since")):argname("<cursor>")
  logs:option("--grep", "Only lines matching this regex."):argname("<re>")
  logs:mutex(logs:flag("--stderr", "Only stderr."), logs:flag("--stdout", "Only stdout."))
  logs:flag("--raw", "Keep ANSI colour codes and carriage returns.")

  local kill = p:command("kill", "Stop processes and everything they started.")
    :epilog("The whole process group gets the signal; what is alive after the grace gets KILL. "
      .. "Processes that left the group (setsid) are listed as escaped: killed through the job's "
      .. "cgroup v2 leaf where the machine gives one (`bgproc daemon status` says), else left running.")
  kill:argument("id", "Process id."):args("?")
  kill:option("--tag", "With any of these tags (repeatable)."):count("*"):init({})
  kill:option("--session", "Of this session.")
  kill:option("--status", "With this status (repeatable)."):count("*"):init({}):choices(STATUSES)
  kill:flag("--all", "Every job.")
  kill:option("--signal", "Signal to send first (default TERM).")
  kill:option("--grace", "Milliseconds before KILL (default 3000).", nil, integer("--grace")):argname("<ms>")

  local wait = p:command("wait", "Wait for a process (or several) to exit, print a line, or become ready.")
    :epilog("Several IDs, or --tag, wait for every one of them (--any: the first). Exit 0 when met "
      .. "(each job completed or matched), 1 when a job ended otherwise, 124 on timeout.")
  wait:argument("id", "Process id (several: wait for all, or --any)."):args("*")
  wait:option("--tag", "Also the jobs with any of these tags (repeatable)."):count("*"):init({})
  wait:flag("--any", "With several jobs: until the first one is done.")
  wait:mutex(wait:option("--for", "Regex: wait for a matching output line."):argname("<re>"),
             wait:flag("--ready", "Wait for its --ready pattern."))
  wait:option("--timeout", "Give up after MS milliseconds (exit code 124).", "30000", integer("--timeout")):argname("<ms>")

  local send = p:command("send", "Write text to a process's stdin.")
  send:argument("id", "Process id.")
  send:argument("text", "Text to send (add \\n yourself for a newline).")
  send:flag("--eof", "Close stdin afterwards.")

  local d = p:command("daemon", "Start, stop or inspect the per-user daemon.")
  d:argument("action", "start, stop, status, or run (in the foreground).")
    :choices { "start", "stop", "status", "run" }
  d:flag("--quiet-if-running", "With run: exit 0 quietly if a daemon already runs.")
  d:flag("--verbose", "With run: also log to stderr.")

  local hook = p:command("hook", "Run as an agent's hook (Claude Code: see the README).")
    :epilog("bgproc hook claude SessionEnd ends the jobs of that Claude Code session (its Bash tool's and its bgproc mcp's); UserPromptSubmit and "
      .. "PostToolUse print hook JSON whose additionalContext tells the model what ended or became ready "
      .. "since its last turn. The hook's JSON comes on stdin. Never fails the hook: exits 0.")
  hook:argument("agent", "The agent: claude.")
  hook:argument("event", "The hook event: SessionEnd, UserPromptSubmit or PostToolUse (others: nothing is done).")

  local m = p:command("mcp", "Serve the tools over MCP on stdin/stdout.")
  m:flag("--standalone", "Run an engine in this process instead of using the daemon.")

  p:command("version", "Print the version.")
  local help = p:command("help", "Show help for a command.")
  help:argument("topic", "A command."):args("?")
  return p
end

-- The subcommand named `name` (or an alias of it), or nil.
local function find_command(parser, name)
  for _, cmd in ipairs(parser._commands) do
    for _, alias in ipairs(cmd._aliases) do
      if alias == name then return cmd end
    end
  end
end

-- The usage text of a subcommand (by name or alias), or of bgproc.
usage_of = function(parser, sub)
  return (find_command(parser, sub) or parser):get_usage()
end

-- Run the CLI with a list of arguments; returns the exit code.
function cli.main(argv)
  local parser = build_parser()
  local ok, a = parser:pparse(argv)
  if not ok then
    local sub
    for _, w in ipairs(argv) do
      if not w:find("^%-") then sub = w break end
    end
    io.stderr:write(usage_of(parser, sub), "\n\nbgproc: error: ", a, "\n")
    return EXIT_USAGE
  end
  if a.version or a.cmd == "version" then
    local v = require("bgproc").version
    if a.json then out(json.encode { version = v }, "\n") else out("bgproc ", v, "\n") end
    return EXIT_OK
  end
  if a.cmd == nil or a.cmd == "help" then
    local topic = a.topic
    if topic then
      local cmd = find_command(parser, topic)
      if not cmd then return fail("help: no command " .. topic, EXIT_USAGE) end
      out(cmd:get_help(), "\n")
      return EXIT_OK
    end
    out(parser:get_help(), "\n")
    return EXIT_OK
  end
  if a.cmd == "daemon" then return daemon_command(a) end
  if a.cmd == "hook" then
    -- never fails the hook (exit 2 would block the agent's turn)
    local ok, printed = pcall(require("bgproc.cli.hooks").run, a.agent, a.event,
      math.tointeger(uv.os_getppid()), function()
        return require("bgproc.client").connect { socket = a.socket, autostart = false }
      end)
    if ok and printed ~= "" then out(printed, "\n") end
    if not ok then io.stderr:write("bgproc hook: ", tostring(printed), "\n") end
    return EXIT_OK
  end
  if a.cmd == "mcp" then
    return require("bgproc.mcp").run { standalone = a.standalone, socket = a.socket }
  end
  local name = a.cmd == "ls" and "list" or a.cmd
  local problem = checks[name] and checks[name](a)
  if problem then
    io.stderr:write(usage_of(parser, a.cmd), "\n\nbgproc: error: ", problem, "\n")
    return EXIT_USAGE
  end
  local c, err = connect(a)
  if not c then return fail(err) end
  local code = commands[name](a, c)
  c:close()
  return code
end

return cli
