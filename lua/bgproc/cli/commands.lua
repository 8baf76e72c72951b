-- The subcommands that call a tool: start, list, show, logs, kill, wait,
-- send, restart, rm, prune, grep, rerun. Each is commands[name](a, c): a the parsed args, c a client of
-- the daemon; it prints and returns the exit code.
local caller = require "bgproc.cli.caller"
local flags = require "bgproc.cli.flags"
local render = require "bgproc.cli.render"
local states = require "bgproc.engine.states"
local tools = require "bgproc.tools"

local commands = {}

local EXIT = render.EXIT
local out = render.out

-- ---- send's text -----------------------------------------------------------------------

-- What -e reads after a backslash, as echo -e does, in the order the
-- help lists them: { escape, byte, what it is }; \xHH is the byte of two
-- hex digits.
local ESCAPES = { { "n", "\n" }, { "t", "\t" }, { "r", "\r" }, { "\\", "\\" }, { "xHH" }, { "0", "\0", "NUL" },
                  { "e", "\27", "ESC" } }
local ESCAPE_BYTE, known = {}, {}
for i, e in ipairs(ESCAPES) do
  if e[2] then ESCAPE_BYTE[e[1]] = e[2] end
  known[i] = "\\" .. e[1] .. (e[3] and (" (" .. e[3] .. ")") or "")
end
-- "\n \t \r \\ \xHH \0 (NUL) \e (ESC)", for send's help and -e's errors
commands.ESCAPES = table.concat(known, " ")

