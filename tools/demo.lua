-- `make demo`: a short scripted tour of what bgproc does, through the CLI
-- and a private daemon (its own socket in a temporary directory, so a
-- daemon you may run yourself is not touched).
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/../lua/?.lua;" .. here .. "/../lua/?/init.lua;" .. package.path
package.cpath = here .. "/../lua/?.so;" .. package.cpath

local uv = require "luv"
local root = uv.fs_realpath(here .. "/..")
local dir = os.tmpname()
os.remove(dir)
uv.fs_mkdir(dir, tonumber("700", 8))
local cfg = io.open(dir .. "/config.lua", "w")
cfg:write("return { plugins = { 'autotag' } }\n")
cfg:close()
local env = ("BGPROC_SOCKET=%s/d.sock BGPROC_CONFIG=%s/config.lua XDG_STATE_HOME=%s/state NO_COLOR=1 "):format(dir, dir, dir)

local function say(fmt, ...) io.write(("\n== " .. fmt .. "\n"):format(...)) io.flush() end

-- Run `bgproc ARGS` and show it as typed.
local function bgproc(args, quiet)
  io.write("$ bgproc ", args, "\n")
  io.flush()
  local p = io.popen(env .. "lua5.4 " .. root .. "/bin/bgproc " .. args .. " 2>&1")
  local out = p:read("a")
  p:close()
  if not quiet then io.write((out:gsub("([^\n]+)", "  %1"))) end
  return out
end

local function members(pgid)
  local n = 0
  local p = io.popen("exec ps -o stat= -g " .. pgid .. " 2>/dev/null")
  for stat in p:lines() do if not stat:find("Z") then n = n + 1 end end
  p:close()
  return n
end

say("1. Start a dev server and a build in the background (the daemon starts on demand)")
bgproc([[start --name web --ready 'listening on' -- sh -c 'echo compiling...; sleep 0.3; echo "listening on :8080"; while sleep 0.2; do echo "GET / 200"; done']])
bgproc([[start --name build --tag build 'for i in 1 2 3; do echo "[$i/3] building"; sleep 0.1; done; echo "warning: unused x" >&2']])

say("2. Wait for readiness instead of sleeping, then look")
local web = bgproc("--json ls --name web", true):match('"id":"([^"]+)"')
bgproc("wait " .. web .. " --ready --timeout 5000")
bgproc("wait --tag build")
bgproc("ls")

say("3. Read output: the last lines, only stderr, or only what matches")
bgproc("logs " .. web .. " -n 3")
local build = bgproc("--json ls --name build", true):match('"id":"([^"]+)"')
bgproc("logs " .. build .. " --stderr")
bgproc("logs " .. build .. " --grep '^\\[2'")

say("4. Stop the server: its whole process tree goes, nothing is left behind")
local pid = tonumber(bgproc("--json ls --name web", true):match('"pid":(%d+)'))
print(("  (process group %d has %d processes)"):format(pid, members(pid)))
bgproc("kill " .. web)
print(("  (process group %d has %d processes)"):format(pid, members(pid)))

say("5. A failed start is an error at once, not a job that looks alive")
bgproc("start -- no-such-tool --flag")

say("6. Every end says why, and the owner hears of it without polling (here a Claude Code hook)")
bgproc([[start --name tests --tag test 'echo "FAIL parser.test (3 failures)"; exit 1']])
bgproc("wait --tag test", true)
bgproc("ls")
io.write("$ echo '{}' | bgproc hook claude PostToolUse\n")
local hook = io.popen("echo '{}' | " .. env .. "lua5.4 " .. root .. "/bin/bgproc hook claude PostToolUse")
io.write((hook:read("a"):gsub("([^\n]+)", "  %1")))
hook:close()

say("7. The same tools for AI agents: `bgproc mcp` speaks MCP on stdin/stdout")
local req = [[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"demo","version":"1"}}}
{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"listBackgroundProcesses","arguments":{}}}
]]
local f = io.open(dir .. "/req", "w")
f:write(req)
f:close()
io.write("$ (initialize; tools/call listBackgroundProcesses) | bgproc mcp\n")
local p = io.popen(env .. "lua5.4 " .. root .. "/bin/bgproc mcp < " .. dir .. "/req")
for line in p:lines() do io.write("  ", line:sub(1, 150), line:len() > 150 and "..." or "", "\n") end
p:close()

say("8. Stopping the daemon ends every job it runs")
bgproc("daemon stop")
os.execute("rm -rf " .. dir)
say("Done. `make test` runs the test suite; `lua5.4 bench/run.lua` the benchmarks.")
