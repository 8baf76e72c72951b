-- The CLI's side of the daemon: the connection, the caller's session (its
-- owner's, see owner.lua) and tool calls.
local uv = require "luv"
local render = require "bgproc.cli.render"

local caller = {}

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

-- Call a tool: its result (normalized by the client), or nil and an exit
-- code (the error printed).
function caller.tool(c, name, arguments, sid)
  local res, err = c:call("tools/call", { name = name, arguments = arguments, sessionId = sid })
  if res then return res end
  local terr, from_tool = require("bgproc.client").tool_error(err)
  return nil, render.fail(from_tool and ("%s: %s"):format(terr.code, terr.message) or terr.message)
end

return caller
