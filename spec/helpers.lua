-- Shared by the specs: process-table checks and small waits. Everything
-- here reads the real /proc; nothing is mocked.
local uv = require "luv"

local helpers = {}

local root = os.getenv("PWD") or "."
helpers.root = root

function helpers.now_ms()
  return uv.hrtime() / 1e6
end

-- Poll fn() until it returns a truthy value or timeout_ms passes.
function helpers.wait_until(fn, timeout_ms, step_ms)
  local deadline = helpers.now_ms() + (timeout_ms or 5000)
  repeat
    local v = fn()
    if v then return v end
    uv.sleep(step_ms or 10)
  until helpers.now_ms() > deadline
  return fn()
end

-- A negative check, only after a positive event: pred() keeps holding for
-- ms. Polls every 10 ms and returns false as soon as pred() turns false,
-- true when it held the whole window. tick(step_ms), when given, passes
-- the time instead of sleeping (e.g. drives a manager's loop: whatever
-- must not happen gets its chance to). Never a way to wait for something.
function helpers.holds_for(ms, pred, tick)
  local deadline = helpers.now_ms() + ms
  repeat
    if not pred() then return false end
    if tick then tick(10) else uv.sleep(10) end
  until helpers.now_ms() >= deadline
  return pred() and true or false
end

-- A whole file's contents, or nil when it cannot be read.
function helpers.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- /proc/<pid>/stat fields (bgproc.lib.proc's: state, ppid, pgrp, comm,
-- start, cpu...; sid is its session), or nil when the pid is gone.
function helpers.stat(pid)
  local st = require("bgproc.lib.proc").stat(pid)
  if st then st.sid = st.session end
  return st
end

-- Running (not a zombie, not gone).
function helpers.alive(pid)
  local st = helpers.stat(pid)
  return st ~= nil and st.state ~= "Z" and st.state ~= "X"
end

