-- The CLI's side of the daemon: the connection, the caller's session (its
-- owner's, see owner.lua) and tool calls.
local uv = require "luv"
local render = require "bgproc.cli.render"

local caller = {}

-- Ctrl-C ends the command at once, exit status 130, without a traceback;
-- what the daemon was asked to do (a kill) goes on there. A job's line
-- left open on stdout is closed; the "\n" after the terminal's "^C" goes
-- to stderr unless that newline was just printed on the terminal.
local function on_interrupt()
  local s = uv.new_signal()
  s:start("sigint", function()
    if not (render.close_output() and render.stdout_is_tty()) then io.stderr:write("\n") end
    os.exit(130)
  end)
  s:unref()
end

-- A client of the daemon at `socket` (default: the usual one), started on
-- demand; or nil, message.
function caller.connect(socket)
  on_interrupt()
  return require("bgproc.client").connect { socket = socket }
end

-- The session of CLI jobs: the owner's (a terminal's shell, an agent),
-- ending when it exits, or the one BGPROC_SESSION names. Returns the
-- session/open params.
function caller.session()
  return require("bgproc.owner").session_params("cli", math.tointeger(uv.os_getppid()))
end

-- Open the caller's session on client c: its id, or nil, message.
function caller.open_session(c)
  local res, err = c:call("session/open", caller.session(), 10000)
  if not res then return nil, err.message end
  return res.sessionId
end

-- ---- a tool's error in the command line's words ------------------------------------------

-- The string values of a tool call's arguments (a list's items too): a
-- quoted word that is one of them is what the user gave, not a field.
local function values_of(arguments)
  local set = {}
  for _, v in pairs(arguments or {}) do
    for _, x in ipairs(type(v) == "table" and v or { v }) do
      if type(x) == "string" then set[x] = true end
    end
  end
  return set
end

-- A tool's error message as the command line says it: the tool's name
-- before it dropped (the CLI's commands are not named so), each quoted
-- field 'field' as the word the user typed for it, word_of(field) (a flag,
-- a positional's name; a field it does not know stays), and a leading
-- "'field': " as "--flag: ", like the CLI's own errors.
function caller.in_cli_words(message, tool, arguments, word_of)
  local given = values_of(arguments)
  local function word(field)
    if given[field] then return nil end
    return word_of(field)
  end
  message = message:gsub("^" .. tool .. ": ", "", 1)
  -- a leading 'field': always names a field (a value never comes first)
  local lead, rest = message:match("^'([%w_]+)': (.*)$")
  local prefix = ""
  if lead and word_of(lead) then prefix, message = word_of(lead) .. ": ", rest end
  return prefix .. message:gsub("'([%w_]+)'", function(field)
    local w = word(field)
    return w and ("'" .. w .. "'")
  end)
end

-- The exit code of a tool's error: an invalid_argument answer is about
-- what the user typed, a usage error like argparse's (2); any other (no
-- such job, a conflict, a program that cannot start...) is a failure (1).
local function exit_code(terr, from_tool)
  if from_tool and terr.code == "invalid_argument" then return render.EXIT.USAGE end
  return render.EXIT.FAIL
end

-- Call a tool: its result (normalized by the client), or nil and an exit
-- code (the error printed). word_of(field), when given, names a field of
-- the tool's arguments as the command line does (see in_cli_words).
function caller.tool(c, name, arguments, sid, word_of)
  local res, err = c:call("tools/call", { name = name, arguments = arguments, sessionId = sid })
  if res then return res end
  local terr, from_tool = require("bgproc.client").tool_error(err)
  local msg = terr.message
  if from_tool and word_of then msg = caller.in_cli_words(msg, name, arguments, word_of) end
  return nil, render.fail(from_tool and ("%s: %s"):format(terr.code, msg) or msg, exit_code(terr, from_tool))
end

return caller
