-- The command line's grammar (argparse): bgproc's flags, its subcommands
-- and theirs, with their help texts. The flags of a command that calls a
-- tool are the tool's own (cli/flags.lua).
local argparse = require "argparse"
local flags = require "bgproc.cli.flags"

local parser = {}

local integer = flags.integer

-- The positional of the commands on one job: its id, or its name (the
-- daemon looks a name up: the caller's running job of that name, else the
-- newest). Parsed as `id`.
local function job_argument(cmd, help)
  return cmd:argument("ID|NAME", help or "The job: its id, or its name."):target("id")
end

local function global_flags(p)
  p:flag("--json", "Print results as JSON.")
  p:option("--socket", "Daemon socket (default: $BGPROC_SOCKET, $XDG_RUNTIME_DIR/bgproc/daemon.sock).")
  p:flag("-v --version", "Print the version and exit.")
end

local function start_command(p)
  local start = p:command("start", "Start a command in the background.")
  start:usage("Usage: bgproc start [options] -- COMMAND [ARGS...]\n       bgproc start [options] 'shell command string'")
  flags.add(start, "createBackgroundProcess")
  start:argument("command", "The command: words become an argv; one quoted string runs in a shell."):args("+")
end

local function list_command(p)
  local list = p:command("list ls", "List background processes.")
  flags.add(list, "listBackgroundProcesses")
end

local function show_command(p)
  local show = p:command("show", "Show one process: its record and last lines.")
  job_argument(show)
  show:option("-n --lines", "Lines of output.", "20", integer("--lines"))
end

local function logs_command(p)
  local logs = p:command("logs", "Print a process's output.")
    :epilog("Output is printed as lines: one the job left open at its end gets its newline (not with "
      .. "--raw into a pipe or a file). Exit 0; with --grep, 1 when no line matched (with -f: by the end).")
  job_argument(logs)
  logs:option("-n", "Last N lines.", "100", integer("-n"))
  logs:flag("-f --follow", "Keep printing new output until the job ends.")
  logs:option("--since", "Only output after this cursor.", nil, integer("--since")):argname("<cursor>")
  logs:option("--grep", "Only lines matching this regex (none: exit 1)."):argname("<re>")
  logs:mutex(logs:flag("--stderr", "Only stderr."), logs:flag("--stdout", "Only stdout."))
  logs:flag("--raw", "The bytes as the job wrote them: ANSI colour codes, carriage returns.")
end

local function kill_command(p)
  local kill = p:command("kill", "Stop processes and everything they started.")
    :epilog("The whole process group gets the signal; what is alive after the grace gets KILL. "
      .. "Processes that left the group (setsid) are listed as escaped: killed through the job's "
      .. "cgroup v2 leaf where the machine gives one (`bgproc daemon status` says), else left running.")
  job_argument(kill):args("?")
  flags.add(kill, "killProcesses")
end

local function wait_command(p)
  local wait = p:command("wait", "Wait for a process (or several) to exit, print a line, or become ready.")
    :epilog("Several IDs, or --tag, wait for every one of them (--any: the first). Exit 0 when met "
      .. "(each job completed or matched), 1 when a job ended otherwise, 124 on timeout.")
  job_argument(wait, "The job: its id, or its name (several: wait for all, or --any)."):args("*")
  flags.add(wait, "waitForBackgroundProcess")
end

local function send_command(p)
  local send = p:command("send", "Write text to a process's stdin.")
    :epilog("The text goes as given: 'alice\\n' is alice, a backslash and an n. --line adds a newline; "
      .. "-e reads " .. require("bgproc.cli.commands").ESCAPES .. ", as echo -e does.")
  job_argument(send)
  send:argument("text", "Text to send, as given (see --line, -e).")
  send:flag("--line", "Add a newline after the text (as Enter does).")
  send:flag("-e --escapes", "Read backslash escapes in the text (as echo -e).")
  flags.add(send, "sendBackgroundProcessInput")
end

local function restart_command(p)
  local restart = p:command("restart", "Stop a process (its whole group) and start it again, same id.")
    :epilog("The same command, name, tags, cwd and env; a new pid. A finished or killed job starts again too.")
  job_argument(restart)
  flags.add(restart, "restartBackgroundProcess")
end

local function rm_command(p)
  local rm = p:command("rm", "Remove finished processes: their records and output.")
    :epilog("A job still running is left alone (stop it first with kill): exit 1.")
  job_argument(rm, "The jobs: ids or names."):args("+")
end

local function prune_command(p)
  local prune = p:command("prune", "Remove finished processes, all of them or those selected.")
    :epilog("With no flag, every finished job goes; running jobs are never touched.")
  flags.add(prune, "removeBackgroundProcesses")
end

local function grep_command(p)
  local g = p:command("grep", "Search the output of processes (running, finished, earlier) for a regex.")
    :epilog("Prints ID:LINE: TEXT for each matching line (context: ID:LINE- TEXT), newest job first; line "
      .. "numbers count from the first line still kept. Exit 0 when a line matched, 1 when none did, 2 on an error "
      .. "(as grep).")
  g:argument("PATTERN", "Regular expression (PCRE2, or /re/flags with i, m, s, x)."):target("pattern")
  flags.add(g, "searchBackgroundOutput")
