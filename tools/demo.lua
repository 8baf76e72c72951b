-- `make demo`: a short tour of bgproc as a user meets it. Each `$ ` line
-- is a command as you would type it, run exactly as shown (by sh), and
-- what follows it is what it printed. Lines starting with `#` are the
-- narration. The plumbing is setup, said once as such: a private daemon
-- (its own socket, config and state in a temporary directory, so a daemon
-- you may run yourself is not touched) and this checkout's bin/ first on
-- PATH. All of it is undone at the end, also after an error or Ctrl-C.
-- Exits 1 when a command did not exit as the tour expects.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/../lua/?.lua;" .. here .. "/../lua/?/init.lua;" .. package.path
package.cpath = here .. "/../lua/?.so;" .. package.cpath

local uv = require "luv"

local root = assert(uv.fs_realpath(here .. "/.."))
local dir -- the private daemon's directory, once made
local surprises = 0

-- Ctrl-C, TERM, HUP, or a reader gone (`make demo | head`) end the tour
-- after the command it is in; the cleanup runs then. (luv's handlers
-- replace dying at once, or lua's own interrupt that lands anywhere.)
local stopped_by
for _, name in ipairs { "sigint", "sigterm", "sighup", "sigpipe" } do
  uv.new_signal():start(name, function() stopped_by = name end)
end

local function go_on()
  uv.run("nowait") -- the signal handlers' callbacks
  if stopped_by then error("stopped by " .. stopped_by:upper(), 0) end
end

local function write(...)
  if not (io.write(...) and io.stdout:flush()) then
    stopped_by = "sigpipe" -- whoever read the tour is gone
    go_on()
  end
end

local function note(s)
  go_on()
  write("# ", s, "\n")
end

-- Show `cmd` as typed, run it with sh (stderr with stdout, as a terminal
-- shows them) and show what it printed. `want`: the exit code the tour
-- expects (default 0); another one is pointed out and fails the demo.
-- Returns the output.
local function run(cmd, want)
  go_on()
  write("$ ", cmd, "\n")
  local p = assert(io.popen("exec 2>&1\n" .. cmd))
  local out = p:read("a")
  local _, _, code = p:close()
  go_on()
  write(out, (out == "" or out:sub(-1) == "\n") and "" or "\n")
  if code ~= (want or 0) then
    surprises = surprises + 1
    note(("(unexpected: exit %d, not %d)"):format(code, want or 0))
  end
  return out
end

-- The id and pid in `started ab-1 (pid 123): web`.
local function started(out)
  local id, pid = out:match("started (%S+) %(pid (%d+)%)")
  return id or "?", pid or "?"
end

-- A private daemon's environment for every command the tour runs.
local function setup()
  dir = assert(uv.fs_mkdtemp("/tmp/bgproc-demo.XXXXXX"))
  local cfg = assert(io.open(dir .. "/config.lua", "w"))
  cfg:write("return { plugins = { 'autotag' } }\n")
  cfg:close()
  for k, v in pairs { BGPROC_SOCKET = dir .. "/daemon.sock", BGPROC_CONFIG = dir .. "/config.lua",
                      XDG_STATE_HOME = dir .. "/state", XDG_CONFIG_HOME = dir .. "/config", NO_COLOR = "1",
                      PATH = root .. "/bin:" .. (os.getenv("PATH") or "/usr/bin:/bin") } do
    uv.os_setenv(k, v)
  end
  uv.os_unsetenv("BGPROC_SESSION") -- the jobs belong to this tour, which ends them
  note(("setup (not part of the tour): a private daemon in %s, %s/bin first on PATH"):format(dir, root))
end

-- Stop the private daemon (and with it every job) if it still runs, and
-- remove its directory.
local function cleanup()
  if not dir then return end
  if uv.fs_stat(dir .. "/daemon.sock") then
    local p = io.popen("bgproc daemon stop 2>&1")
    p:read("a")
    p:close()
  end
  os.execute("rm -rf '" .. dir .. "'")
  pcall(write, ("# cleanup: the demo's daemon is stopped, %s removed\n"):format(dir))
end

local function tour()
  note("1. Start a dev server and a build in the background (the daemon starts on demand)")
  local web, pid = started(run([[bgproc start --name web --ready 'listening on' -- sh -c 'echo compiling...; ]]
    .. [[sleep 0.3; echo "listening on :8080"; while sleep 0.2; do echo "GET / 200"; done']]))
  local build = started(run([[bgproc start --name build --tag build 'for i in 1 2 3; do echo "[$i/3] building"; ]]
    .. [[sleep 0.1; done; echo "warning: unused x" >&2']]))

  note("2. Wait for readiness instead of sleeping, then look")
  run("bgproc wait " .. web .. " --ready --timeout 5000")
  run("bgproc wait --tag build")
  run("bgproc ls")

  note("3. Read output: the last lines, only stderr, or only what matches")
  run("bgproc logs " .. web .. " -n 3")
  run("bgproc logs " .. build .. " --stderr")
  run("bgproc logs " .. build .. [[ --grep '^\[2']])

  note("4. Type into a job's stdin")
  local greeter = started(run([[bgproc start --name greeter --stdin -- sh -c 'read name; echo "hello, $name"']]))
  run("bgproc send " .. greeter .. " --line alice")
  run("bgproc wait " .. greeter)
  run("bgproc logs " .. greeter)

  note("5. A real server: ready once it listens, one per name, restarted in place (same id, new pid)")
  run([[bgproc start --name api --unique reuse --ready-port 0 -- python3 -m http.server 0 --bind 127.0.0.1]])
  run("bgproc wait api --ready --timeout 10000")
  run([[bgproc start --name api --unique reuse -- python3 -m http.server 0 --bind 127.0.0.1]])
  run("bgproc restart api")
  local port = run("bgproc wait api --port --timeout 10000"):match("%d+") or "?"
  run("bgproc wait api --url http://localhost:" .. port .. "/ --timeout 10000")
  run("bgproc ls --name api")

  note("6. Stop the server: its whole process group goes, nothing is left behind")
  run("pgrep -c -g " .. pid)
  run("bgproc kill " .. web)
  run("pgrep -c -g " .. pid, 1)

  note("7. A failed start is an error at once, not a job that looks alive")
  run("bgproc start -- no-such-tool --flag", 1)

  note("8. Every end says why, and the owner hears of it without polling (here a Claude Code hook)")
  run([[bgproc start --name tests --tag test 'echo "FAIL parser.test (3 failures)"; exit 1']])
  run("bgproc wait --tag test", 1)
  run("bgproc ls")
  run("echo '{}' | bgproc hook claude PostToolUse")

  note("9. The same tools for AI agents: `bgproc mcp` speaks MCP on stdin/stdout")
  run([[bgproc mcp <<'EOF' | cut -c1-150
{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"demo","version":"1"}}}
{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"listBackgroundProcesses","arguments":{}}}
EOF]])

  note("10. Stopping the daemon ends every job it runs; their records and output stay, for every agent")
  run("bgproc daemon stop")
  run("bgproc ls --status failed")
  run("bgproc grep -C 1 'FAIL|warning'")
  run("bgproc rerun tests")
  run("bgproc daemon stop")
end

local ok, err = xpcall(function()
  setup()
  tour()
end, debug.traceback)
cleanup()
if stopped_by then os.exit(stopped_by == "sigint" and 130 or 1) end
if not ok then
  io.stderr:write("demo: ", tostring(err), "\n")
  os.exit(1)
end
note("Done. `make test` runs the test suite; `lua5.4 bench/run.lua` the benchmarks.")
os.exit(surprises == 0 and 0 or 1)
