-- What the CLI prints: tables of jobs, one job's record, colours, ages,
-- results as JSON or as the tools' own text; errors on stderr; the exit
-- codes.
local uv = require "luv"
local json = require "bgproc.lib.json"
local cells = require "bgproc.cli.cells"

local render = {}

render.EXIT = { OK = 0, FAIL = 1, USAGE = 2, TIMEOUT = 124 }

-- ---- the terminal ----------------------------------------------------------------------

local function isatty(fd) return uv.guess_handle(fd) == "tty" end

local color_ok = isatty(1) and (os.getenv("NO_COLOR") or "") == ""

local COLORS = { running = "32", completed = "90", failed = "31", cancelled = "33", pending = "36" }

local function paint(code, s)
  if not color_ok or not code then return s end
  return "\27[" .. code .. "m" .. s .. "\27[0m"
end

-- The terminal's width, or nil when stdout is no terminal.
local function term_columns()
  if not isatty(1) then return nil end
  local tty = uv.new_tty(1, false)
  local w = tty and tty:get_winsize()
  if tty then tty:close() end
  return w
end

-- ---- text --------------------------------------------------------------------------------

local function out(...) io.stdout:write(...) end
render.out = out

-- A job's output as printed by logs and show. A job may end without a
-- final newline; its last line is then closed when the command stops
-- printing it (the job ended, the follow stops, an error, Ctrl-C), or the
-- next thing printed (the shell's prompt, the next line of a pipe) would
-- run into it. Within a follow nothing is added: the next chunk may go on
-- with the same line. Exact output (--raw) into a pipe or a file stays the
-- job's bytes; on a terminal its last line is closed all the same.
local open_line = false

function render.output(s, exact)
  if s == "" then return end
  out(s)
  open_line = s:sub(-1) ~= "\n" and not (exact and not isatty(1))
end

-- End a job's output: "\n" after a line it left open. Returns whether
-- one was printed.
function render.close_output()
  if not open_line then return false end
  open_line = false
  out("\n")
  io.stdout:flush()
  return true
end

-- Whether stdout is a terminal.
function render.stdout_is_tty() return isatty(1) end

-- Print msg as bgproc's error (after closing a job's open line, so that
-- on a terminal it starts a line of its own); returns the exit code
-- (default FAIL).
function render.fail(msg, code)
  render.close_output()
  io.stderr:write("bgproc: ", msg, "\n")
  return code or render.EXIT.FAIL
end

-- v as one line of JSON.
function render.json(v)
  out(json.encode(v), "\n")
end

-- A tool's result: JSON, or the tool's own one line (as MCP clients see it).
function render.result(as_json, tool_name, r)
  if as_json then return render.json(r) end
  out(require("bgproc.tools").summary(tool_name, r), "\n")
end

-- "5s", "3m", "2h", "4d" since an ISO time; "-" without one.
local function age(iso)
  local t = cells.epoch(iso)
  return cells.age(t and os.time() - t)
end

local function width(s) return utf8.len(s) or #s end

-- s cut to n columns, an ellipsis marking the cut.
local function clip(s, n)
  if width(s) <= n then return s end
  if n <= 1 then return "…" end
  return s:sub(1, (utf8.offset(s, n) or n) - 1) .. "…"
end

-- "cancelled: session ended (shell 4321 exited)"; a running job's status.
local function status_text(r)
  if not r.endReason or r.endReason == r.status or r.status == "completed" and r.exitCode == 0
      and not r.stopReason then
    return r.status
  end
  return r.status .. ": " .. r.endReason
end

-- ---- jobs ----------------------------------------------------------------------------------

local HEADER = { "ID", "NAME", "STATUS", "PID", "PORTS", "AGE", "TAGS", "LAST LINE" }
local COLUMNS = #HEADER - 1 -- padded; the last line fills the rest

local function row_of(p)
  local ports = cells.ports(p.ports)
  return { p.id, clip(p.name, 30), clip(status_text(p), 48), p.pid and ("%d"):format(p.pid) or "-",
           clip(ports == "" and "-" or ports, 24), age(p.startedAt), table.concat(p.tags or {}, ","),
           p.lastLine or "" }
end

