-- `bgproc daemon start|stop|status|run`: the per-user daemon itself.
local client = require "bgproc.client"
local paths = require "bgproc.lib.paths"
local render = require "bgproc.cli.render"

local command = {}

local EXIT = render.EXIT
local out = render.out

local actions = {}

-- c: a client of the running daemon, or nil when none answers.
function actions.status(a, c, socket)
  if not c then
    if a.json then render.json { running = false, socket = socket } else out("not running (", socket, ")\n") end
    return EXIT.FAIL
  end
  local s, err = c:call("daemon/status", {}, 5000)
  c:close()
  if not s then return render.fail(err.message) end
  s.running = true
  if a.json then render.json(s) else render.daemon_status(s) end
  return EXIT.OK
end

function actions.start(a, c, socket)
  local already = c ~= nil
  if not c then
    c = client.connect { socket = socket } -- starts it
    if not c then return render.fail("the daemon did not start (see " .. paths.log() .. ")") end
  end
  local s = c:call("daemon/status", {}, 5000) or {}
  c:close()
  local pid = s.pid or -1
  if a.json then
    render.json { running = true, started = not already, pid = pid, socket = socket }
  elseif already then
    out(("already running: pid %d, socket %s\n"):format(pid, socket))
  else
    out(("started: pid %d, socket %s\n"):format(pid, socket))
  end
  return EXIT.OK
end

function actions.stop(a, c, socket)
  if not c then
    if a.json then render.json { running = false, stopped = false, socket = socket } else out("not running\n") end
    return EXIT.OK
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
  if a.json then render.json { running = false, stopped = true, pid = pid, socket = socket }
  else out(("stopped%s\n"):format(pid and (" (pid %d)"):format(pid) or "")) end
  return EXIT.OK
end

-- Run `bgproc daemon ACTION`; returns the exit code.
function command.run(a)
  local socket = a.socket or paths.socket()
  if a.action == "run" then
    return require("bgproc.daemon").run { socket = socket, quiet_if_running = a.quiet_if_running,
                                          verbose = a.verbose }
  end
  local act = actions[a.action]
  if not act then return render.fail("daemon: unknown action " .. tostring(a.action), EXIT.USAGE) end
  return act(a, client.connect { socket = socket, autostart = false }, socket)
end

return command
