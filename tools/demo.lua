-- `make demo`: a short scripted tour of what bgproc does.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/../lua/?.lua;" .. here .. "/../lua/?/init.lua;" .. package.path
package.cpath = here .. "/../lua/?.so;" .. package.cpath

local core = require "bgproc.core"

local function say(fmt, ...) io.write(("\n== " .. fmt .. "\n"):format(...)) end
local function show(label, text)
  for line in (text .. ""):gmatch("[^\n]+") do io.write("   ", label, " | ", line, "\n") end
end
local function finish(loop, job)
  while job:alive() or not job:info().eof do loop:wait(200) end
end
-- live (not zombie) processes of a session/group
local function members(pgid)
  local n = 0
  local p = io.popen("exec ps -o stat= -g " .. pgid .. " 2>/dev/null")
  for stat in p:lines() do if not stat:find("Z") then n = n + 1 end end
  p:close()
  return n
end

-- subreaper: this demo owns its process, so orphans of its jobs are its to reap
local loop = core.new { subreaper = true }

say("1. A job: stdout and stderr kept in arrival order, and told apart")
local job = assert(loop:spawn {
  command = "echo compiling; sleep 0.05; echo 'warning: unused x' >&2; sleep 0.05; echo done",
})
finish(loop, job)
show("both  ", (job:read(0)))
show("stderr", (job:read(0, nil, "stderr")))
print(("   exit code %d, pid %d led its own process group"):format(job:exit(), job:pid()))

say("2. A failed spawn is an error value, never a job that looks alive")
print("   " .. select(2, loop:spawn { argv = { "no-such-tool" } }))
print("   " .. select(2, loop:spawn { argv = { "true" }, cwd = "/no/such/dir" }))

say("3. 64 MiB of output through a 64 KiB ring: memory stays flat")
local big = assert(loop:spawn { command = "seq 1 10000000 | head -c 67108864", ring = 65536 })
finish(loop, big)
local tail, head = big:offsets()
local _, _, dropped = big:read(0)
print(("   captured %d bytes, kept %d, dropped %d; the last 2 lines:"):format(head, head - tail, dropped))
show("tail  ", (big:tail(2)))

say("4. Stopping a job stops its whole process group")
local server = assert(loop:spawn { command = "sleep 1000 & sleep 1000 & echo serving; wait" })
while not (server:read(0)):find("serving") do loop:wait(100) end
print(("   group %d has %d processes; sending TERM to the group"):format(server:pid(), members(server:pid())))
server:kill("TERM")
finish(loop, server)
print(("   exited by %s; processes left in the group: %d"):format(select(2, server:exit()), members(server:pid())))

say("5. If the manager dies, even by SIGKILL, its guardian ends every job")
local host = assert(loop:spawn {
  argv = { "lua5.4", "-e", [[
    local loop = require("bgproc.core").new()
    local job = loop:spawn { command = "sleep 1000 & sleep 1000 & wait" }
    io.write(job:pid(), "\n") io.flush()
    while true do loop:wait(1000) end
  ]] },
  env = { LUA_CPATH_5_4 = package.cpath },
})
while not (host:read(0)):find("\n") do loop:wait(100) end
local pgid = tonumber((host:read(0)):match("%d+"))
os.execute("sleep 0.2")
print(("   the manager's job group %d has %d processes; kill -9 the manager"):format(pgid, members(pgid)))
host:kill("KILL")
finish(loop, host)
os.execute("sleep 0.6")
print(("   processes left in group %d: %d"):format(pgid, members(pgid)))

loop:close()
say("Done. `make test` runs the suite; `lua5.4 bench/run.lua` the benchmarks.")