-- Jobs as a table: columns as wide as their widest cell; the last line
-- fills what the terminal has left (80 columns when no terminal).
function render.table(procs)
  local rows = { HEADER }
  for _, p in ipairs(procs) do rows[#rows + 1] = row_of(p) end
  local widths = {}
  for _, row in ipairs(rows) do
    for i = 1, COLUMNS do widths[i] = math.max(widths[i] or 0, width(row[i])) end
  end
  local cols = term_columns()
  for r, row in ipairs(rows) do
    local parts = {}
    local used = 0
    for i = 1, COLUMNS do
      local cell = row[i] .. (" "):rep(widths[i] - width(row[i]))
      if i == 3 and r > 1 then cell = paint(COLORS[row[3]:match("^%a+")], cell) end
      parts[i] = cell
      used = used + widths[i] + 2
    end
    local last = row[COLUMNS + 1]
    if cols then last = clip(last, math.max(10, cols - used)) else last = clip(last, 80) end
    parts[COLUMNS + 1] = r == 1 and last or paint("2", last)
    out(table.concat(parts, "  "), "\n")
  end
end

-- One job's record, a field a line (the fields it has).
function render.record(r)
  local lines = {
    { "id", r.id }, { "name", r.name }, { "status", paint(COLORS[r.status], status_text(r)) },
    { "pid", r.pid }, { "command", r.command or (r.argv and table.concat(r.argv, " ")) },
    { "cwd", r.cwd }, { "session", r.sessionId .. (r.global and " (global)" or "") },
    { "tags", #r.tags > 0 and table.concat(r.tags, ", ") or nil },
    { "started", r.startedAt }, { "ended", r.endedAt },
    { "exit code", r.exitCode }, { "signal", r.signal }, { "error", r.error },
    { "output", ("%d bytes (%d dropped)"):format(r.outputBytes or 0, r.droppedBytes or 0) },
    { "ready", r.ready ~= nil and (tostring(r.ready) .. (r.readyLine and (": " .. r.readyLine) or "")) or nil },
    { "ports", r.ports and cells.ports(r.ports) },
    { "cpu", r.cpuMs and ("%s%% (%d ms in all)"):format(r.cpuPercent or "?", r.cpuMs) },
    { "memory", r.memoryBytes and ("%s (peak %s)"):format(cells.bytes(r.memoryBytes), cells.bytes(r.memoryPeakBytes)) },
    { "memory max", r.memoryMax and cells.bytes(r.memoryMax) },
    { "restarts", r.restarts },
  }
  for k, v in pairs(r.notes or {}) do lines[#lines + 1] = { k, tostring(v) } end
  for _, l in ipairs(lines) do
    if l[2] ~= nil then out(("%-10s %s\n"):format(l[1], tostring(l[2]))) end
  end
end

-- What a kill did: killed, already finished, escaped (a line each kind),
-- errors on stderr.
function render.kill(r)
  if #r.killed > 0 then out(("killed %s\n"):format(table.concat(r.killed, " "))) end
  if #r.alreadyFinished > 0 then out(("already finished %s\n"):format(table.concat(r.alreadyFinished, " "))) end
  if #r.killed == 0 and #r.alreadyFinished == 0 then out("nothing matched\n") end
  for _, e in ipairs(r.escaped or {}) do
    out(("escaped %s: pid %d (%s) %s\n"):format(e.processId, e.pid, e.command,
      e.killed and "killed" or "left running"))
  end
  for _, e in ipairs(r.errors) do io.stderr:write(("bgproc: %s: %s\n"):format(e.processId, e.message)) end
end

-- The daemon's status (daemon/status) in a few lines.
function render.daemon_status(s)
  out(("running: pid %d, %d jobs (%d running), %d sessions, %d clients, up %ds\nsocket: %s\n")
    :format(s.pid, s.jobs, s.jobsRunning, s.sessions, s.clients, s.uptimeMs // 1000, s.socket))
  if s.cgroup then out("cgroup: ", s.cgroup, " (processes that leave a job's group die with it)\n")
  elseif s.cgroupWhy then out("cgroup: none, ", s.cgroupWhy, " (escaped processes are reported, left running)\n") end
  local st = s.store
  if not st then out("history: in memory only (no store)\n") return end
  if st.records then
    out(("history: %s (%d records, output on disk %s)\n"):format(st.path, st.records, cells.bytes(st.outputBytes or 0)))
  end
  if st.failure then out("history: NOT SAVED: ", st.failure, " (jobs run on, in memory)\n") end
end

return render
