-- One reader of /proc for the Lua side: a process's stat fields, its
-- argv, whether it is alive. Every function returns nil for a process
-- that is gone (or went while it was read).
local files = require "bgproc.lib.files"

local proc = {}

-- /proc/<pid>/<name>: pid a number (12 or 12.0, as JSON gives it) or "self".
local function path_of(pid, name)
  return ("/proc/%s/%s"):format(math.tointeger(pid) or pid, name)
end

local read = files.read

-- { pid, state, ppid, pgrp, session, tty, comm, start, cpu } of pid
-- ("self" for this process), or nil. start: clock ticks after boot (tells
-- a reused pid apart); cpu: user + system ticks.
function proc.stat(pid)
  local s = read(path_of(pid, "stat"))
  if not s then return nil end
  local self_pid, comm, rest = s:match("^(%d+) %((.*)%) (.*)$")
  if not rest then return nil end
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  -- rest starts at field 3 (state): utime, stime are 14, 15; starttime 22
  return { pid = tonumber(self_pid), state = f[1], ppid = tonumber(f[2]), pgrp = tonumber(f[3]),
           session = tonumber(f[4]), tty = tonumber(f[5]), comm = comm, start = f[20],
           cpu = tonumber(f[12]) + tonumber(f[13]) }
end

-- The argv of pid, or nil.
function proc.argv(pid)
  local s = read(path_of(pid, "cmdline"))
  if not s then return nil end
  local argv = {}
  for w in s:gmatch("([^%z]*)%z") do argv[#argv + 1] = w end
  return argv
end

-- Running: neither gone nor a zombie.
function proc.alive(pid)
  local st = proc.stat(pid)
  return st ~= nil and st.state ~= "Z" and st.state ~= "X"
end

-- This process's pid (luv's getpid is the same, where luv is loaded).
function proc.self_pid()
  local st = proc.stat("self")
  return st and st.pid
end

return proc
