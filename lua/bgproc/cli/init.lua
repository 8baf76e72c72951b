-- The `bgproc` command line. Every subcommand is a tool call to the
-- per-user daemon (started on demand); --json prints the tool's result.
--
-- Exit codes: 0 ok, 1 failure, 2 usage, 124 when `wait` times out.
--
-- This file parses and dispatches. The grammar and help texts are in
-- cli/parser.lua; the tool commands in cli/commands.lua; `daemon` in
-- cli/daemon.lua, `hook` in cli/hooks.lua; what is printed in cli/render.lua.
local parser = require "bgproc.cli.parser"
local render = require "bgproc.cli.render"

local cli = {}

local EXIT = render.EXIT
local out = render.out

local function usage_error(p, sub, problem)
  io.stderr:write(parser.usage(p, sub), "\n\nbgproc: error: ", problem, "\n")
  return EXIT.USAGE
end

-- The subcommand argparse could not parse: the first word that is no flag.
local function first_word(argv)
  for _, w in ipairs(argv) do
    if not w:find("^%-") then return w end
  end
end

-- ---- commands that need no daemon ----------------------------------------------------------

local function version(a)
  local v = require("bgproc").version
  if a.json then render.json { version = v } else out("bgproc ", v, "\n") end
  return EXIT.OK
end

local function help(a, p)
  if not a.topic then
    out(p:get_help(), "\n")
    return EXIT.OK
  end
  local cmd = parser.find_command(p, a.topic)
  if not cmd then return render.fail("help: no command " .. a.topic, EXIT.USAGE) end
  out(cmd:get_help(), "\n")
  return EXIT.OK
end

local LOCAL = {
  version = version,
  help = help,
  daemon = function(a) return require("bgproc.cli.daemon").run(a) end,
  hook = function(a) return require("bgproc.cli.hooks").command(a) end,
  mcp = function(a) return require("bgproc.mcp").run { standalone = a.standalone, socket = a.socket } end,
  top = function(a) return require("bgproc.cli.top").run(a) end,
}

-- The command to run: "ls" is "list", -v is "version", none is "help".
local function command_name(a)
  if a.version then return "version" end
  if a.cmd == "ls" then return "list" end
  return a.cmd or "help"
end

-- Run the CLI with a list of arguments; returns the exit code.
function cli.main(argv)
  local p = parser.build()
  local ok, a = p:pparse(argv)
  if not ok then return usage_error(p, first_word(argv), a) end
  local name = command_name(a)
  if LOCAL[name] then return LOCAL[name](a, p) end
  local commands = require "bgproc.cli.commands"
  local problem = commands.check(name, a)
  if problem then return usage_error(p, a.cmd, problem) end
  local c, err = require("bgproc.cli.caller").connect(a.socket)
  if not c then return render.fail(err) end
  local code = commands[name](a, c)
  c:close()
  return code
end

return cli
