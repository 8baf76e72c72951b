-- The cost of `bgproc top`: a live view refreshing once a second over
-- 500 running jobs (`sleep 1000`), in a pty of 200x50, for 10 s. Its CPU
-- time (utime + stime from /proc/<pid>/stat, sampled once its first full
-- frame is up and again at the end) as a percentage of one core, and its
-- peak RSS (VmHWM) before it quits.
--
-- Baseline, in the same run and against the same 500 jobs: what people do
-- without top, `bgproc ls` run once a second for the same 10 s (a fresh
-- CLI process each time, as `watch -n1 bgproc ls` runs it, without
-- watch's own cost); its CPU is the children's time this process reaped
-- (cutime + cstime of /proc/self/stat).
--
-- The daemon's CPU over each window goes to the extras too: both views
-- make it list (and sample) every job once a second.
--
-- bench/interfaces.lua gives this file its private-daemon helpers.
local uv = require "luv"
local core = require "bgproc.core"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local BIN = uv.fs_realpath(here .. "/..") .. "/bin/bgproc"

local function clock_ticks()
  local p = io.popen("getconf CLK_TCK")
  local n = p and tonumber(p:read("a"))
  if p then p:close() end
  return n or 100
end
local TICKS = clock_ticks()

-- Fields of /proc/<pid>/stat after the command name (field 3 is [1]).
local function stat_fields(pid)
  local f = io.open(("/proc/%s/stat"):format(pid))
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local fields = {}
  for x in s:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = x end
  return fields
end

-- CPU seconds of process pid ("self" for this one) (utime + stime), or
-- of the children it reaped (cutime + cstime) with children = true.
local function cpu_seconds(pid, children)
  local f = stat_fields(pid)
  local first = children and 14 or 12 -- utime is field 14, cutime 16
  return (tonumber(f[first]) + tonumber(f[first + 1])) / TICKS
end

local function status_kib(pid, field)
  for line in io.lines(("/proc/%d/status"):format(pid)) do
    local v = line:match("^" .. field .. ":%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local function now_s() return uv.hrtime() / 1e9 end

-- Drive `loop` (draining the pty) until pred() or the deadline.
local function pump(loop, pred, seconds)
  local deadline = now_s() + seconds
  while not pred() and now_s() < deadline do loop:wait(100) end
  return pred()
end

-- `bgproc top` in a pty until its first frame lists every job, then
-- measured for p.seconds: value (% of a core), extras.
local function measure_top(p, env, daemon_pid)
  local loop = core.new()
  local job = assert(loop:spawn { argv = { "lua5.4", BIN, "top", "--interval", tostring(p.interval) }, env = env,
                                  pty = { rows = 50, cols = 200 } })
  local cursor, tail, found = 0, "", false
  local want = ("%d/%d running"):format(p.jobs, p.jobs)
  local up = pump(loop, function()
    local data
    data, cursor = job:read(cursor)
    -- every new byte is searched (the title is drawn once, at a frame's
    -- start), with the end of the last read for a match cut in two
    local window = tail .. data
    found = found or window:find(want, 1, true) ~= nil
    tail = window:sub(-#want)
    return found or not job:alive()
  end, 30)
  assert(up and job:alive(), "bgproc top did not show the jobs: " .. (job:read(math.max(0, cursor - 4096))))
  local pid = job:pid()
  local t0, cpu0, d0 = now_s(), cpu_seconds(pid), cpu_seconds(daemon_pid)
  pump(loop, function() return false end, p.seconds)
  local wall, cpu, dcpu = now_s() - t0, cpu_seconds(pid) - cpu0, cpu_seconds(daemon_pid) - d0
  local rss = status_kib(pid, "VmHWM")
  job:write("q")
  assert(pump(loop, function() return not job:alive() end, 10), "bgproc top did not quit on q")
  local code = job:exit()
  loop:close()
  assert(code == 0, "bgproc top exited " .. tostring(code))
  return 100 * cpu / wall, { rss_kib = rss, daemon_pct = 100 * dcpu / wall, seconds = wall }
end

-- `bgproc ls` once a second for p.seconds: its CPU % of a core.
local function measure_ls(p, env, daemon_pid)
  local loop = core.new()
  local me = "self" -- (luv's os_getpid gives a float here)
  local t0, cpu0, d0 = now_s(), cpu_seconds(me, true), cpu_seconds(daemon_pid)
  for i = 0, math.floor(p.seconds / p.interval) - 1 do
    pump(loop, function() return now_s() >= t0 + i * p.interval end, p.interval)
    local job = assert(loop:spawn { argv = { "lua5.4", BIN, "ls" }, env = env })
    assert(pump(loop, function() return not job:alive() and job:info().eof end, 30), "bgproc ls hung")
    assert(job:exit() == 0, "bgproc ls failed: " .. (job:read(0)))
    job:close()
  end
  pump(loop, function() return false end, t0 + p.seconds - now_s())
  local wall = now_s() - t0
  local cpu, dcpu = cpu_seconds(me, true) - cpu0, cpu_seconds(daemon_pid) - d0
  loop:close()
  return 100 * cpu / wall, { daemon_pct = 100 * dcpu / wall }
end

-- The bench, on interfaces.lua's helpers: with_daemon(fn(c, env)) and
-- start_jobs(c, n, sid).
return function(with_daemon, start_jobs)
  local function against_jobs(measure)
    return function(p)
      return with_daemon(function(c, env)
        start_jobs(c, p.jobs, "bench")
        local status = assert(c:call("daemon/status", {}, 5000))
        local value, extra = measure(p, env, status.pid)
        io.stderr:write(("top: %.2f%% of a core%s, daemon %.1f%%\n"):format(value,
          extra.rss_kib and (", peak RSS %.1f MiB"):format(extra.rss_kib / 1024) or " (bgproc ls each second)",
          extra.daemon_pct))
        return value, extra
      end)
    end
  end
  return {
    title = "top: `bgproc top` refreshing at 1 Hz over 500 running jobs, 10 s (peak RSS: its VmHWM, in the extras)",
    unit = "% of a core",
    target = "<= 5% of one core",
    lower_is_better = true,
    params = { jobs = 500, seconds = 10, interval = 1 },
    run = against_jobs(measure_top),
    baseline_title = "`bgproc ls` once a second over the same jobs for the same time (as `watch -n1` would run it; not C)",
    baseline_fn = against_jobs(measure_ls),
    seed_na = "n/a (no CLI)",
    ok = function(r) return r.value <= 5 end,
  }
end
