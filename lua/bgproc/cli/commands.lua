-- The subcommands that call a tool: start, list, show, logs, kill, wait,
-- send. Each is commands[name](a, c): a the parsed args, c a client of
-- the daemon; it prints and returns the exit code.
local caller = require "bgproc.cli.caller"
local flags = require "bgproc.cli.flags"
local render = require "bgproc.cli.render"
local states = require "bgproc.engine.states"
local tools = require "bgproc.tools"

local commands = {}

local EXIT = render.EXIT
local out = render.out

-- ---- from flags to tool arguments --------------------------------------------------------

-- Per command, its tool and the arguments that are not flags the tool
-- declares (cli/flags.lua makes those): positionals and the like.

-- `wait` with several IDs or --tag waits for a set of jobs.
local function several(a) return #a.id > 1 or #a.tags > 0 end

local TOOLS = {
  start = { tool = "createBackgroundProcess", args = {
    command = function(a) return #a.command == 1 and a.command[1] or nil end, -- a shell string
    argv = function(a) return #a.command > 1 and a.command or nil end,
  } },
  list = { tool = "listBackgroundProcesses", args = {} },
  show = { tool = "getBackgroundProcess", args = { processId = "id", lines = "lines" } },
  logs = { tool = "getBackgroundProcess", args = { -- and since, lines: each read's own
    processId = "id", filter = "grep", stripAnsi = function(a) return not a.raw or nil end,
    stream = function(a) return a.stderr and "stderr" or a.stdout and "stdout" or nil end,
  } },
  kill = { tool = "killProcesses", args = { processId = "id" } },
  wait = { tool = "waitForBackgroundProcess", args = {
    processId = function(a) return not several(a) and a.id[1] or nil end,
    processIds = function(a) return several(a) and #a.id > 0 and a.id or nil end,
  } },
  send = { tool = "sendBackgroundProcessInput", args = { processId = "id", input = "text" } },
}
commands.TOOLS = TOOLS

-- The arguments of command `name`'s tool, from the parsed flags.
local function tool_args(name, a)
  local tool = TOOLS[name].tool
  local args = tools.by_name[tool].cli and flags.args(tool, a) or {}
  for key, from in pairs(TOOLS[name].args) do
    if type(from) == "string" then args[key] = a[from] else args[key] = from(a) end
  end
  return args
end

-- Call command `name`'s tool: its result, or nil and an exit code.
local function call(c, name, a, sid)
  return caller.tool(c, TOOLS[name].tool, tool_args(name, a), sid)
end

-- ---- usage checks argparse cannot make, before anything is started ------------------

local checks = {}

function checks.wait(a)
  if #a.id == 0 and #a.tags == 0 then return "wait: give an ID (or several), or --tag" end
  if a.mode and #a.id < 2 and #a.tags == 0 then return "wait: --any is for several jobs (IDs or --tag)" end
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
  local problem = tool and tool.cli and flags.check(tool.name, a)
  return problem or (checks[name] and checks[name](a))
end

-- ---- the commands ------------------------------------------------------------------------

function commands.start(a, c)
  -- the job gets this shell's directory and environment (and --env), not the daemon's
  local args = require("bgproc.client").localize_create(tool_args("start", a))
  local sid, serr = caller.open_session(c)
  if not sid then return render.fail(serr) end
  local r, code = caller.tool(c, TOOLS.start.tool, args, sid)
  if not r then return code end
  render.result(a.json, TOOLS.start.tool, r)
  return EXIT.OK
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
  local r, code = call(c, "show", a)
  if not r then return code end
  if a.json then
    render.json(r)
    return EXIT.OK
  end
  render.record(r)
  if r.output ~= "" then out("\n", r.output, r.output:sub(-1) == "\n" and "" or "\n") end
  return EXIT.OK
end

-- The output after `cursor` (or the last n lines), as logs prints it.
local function read_logs(c, a, since, lines)
  local args = tool_args("logs", a)
  args.since, args.lines = since, lines
  return caller.tool(c, TOOLS.logs.tool, args)
end

local function print_logs(a, res)
  if a.json then render.json(res) else out(res.output) end
  io.stdout:flush()
end

-- --follow: wait for more output (2 s at a time), print it, until the
-- job has ended and all of its output is out.
local function follow_logs(a, c, cursor)
  while true do
    local w, wcode = caller.tool(c, "waitForBackgroundProcess",
      { processId = a.id, ["until"] = "output", pattern = "^", since = cursor, timeoutMs = 2000 })
    if not w then return wcode end
    local g, gcode = read_logs(c, a, cursor)
    if not g then return gcode end
    if g.output ~= "" then print_logs(a, g) end
    cursor = g.cursor
    if states.FINAL[g.status] and not w.timedOut and g.output == "" and not g.truncated then return EXIT.OK end
  end
end

function commands.logs(a, c)
  local r, code = read_logs(c, a, a.since, not a.since and a.n or nil)
  if not r then return code end
  if a.json and not a.follow then
    render.json(r)
    return EXIT.OK
  end
  print_logs(a, r)
  if not a.follow then return EXIT.OK end
  return follow_logs(a, c, r.cursor)
end

function commands.kill(a, c)
  -- the caller's session asks: its owner is not told of a kill it made
  local r, code = call(c, "kill", a, caller.session().sessionId)
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
  elseif r.matched then out(r.line, "\n") -- just the line, for scripts
  else render.result(false, TOOLS.wait.tool, r) end
  if r.timedOut then return EXIT.TIMEOUT end
  if r.matched ~= nil then return r.matched and EXIT.OK or EXIT.FAIL end
  return r.status == "completed" and EXIT.OK or EXIT.FAIL
end

function commands.wait(a, c)
  local r, code = call(c, "wait", a)
  if not r then return code end
  if several(a) then return wait_several(a, r) end
  return wait_one(a, r)
end

function commands.send(a, c)
  local r, code = call(c, "send", a)
  if not r then return code end
  render.result(a.json, TOOLS.send.tool, r)
  return EXIT.OK
end

return commands
