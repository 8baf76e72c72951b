-- The luv column of the report: the same workloads written directly on
-- luv's uv.spawn, as a Lua program without bgproc would do them. Each runs
-- in a fresh lua5.4 process (run.lua's --child mode), like bgproc's runs.
local uv = require "luv"
local common = require "common"

local luvbase = {}

-- Start argv with stdout on a pipe read into on_data; on_done() once the
-- process has exited and the pipe reached EOF. Returns the process handle.
local function start(argv, on_data, on_done)
  local out = uv.new_pipe(false)
  local exited, eof = false, false
  local function check()
    if exited and eof then on_done() end
  end
  local proc
  proc = assert(uv.spawn(argv[1], { args = { table.unpack(argv, 2) }, stdio = { nil, out, nil } },
    function()
      proc:close()
      exited = true
      check()
    end))
  out:read_start(function(err, data)
    assert(not err, err)
    if data then
      on_data(data)
    else
      out:close()
      eof = true
      check()
    end
  end)
  return proc
end

-- uv.spawn `/bin/true` (stdout on a pipe, as a manager captures it), wait
-- for its exit and EOF; runs per second.
function luvbase.spawn(n)
  return common.rate(n, function()
    local done = false
    start({ "/bin/true" }, function() end, function() done = true end)
    while not done do uv.run("once") end
  end)
end

-- A job writing `bytes` through a pipe, read_start into a Lua ring that
-- keeps the last `ring` bytes (whole chunks); MiB/s.
function luvbase.capture(bytes, ring, writer)
  local chunks, first, last, held, total = {}, 1, 0, 0, 0
  local done = false
  local t0 = uv.hrtime()
  start({ writer, "write", tostring(bytes) }, function(data)
    last = last + 1
    chunks[last] = data
    held, total = held + #data, total + #data
    while held - #chunks[first] >= ring do
      held = held - #chunks[first]
      chunks[first] = nil
      first = first + 1
    end
  end, function() done = true end)
  while not done do uv.run("once") end
  local dt = (uv.hrtime() - t0) / 1e9
  assert(total == bytes, "lost bytes")
  return bytes / 1048576 / dt
end

-- n concurrent `sleep 1000` with their stdout read, then SIGTERM to each
-- and wait for every exit; the kill-all ms, with RSS growth and zombies.
function luvbase.scale(n)
  local before = common.status_kib("VmRSS")
  local procs, running = {}, n
  local pids = {}
  for i = 1, n do
    procs[i] = start({ "sleep", "1000" }, function() end, function() running = running - 1 end)
    pids[i] = procs[i]:get_pid()
  end
  uv.run("nowait")
  local grown = common.status_kib("VmRSS") - before
  local t0 = uv.hrtime()
  for _, proc in ipairs(procs) do proc:kill("sigterm") end
  while running > 0 do uv.run("once") end
  local ms = (uv.hrtime() - t0) / 1e6
  -- its own jobs left as zombies (not another's child of this process)
  local zombies = 0
  for _, pid in ipairs(pids) do
    local f = io.open(("/proc/%d/stat"):format(pid))
    local state = f and f:read("a"):match("%) (%a)")
    if f then f:close() end
    if state == "Z" then zombies = zombies + 1 end
  end
  return ms, { grown_kib = grown, zombies = zombies, n = n, pids = pids }
end

return luvbase