end

local function rerun_command(p)
  local r = p:command("rerun", "Start an earlier job's command again, as a new job.")
    :epilog("Its command, name, tags, cwd, global and options, and the env it was given (--env); the rest "
      .. "of the environment is this shell's. Also for jobs from before the daemon restarted.")
  job_argument(r)
end

local function daemon_command(p)
  local d = p:command("daemon", "Start, stop or inspect the per-user daemon.")
  d:argument("action", "start, stop, status, or run (in the foreground).")
    :choices { "start", "stop", "status", "run" }
  d:flag("--quiet-if-running", "With run: exit 0 quietly if a daemon already runs.")
  d:flag("--verbose", "With run: also log to stderr.")
end

local function hook_command(p)
  local hook = p:command("hook", "Run as an agent's hook (Claude Code: see the README).")
    :epilog("bgproc hook claude SessionEnd ends the jobs of that Claude Code session (its Bash tool's and its bgproc mcp's); UserPromptSubmit and "
      .. "PostToolUse print hook JSON whose additionalContext tells the model what ended or became ready "
      .. "since its last turn. The hook's JSON comes on stdin. Never fails the hook: exits 0.")
  hook:argument("agent", "The agent: claude.")
  hook:argument("event", "The hook event: SessionEnd, UserPromptSubmit or PostToolUse (others: nothing is done).")
end

local function mcp_command(p)
  local m = p:command("mcp", "Serve the tools over MCP on stdin/stdout.")
  m:flag("--standalone", "Run an engine in this process instead of using the daemon.")
end

-- --interval of top: seconds, from 0.5 to 60 (the error names the flag).
local function interval(s)
  local n = tonumber(s)
  if n and n >= 0.5 and n <= 60 then return n end
  return nil, ("--interval: expected seconds from 0.5 to 60, got '%s'"):format(s)
end

local function top_command(p)
  local t = p:command("top", "A live full-screen view of the jobs: CPU, memory, ports, last line.")
    :epilog("Keys: q quit, arrows/PgUp/PgDn/Home/End select, k kill, r restart, l logs, / filter (Enter "
      .. "applies, Esc cancels), s sort. NO_COLOR turns colours off. Without a terminal, use --once.")
  t:option("--interval", "Seconds between refreshes (0.5 to 60).", "1", interval):argname("<s>")
  t:option("--sort", "Sort by this first.", "cpu"):choices(require("bgproc.cli.top.jobs").SORTS)
  t:option("--filter", "Only jobs whose name, id or a tag contains this."):argname("<text>")
  t:flag("--once", "Print one plain frame and exit (no terminal needed).")
end

-- `version` and `help`
local function help_command(p)
  p:command("version", "Print the version.")
  local h = p:command("help", "Show help for a command.")
  h:argument("topic", "A command."):args("?")
end

-- A new parser; the subcommand's name lands in `cmd` of the parsed args.
function parser.build()
  local p = argparse("bgproc", "Run, watch and stop background processes.")
    :epilog("Jobs run in a per-user daemon, started on demand. `bgproc mcp` serves the same tools to AI agents over MCP."
      .. "\n\nExit codes: 0 ok; 1 the operation failed (no such job, a conflict with its state, a program "
      .. "that cannot start, a job that failed for `wait`, no line matched for `logs --grep`); 2 usage: "
      .. "a flag or value the command cannot take, a bad regex (the message names the flag); 124 `wait` "
      .. "timed out; 130 interrupted (Ctrl-C).")
    :require_command(false)
    :command_target("cmd")
  for _, add in ipairs { global_flags, start_command, list_command, show_command, logs_command, kill_command,
                         wait_command, send_command, restart_command, rm_command, prune_command, grep_command,
                         rerun_command, top_command,
                         daemon_command, hook_command, mcp_command, help_command } do
    add(p)
  end
  return p
end

-- The subcommand named `name` (or an alias of it), or nil.
function parser.find_command(p, name)
  for _, cmd in ipairs(p._commands) do
    for _, alias in ipairs(cmd._aliases) do
      if alias == name then return cmd end
    end
  end
end

-- What a user types for each parsed key of subcommand `name`: its
-- option's long form ("--grep"), its positional's name ("ID|NAME").
function parser.words(p, name)
  local cmd, words = parser.find_command(p, name), {}
  for _, o in ipairs(cmd and cmd._options or {}) do
    words[o._target or o:_get_default_target()] = o._aliases[#o._aliases]
  end
  for _, arg in ipairs(cmd and cmd._arguments or {}) do
    words[arg._target or arg:_get_default_target()] = arg._name
  end
  return words
end

-- The usage text of a subcommand (by name or alias), or of bgproc.
function parser.usage(p, sub)
  return (parser.find_command(p, sub) or p):get_usage()
end

return parser
