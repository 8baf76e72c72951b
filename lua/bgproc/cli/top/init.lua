-- `bgproc top`: a live full-screen view of the daemon's jobs (keys kill,
-- restart, show logs, filter and sort), or with --once one plain frame
-- (for scripts, and where stdout is no terminal).
--
-- cli/top/app.lua holds the live view's state and loop, cli/top/term.lua
-- the terminal; the screens are made by cli/top/layout.lua, from
-- cli/top/jobs.lua's cells and cli/top/display.lua's widths (all pure).
local uv = require "luv"
local app = require "bgproc.cli.top.app"
local client = require "bgproc.client"
local jobs = require "bgproc.cli.top.jobs"
local layout = require "bgproc.cli.top.layout"
local render = require "bgproc.cli.render"

local top = {}

local EXIT = render.EXIT

local function isatty(fd) return uv.guess_handle(fd) == "tty" end

-- The width of the terminal on stdout; it is left in blocking mode (the
-- handle would leave it non-blocking, and a big frame follows).
local function stdout_columns()
  if not isatty(1) then return nil end
  local tty = uv.new_tty(1, false)
  if not tty then return nil end
  tty:set_blocking(true)
  local w = tty:get_winsize()
  tty:close()
  uv.run("nowait")
  return w
end

local function once(a)
  local c, err = client.connect { socket = a.socket }
  if not c then return render.fail(err) end
  local r, cerr = c:call("tools/call", app.LIST, 30000)
  c:close()
  if not r then return render.fail(app.error_text(cerr)) end
  local m = { procs = jobs.select(r.processes, a.filter, a.sort), total = #r.processes,
              running = jobs.running(r.processes), sort = a.sort, filter = a.filter, now = os.time() }
  local width = stdout_columns() or tonumber(os.getenv("COLUMNS") or "") or 160
  local lines = layout.list(m, { width = width, color = false, marker = false })
  for i, line in ipairs(lines) do lines[i] = line:gsub("%s+$", "") end -- the padding of the last column
  render.out(table.concat(lines, "\n"), "\n")
  return EXIT.OK
end

local function live(a)
  if not isatty(0) or not isatty(1) then
    return render.fail("top: needs a terminal (stdin and stdout); --once prints one frame", EXIT.USAGE)
  end
  -- connected before the screen is taken: an error prints plainly
  local c, err = client.connect { socket = a.socket }
  if not c then return render.fail(err) end
  return app.new(a, c):run()
end

-- Run `bgproc top` with parsed args a; returns the exit code.
function top.run(a)
  if a.once then return once(a) end
  return live(a)
end

return top