local function all_pids()
  local pids = {}
  for name in uv.fs_scandir_next, assert(uv.fs_scandir("/proc")) do
    if name:match("^%d+$") then pids[#pids + 1] = tonumber(name) end
  end
  return pids
end

-- Processes whose stat satisfies keep(st): { {pid=, state=}, ... }
local function select_procs(keep)
  local out = {}
  for _, pid in ipairs(all_pids()) do
    local st = helpers.stat(pid)
    if st and keep(st) then out[#out + 1] = { pid = pid, state = st.state } end
  end
  return out
end

-- Live members of a process group: a list of pids.
function helpers.group(pgid)
  local out = {}
  for _, p in ipairs(select_procs(function(st) return st.pgrp == pgid and st.state ~= "Z" end)) do
    out[#out + 1] = p.pid
  end
  return out
end

-- Children of pid: { {pid=, state=}, ... }
function helpers.children(pid)
  return select_procs(function(st) return st.ppid == pid end)
end

-- Marking processes a spec starts: an env var with a random value, passed
-- in the job's env, that every descendant inherits. Only marked processes
-- are counted or killed, never another's.
helpers.MARK = "BGPROC_SPEC_MARK"

function helpers.new_marker()
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(8)
  f:close()
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- Live processes whose environment holds MARK=token: a list of pids.
function helpers.marked(token)
  local want, out = helpers.MARK .. "=" .. token .. "\0", {}
  for _, pid in ipairs(all_pids()) do
    local f = io.open("/proc/" .. pid .. "/environ", "rb")
    if f then
      local env = f:read("a") or ""
      f:close()
      if env:find(want, 1, true) and helpers.alive(pid) then out[#out + 1] = pid end
    end
  end
  return out
end

-- SIGKILL every marked process and wait until none is left.
function helpers.kill_marked(token)
  for _, pid in ipairs(helpers.marked(token)) do uv.kill(pid, "sigkill") end
  assert(helpers.wait_until(function() return #helpers.marked(token) == 0 end, 5000),
    "marked processes survive SIGKILL")
end

-- A "Vm..." figure of /proc/<pid>/status (default: ours), in KiB.
function helpers.vm_kib(field, pid)
  for line in io.lines("/proc/" .. (pid or "self") .. "/status") do
    local v = line:match("^" .. field .. ":%s+(%d+)")
    if v then return tonumber(v) end
  end
end

-- How much this process's peak RSS rose over fn(), in KiB. The kernel
-- keeps the peak (VmHWM, reset through clear_refs), so nothing is sampled
-- while fn runs: sampling allocates, and under ASan every freed buffer
-- stays resident in its quarantine, which made the measure grow itself.
-- Where the peak cannot be reset, it falls back to sampling through
-- on_sample() (pass it to the pump) and reports the sampled peak.
function helpers.peak_growth_kib(fn)
  collectgarbage()
  collectgarbage()
  local f = io.open("/proc/self/clear_refs", "w")
  local reset = f and f:write("5") and f:close()
  local before = helpers.vm_kib("VmRSS")
  local peak = before
  local function on_sample()
    if not reset then peak = math.max(peak, helpers.vm_kib("VmRSS")) end
  end
  fn(on_sample)
  if reset then peak = helpers.vm_kib("VmHWM") end
  return peak - before
end

function helpers.zombies_of(pid)
  local out = {}
  for _, c in ipairs(helpers.children(pid)) do
    if c.state == "Z" then out[#out + 1] = c.pid end
  end
  return out
end

-- Our own pid (busted's process).
function helpers.self_pid()
  local f = assert(io.open("/proc/self/stat"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("^(%d+)"))
end

-- Open fds of this process (scandir's own directory fd included, always),
-- or of process pid.
function helpers.open_fds(pid)
  local n = 0
  for _ in uv.fs_scandir_next, assert(uv.fs_scandir("/proc/" .. (pid or "self") .. "/fd")) do n = n + 1 end
  return n
end

-- The Lua interpreter for child Lua processes: lua5.4, or under `make asan`
-- the sanitizer-built host that can load the sanitized core.
helpers.lua = os.getenv("BGPROC_LUA") or "lua5.4"

-- Environment for a child lua5.4 that must find bgproc's modules.
function helpers.lua_env(extra)
  local function absolute(paths)
    return (paths:gsub("[^;]+", function(entry)
      if entry:sub(1, 1) == "/" then return entry end
      return root .. "/" .. entry:gsub("^%./", "")
    end))
  end
  local env = {
    LUA_PATH_5_4 = absolute(package.path),
    LUA_CPATH_5_4 = absolute(package.cpath),
  }
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

-- Drive a core loop until pred() holds; returns true, or false on timeout.
function helpers.pump(loop, pred, timeout_ms)
  local deadline = helpers.now_ms() + (timeout_ms or 5000)
  while not pred() do
    local left = deadline - helpers.now_ms()
    if left <= 0 then return false end
    loop:wait(math.floor(math.min(left, 100)))
  end
  return true
end

-- Run a job to the end (exit and EOF) and return its output.
function helpers.finish(loop, job, timeout_ms)
  local ok = helpers.pump(loop, function()
    local info = job:info()
    return info.state ~= "running" and info.eof
  end, timeout_ms)
  assert(ok, "job did not finish in time: " .. tostring(job))
  return (job:read(0))
end

-- Run a shell command; returns ok, its output (stdout and stderr). The
-- pipe is always closed, so no child is left unreaped.
function helpers.sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

-- A new temporary directory.
function helpers.tmpdir()
  local ok, out = helpers.sh("mktemp -d")
  assert(ok, out)
  return (out:gsub("%s+$", ""))
end

-- A manager for a spec: no user config, no plugins, not on luv's loop,
-- unless opts say otherwise. helpers.cleanup() shuts down all of them.
local managers = {}
function helpers.manager(opts)
  local bgproc = require "bgproc"
  opts = opts or {}
  -- plugins come from the config when a spec gives one
  local o = { config = {}, plugins = opts.config == nil and {} or nil, luv = false }
  for k, v in pairs(opts) do o[k] = v end
  local m = bgproc.new(o)
  managers[#managers + 1] = m
  return m
end

function helpers.cleanup()
  for i = #managers, 1, -1 do
    managers[i]:shutdown()
    managers[i] = nil
  end
end

-- m:call that must succeed.
function helpers.ok(m, tool, args, ctx)
  local r, err = m:call(tool, args, ctx)
  assert(r, err and (err.code .. ": " .. err.message))
  return r
end

-- m:call that must fail with code; returns the message.
function helpers.fails(m, code, tool, args, ctx)
  local r, err = m:call(tool, args, ctx)
  assert(r == nil, ("%s should have failed with %s"):format(tool, code))
  assert(err.code == code, ("expected %s, got %s: %s"):format(code, err.code, err.message))
  return err.message
end

-- A tools/call through a bgproc.client connection that must succeed.
function helpers.tool_call(c, name, args, sid)
  local r, err = c:call("tools/call", { name = name, arguments = args, sessionId = sid }, 15000)
  assert(r, "tools/call " .. name .. " failed: " .. (err and tostring(err.message) or "?"))
  return r
end

-- A private daemon for a spec: its own socket, state and config dirs, so a
-- user's real daemon is never touched. Returns an env table for child
-- processes (bin/bgproc, bgproc mcp) and a stop function.
function helpers.private_daemon(config_lua)
  local dir = helpers.tmpdir()
  local cfg = dir .. "/config.lua"
  local f = assert(io.open(cfg, "w"))
  f:write(config_lua or "return { plugins = {}, progressMs = 200 }\n")
  f:close()
  local env = helpers.lua_env {
    BGPROC_SOCKET = dir .. "/run/daemon.sock",
    BGPROC_CONFIG = cfg,
    XDG_STATE_HOME = dir .. "/state",
    XDG_CONFIG_HOME = dir .. "/config",
    BGPROC_SESSION = false,
    NO_COLOR = false,
  }
  local d = { dir = dir, env = env, socket = env.BGPROC_SOCKET, bin = helpers.root .. "/bin/bgproc" }
  -- run `bgproc ARGS...` to the end: stdout+stderr, exit code
  function d.run(args, extra_env, timeout_ms)
    local core = require "bgproc.core"
    local loop = core.new()
    local e = {}
    for k, v in pairs(env) do e[k] = v end
    for k, v in pairs(extra_env or {}) do e[k] = v end
    local argv = { "lua5.4", d.bin }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local job = assert(loop:spawn { argv = argv, env = e })
    local out = helpers.finish(loop, job, timeout_ms or 20000)
    local code, sig = job:exit()
    local stdout = (job:read(0, nil, "stdout"))
    local stderr = (job:read(0, nil, "stderr"))
    loop:close()
    return out, code or sig, stdout, stderr
  end
  function d.stop()
    d.run { "daemon", "stop" }
    os.execute("rm -rf " .. dir)
  end
  return d
end

-- Start a daemon on private daemon d's socket as our child (its exit is
-- ours to see): argv, default `bgproc daemon run`. Returns { loop, job,
-- pid, client } once a client is connected.
function helpers.spawn_daemon(d, argv)
  local loop = require("bgproc.core").new()
  local job = assert(loop:spawn { argv = argv or { helpers.lua, d.bin, "daemon", "run" }, env = d.env })
  local c
  local up = helpers.wait_until(function()
    loop:dispatch()
    c = require("bgproc.client").connect { socket = d.socket, autostart = false }
    return c or not job:alive()
  end, 15000, 20)
  assert(up and c, "the daemon did not come up: " .. tostring((job:read(0))))
  return { loop = loop, job = job, pid = job:pid(), client = c }
end

-- A copy of env with extra's entries added (false removes one).
function helpers.env_with(env, extra)
  local out = {}
  for k, v in pairs(env) do out[k] = v end
  for k, v in pairs(extra or {}) do out[k] = v or nil end
  return out
end

-- Run a node script to its end (it must exit 0) and decode the JSON object
-- on its last line of stdout.
function helpers.node_json(argv, env, timeout_ms)
  local cjson = require "cjson"
  local core = require "bgproc.core"
  local loop = core.new()
  local full = { "node" }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  local job = assert(loop:spawn { argv = full, env = env })
  helpers.finish(loop, job, timeout_ms or 60000)
  local out, err = (job:read(0, nil, "stdout")), (job:read(0, nil, "stderr"))
  local code = job:exit()
  loop:close()
  assert(code == 0, "node failed: " .. err .. out)
  return cjson.decode(out:match("([^\n]+)\n?$"))
end

-- Write text to a file (replacing it).
function helpers.write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- Fixture path.
function helpers.fixture(name)
  return root .. "/spec/fixtures/" .. name
end

return helpers