-- The bytes escaped text s stands for, or nil and what is wrong.
local function unescape(s)
  local parts, i = {}, 1
  while true do
    local j = s:find("\\", i, true)
    parts[#parts + 1] = s:sub(i, j and j - 1)
    if not j then return table.concat(parts) end
    local c = s:sub(j + 1, j + 1)
    if c == "x" then
      local hex = s:match("^%x%x", j + 2)
      if not hex then return nil, ("-e: '\\x' needs two hex digits, got '%s'"):format(s:sub(j, j + 3)) end
      parts[#parts + 1], i = string.char(tonumber(hex, 16)), j + 4
    elseif ESCAPE_BYTE[c] then
      parts[#parts + 1], i = ESCAPE_BYTE[c], j + 2
    else
      local what = c == "" and "a '\\' at the end" or ("an unknown escape '\\%s'"):format(c)
      return nil, ("-e: %s (known: %s)"):format(what, commands.ESCAPES)
    end
  end
end

-- The bytes `send` writes: the text as given, its escapes read with -e,
-- a newline added with --line. Or nil and what is wrong.
local function send_text(a)
  local text, err = a.text, nil
  if a.escapes then
    text, err = unescape(text)
    if not text then return nil, err end
    -- input travels as JSON text: a stray byte would arrive as U+FFFD
    if not utf8.len(text) then return nil, "-e: the text is not UTF-8 (\\x80 to \\xff must make UTF-8 characters)" end
  end
  return a.line and text .. "\n" or text
end

-- ---- from flags to tool arguments --------------------------------------------------------

-- Per command, its tool and the arguments that are not flags the tool
-- declares (cli/flags.lua makes those): positionals and the like. Each
-- comes from a parsed key: "key" is that value as it is, { "key", fn } is
-- fn(a), a plain fn(a) one of several flags. The key is also how an
-- error names the field: as the user typed it (see word_of).

-- `wait` with several IDs or --tag waits for a set of jobs.
local function several(a) return #a.id > 1 or #a.tags > 0 end

local TOOLS = {
  start = { tool = "createBackgroundProcess", args = {
    command = { "command", function(a) return #a.command == 1 and a.command[1] or nil end }, -- a shell string
    argv = { "command", function(a) return #a.command > 1 and a.command or nil end },
  } },
  list = { tool = "listBackgroundProcesses", args = {} },
  show = { tool = "getBackgroundProcess", args = { processId = "id", lines = "lines" } },
  logs = { tool = "getBackgroundProcess", args = { -- a follow's reads set since and lines their way
    processId = "id", filter = "grep", since = "since", lines = "n",
    stripAnsi = { "raw", function(a) return not a.raw end },
    stream = function(a) return a.stderr and "stderr" or a.stdout and "stdout" or nil end,
  } },
  kill = { tool = "killProcesses", args = { processId = "id" } },
  wait = { tool = "waitForBackgroundProcess", args = {
    processId = { "id", function(a) return not several(a) and a.id[1] or nil end },
    processIds = { "id", function(a) return several(a) and #a.id > 0 and a.id or nil end },
  } },
  send = { tool = "sendBackgroundProcessInput", args = { processId = "id", input = { "text", send_text } } },
  restart = { tool = "restartBackgroundProcess", args = { processId = "id" } },
  rm = { tool = "removeBackgroundProcesses", args = { processIds = "id" } },
  prune = { tool = "removeBackgroundProcesses", args = { -- no selector: every finished job
    all = function(a) return not (a.status[1] or a.tags[1] or a.olderThanMs or a.sessionId) or nil end,
  } },
  grep = { tool = "searchBackgroundOutput", args = { pattern = "pattern" } },
  rerun = { tool = "createBackgroundProcess", flags = false, args = { rerun = "id" } }, -- (not start's flags)
}
commands.TOOLS = TOOLS

-- The value of one of TOOLS' arguments from parsed args a.
local function value_of(from, a)
  if type(from) == "string" then return a[from] end
  if type(from) == "table" then return (from[2](a)) end
  return from(a)
end

-- The arguments of command `name`'s tool, from the parsed flags.
local function tool_args(name, a)
  local tool = TOOLS[name].tool
  local args = tools.by_name[tool].cli and TOOLS[name].flags ~= false and flags.args(tool, a) or {}
  for key, from in pairs(TOOLS[name].args) do args[key] = value_of(from, a) end
  return args
end

-- For command `name`: what the user typed for a field of its tool (the
-- flag or positional its value came from, named as the grammar names it:
-- "--grep", "ID|NAME"), or nil. A flag the tool declares is parsed under
-- its field's name. The grammar is built again only for an error.
local function word_of(name)
  local words
  return function(field)
    local from = TOOLS[name].args[field]
    local key = type(from) == "string" and from or type(from) == "table" and from[1]
      or (from == nil and field or nil)
    if not key then return nil end
    local parser = require "bgproc.cli.parser"
    words = words or parser.words(parser.build(), name)
    return words[key]
  end
end

-- Call command `name`'s tool with arguments args (default: from the
-- parsed flags): its result, or nil and an exit code. Its errors name
-- what the user typed.
local function call(c, name, a, sid, args)
  return caller.tool(c, TOOLS[name].tool, args or tool_args(name, a), sid, word_of(name))
end

-- The session of the caller, which a job's name is looked up in first.
local function my_session() return caller.session().sessionId end

-- ---- usage checks argparse cannot make, before anything is started ------------------

local checks = {}

function checks.wait(a)
  if #a.id == 0 and #a.tags == 0 then return "wait: give an ID (or several), or --tag" end
  if a.mode and #a.id < 2 and #a.tags == 0 then return "wait: --any is for several jobs (IDs or --tag)" end
end

function checks.send(a)
  return select(2, send_text(a))
end

-- "kill: give an ID, --session, --status, --tag or --all": the kill
-- tool's selector keys, as flags.
local function kill_usage()
  local kill = tools.by_name.killProcesses
  local ways = {}
  for _, key in ipairs(kill.selects) do
    ways[#ways + 1] = key == "processId" and "an ID" or flags.flag_of(kill.name, key)
  end
  return ("kill: give %s or %s"):format(table.concat(ways, ", "), flags.flag_of(kill.name, "all"))
end

function checks.kill(a)
  local args = tool_args("kill", a)
  for _, key in ipairs(tools.by_name.killProcesses.selects) do
    if args[key] ~= nil then return nil end
  end
  if not args.all then return kill_usage() end
end

-- What is wrong with the args of command `name`, or nil.
function commands.check(name, a)
  local tool = TOOLS[name] and tools.by_name[TOOLS[name].tool]
  local problem = tool and tool.cli and TOOLS[name].flags ~= false and flags.check(tool.name, a)
  return problem or (checks[name] and checks[name](a))
end

-- ---- the commands ------------------------------------------------------------------------

-- A create for the caller's session with args as this shell would run
-- them: its directory and environment (not the daemon's) under the env
-- given (--env, or a rerun's stored one).
local function create(name, a, c, args)
  args = require("bgproc.client").localize_create(args)
  local sid, serr = caller.open_session(c)
  if not sid then return render.fail(serr) end
  local r, code = call(c, name, a, sid, args)
  if not r then return code end
  render.result(a.json, TOOLS.start.tool, r)
  return EXIT.OK
end

function commands.start(a, c) return create("start", a, c, tool_args("start", a)) end
function commands.rerun(a, c) return create("rerun", a, c, { rerun = a.id }) end

-- Exit 0 when a line matched, 1 when none did, 2 on an error (as grep).
function commands.grep(a, c)
  local r = call(c, "grep", a, my_session())
  if not r then return EXIT.USAGE end
  if a.json then render.json(r) elseif r.count > 0 then render.result(false, TOOLS.grep.tool, r) end
  return r.count > 0 and EXIT.OK or EXIT.FAIL
end

function commands.list(a, c)
  local r, code = call(c, "list", a)
  if not r then return code end
  if a.json then render.json(r)
  elseif r.count == 0 then out("no background processes\n")
  else render.table(r.processes) end
  return EXIT.OK
end

function commands.show(a, c)
  local r, code = call(c, "show", a, my_session())
  if not r then return code end
  if a.json then
    render.json(r)
    return EXIT.OK
  end
  render.record(r)
  if r.output ~= "" then
    out("\n")
    render.output(r.output)
    render.close_output()
  end
  return EXIT.OK
end

-- The tool's arguments for one read of `logs` from the job `ref` names:
-- the output after cursor `since`, else the last -n lines.
local function logs_args(a, ref, since)
  local args = tool_args("logs", a)
  args.processId, args.since, args.lines = ref, since, not since and a.n or nil
  return args
end

local function print_logs(a, res)
  if a.json then render.json(res) else render.output(res.output, a.raw) end
  io.stdout:flush()
end

-- --follow job `id` from `cursor`: wait for more output (2 s at a time),
-- print it, until the job has ended and all of its output is out.
-- Returns the exit code and whether any output (any line --grep keeps)
-- was printed, `printed` counting what was before.
local function follow_logs(a, c, id, cursor, printed)
  while true do
    local w, wcode = caller.tool(c, "waitForBackgroundProcess",
      { processId = id, ["until"] = "output", pattern = "^", since = cursor, timeoutMs = 2000 })
    if not w then return wcode, printed end
    local g, gcode = call(c, "logs", a, nil, logs_args(a, id, cursor))
    if not g then return gcode, printed end
    if g.output ~= "" then
      print_logs(a, g)
      printed = true
    end
    cursor = g.cursor
    if states.FINAL[g.status] and not w.timedOut and g.output == "" and not g.truncated then
      return EXIT.OK, printed
    end
  end
end

-- Exit 0, or with --grep 1 when no line matched (as grep does); a
-- follow decides by all it printed.
function commands.logs(a, c)
  local r, code = call(c, "logs", a, my_session(), logs_args(a, a.id, a.since))
  if not r then return code end
  local printed = r.output ~= ""
  if a.json and not a.follow then
    render.json(r)
  else
    print_logs(a, r)
    -- the job named by ID|NAME is followed by its id: another job that
    -- takes the name meanwhile is not this one
    if a.follow then code, printed = follow_logs(a, c, r.id, r.cursor, printed) end
    render.close_output()
    if code and code ~= EXIT.OK then return code end
  end
  return (a.grep and not printed) and EXIT.FAIL or EXIT.OK
end

function commands.kill(a, c)
  -- the caller's session asks: its owner is not told of a kill it made
  local r, code = call(c, "kill", a, my_session())
  if not r then return code end
  if a.json then render.json(r) else render.kill(r) end
  return #r.errors > 0 and EXIT.FAIL or EXIT.OK
end

-- Several jobs: one line each, exit 0 when the wait was met (each job, or
-- one with --any, completed or matched), 1 when not, 124 on timeout.
local function wait_several(a, r)
  render.result(a.json, TOOLS.wait.tool, r)
  if r.timedOut then return EXIT.TIMEOUT end
  local good = 0
  for _, p in ipairs(r.processes) do
    local ok = p.done and (p.matched == true or (p.matched == nil and p.status == "completed"))
    if ok then good = good + 1 end
  end
  if a.mode then return good > 0 and EXIT.OK or EXIT.FAIL end
  return good == #r.processes and EXIT.OK or EXIT.FAIL
end

-- One job: exit 0 when it completed (or the line came), 1 when not, 124
-- on timeout.
local function wait_one(a, r)
  if a.json then render.json(r)
  elseif r.timedOut then out(("%s: still %s after %d ms\n"):format(r.id, r.status, a.timeoutMs))
  elseif r.matched then out(r.line or ("%d"):format(r.port.port), "\n") -- just the line (the port), for scripts
  else render.result(false, TOOLS.wait.tool, r) end
  if r.timedOut then return EXIT.TIMEOUT end
  if r.matched ~= nil then return r.matched and EXIT.OK or EXIT.FAIL end
  return r.status == "completed" and EXIT.OK or EXIT.FAIL
end

function commands.wait(a, c)
  local r, code = call(c, "wait", a, my_session())
  if not r then return code end
  if several(a) then return wait_several(a, r) end
  return wait_one(a, r)
end

-- A command that calls its tool for the caller's session and prints the
-- tool's one line (or JSON); exit 1 when the result lists errors (rm and
-- prune: a job named could not go, it still runs).
local function one_call(name)
  return function(a, c)
    local r, code = call(c, name, a, my_session())
    if not r then return code end
    render.result(a.json, TOOLS[name].tool, r)
    return r.errors and #r.errors > 0 and EXIT.FAIL or EXIT.OK
  end
end

commands.restart = one_call("restart")
commands.rm = one_call("rm")
commands.prune = one_call("prune")
commands.send = one_call("send")

return commands
