-- Benchmarks of bgproc.regex's line search (re:search_file, for a search
-- over the jobs' output files) against ripgrep.
--
-- Each run writes 1 GiB of log-like output (1024 files of 1 MiB: times,
-- levels, components, paths, numbers; a rare needle on a few lines) into
-- a temporary directory, in a separate process, syncs and reads it once so
-- it comes from the page cache, times the search `reps` times (median),
-- and deletes the directory. bgproc's run searches the files with
-- regex.search_files (a thread per core; one thread's figure, the files
-- one after the other with re:search_file, is in its extra); the baseline
-- runs
-- `rg -n PATTERN DIR > FILE` (to a file: into /dev/null rg stops at the
-- first match), which uses every core. run.lua alternates the two over
-- its rounds and compares the medians.
--
--   lua5.4 bench/run.lua search_word search_regex search_icase
--
-- As a script (the generator): lua5.4 bench/search.lua --generate DIR FILES BYTES
local uv = require "luv"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

-- The needle: on NEEDLE_LINES lines of the whole set, nowhere else.
local NEEDLE = "deadlock"

-- One log line from the generator's random state.
local LEVELS = {} -- of 32 lines: 20 INFO, 8 DEBUG, 3 WARN, 1 ERROR
for i = 1, 32 do LEVELS[i] = i <= 20 and "INFO " or i <= 28 and "DEBUG" or i <= 31 and "WARN " or "ERROR" end
local COMPONENTS = { "http", "db-pool", "worker-1", "worker-2", "worker-3", "cache", "scheduler", "auth", "gc" }
local VERBS = { "GET", "POST", "PUT", "DELETE" }
local PATHS = { "/api/v1/users/%d/orders", "/api/v1/items/%d", "/static/js/app.%x.js", "/health",
  "/api/v2/search?q=caf\xc3\xa9&page=%d", "/api/v1/sessions/%x/refresh" }

local function log_line(t, rnd)
  local ts = ("2026-11-25T%02d:%02d:%02d.%03dZ"):format(t // 3600000 % 24, t // 60000 % 60, t // 1000 % 60, t % 1000)
  local level = LEVELS[rnd(#LEVELS)]
  local comp = COMPONENTS[rnd(#COMPONENTS)]
  local msg
  if level == "ERROR" then
    local k = rnd(4)
    if k == 1 then
      msg = ("request %s failed: upstream timeout %dms"):format(PATHS[rnd(2)]:format(rnd(99999)), rnd(10) * 500)
    elseif k == 2 then
      msg = ("connection to 10.0.%d.%d:5432 refused (attempt %d)"):format(rnd(255), rnd(255), rnd(5))
    elseif k == 3 then
      msg = ("unhandled exception in handler: TypeError: cannot read property 'id' of undefined at %s:%d")
        :format("/srv/app/src/routes/orders.js", rnd(400))
    else
      msg = ("job %x exited with status %d after %d.%03ds"):format(rnd(1 << 30), rnd(255), rnd(60), rnd(999))
    end
  elseif level == "WARN " then
    msg = rnd(8) > 1 and ("slow query (%dms): SELECT * FROM orders WHERE user_id = %d"):format(rnd(3000), rnd(99999))
      or ("disk usage at %d%% on /var/lib/app, retry timeout %ds"):format(80 + rnd(19), rnd(30))
  elseif level == "DEBUG" then
    msg = ("cache %s key=user:%d size=%d ttl=%ds"):format(rnd(2) == 1 and "hit" or "miss", rnd(99999), rnd(65536), rnd(3600))
  else
    local path = PATHS[rnd(#PATHS)]:format(rnd(99999))
    msg = ("%s %s %d %dms %dB \xe2\x86\x92 client=192.168.%d.%d"):format(VERBS[rnd(#VERBS)], path,
      ({ 200, 200, 200, 201, 204, 304, 404, 500 })[rnd(8)], rnd(900), rnd(100000), rnd(255), rnd(255))
  end
  return ("%s %s [%s] %s\n"):format(ts, level, comp, msg)
end

-- Write `files` files of about `bytes` each into dir: 16 blocks of
-- generated lines, each file one of them behind its own first line, and
-- every 128th file with the needle on one line.
local function generate(dir, files, bytes)
  local seed = 0x2545F491
  local function rnd(n) -- xorshift, reproducible
    seed = seed ~ (seed << 13) & 0xffffffff
    seed = seed ~ (seed >> 17)
    seed = seed ~ (seed << 5) & 0xffffffff
    return seed % n + 1
  end
  local blocks, t = {}, 0
  for b = 1, 16 do
    local lines, size = {}, 0
    while size < bytes do
      t = t + rnd(40)
      local line = log_line(t, rnd)
      lines[#lines + 1] = line
      size = size + #line
    end
    blocks[b] = lines
  end
  local needles = 0
  for i = 1, files do
    local lines = blocks[(i - 1) % 16 + 1]
    local f = assert(io.open(("%s/job-%04d.log"):format(dir, i), "wb"))
    f:write(("== job %d: output of `npm run serve` ==\n"):format(i))
    if i % 128 == 1 then
      local at = #lines // 2 + i % 97
      f:write(table.concat(lines, "", 1, at - 1))
      f:write(("2026-11-25T06:00:00.000Z ERROR [db-pool] %s detected on orders_pkey, transaction %d aborted\n")
        :format(NEEDLE, i))
      f:write(table.concat(lines, "", at + 1))
      needles = needles + 1
    else
      f:write(table.concat(lines))
    end
    f:close()
  end
  return needles
end

if select(1, ...) == "--generate" then
  local _, dir, files, bytes = ...
  generate(dir, tonumber(files), tonumber(bytes))
  os.exit(0)
end

-- A word for sh, quoted.
local function quote(word)
  return "'" .. tostring(word):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  return s[(#s + 1) // 2]
end

-- Make the data, call fn(dir, paths, bytes), delete the data (also when fn
-- raises).
local function with_data(p, fn)
  local dir = assert(uv.fs_mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/bgproc-bench-search-XXXXXX"))
  local res = table.pack(pcall(function()
    assert(os.execute(("lua5.4 %s/search.lua --generate %s %d %d"):format(here, dir, p.files, p.file_bytes)),
      "the generator failed")
    local paths, bytes = {}, 0
    for i = 1, p.files do
      paths[i] = ("%s/job-%04d.log"):format(dir, i)
      bytes = bytes + assert(uv.fs_stat(paths[i])).size
    end
    -- on disk, then read once: both searches read from the page cache
    assert(os.execute("sync -f " .. dir .. "/job-0001.log"))
    assert(os.execute(("cat %s/*.log > /dev/null"):format(dir)))
    return fn(dir, paths, bytes)
  end))
  os.execute(("rm -rf %s %s.out"):format(dir, dir))
  assert(res[1], res[2])
  return table.unpack(res, 2, res.n)
end

-- Median MiB/s of `reps` calls of once() (which returns the matching lines).
local function timed(p, bytes, once)
  local rates, lines = {}, nil
  for r = 1, p.reps do
    local t0 = uv.hrtime()
    local n = once()
    rates[r] = bytes / 1048576 / ((uv.hrtime() - t0) / 1e9)
    assert(lines == nil or n == lines, "the number of lines found changed")
    lines = n
  end
  return median(rates), lines
end

-- bgproc: regex.search_files over the files (a thread per core), and
-- re:search_file on each in turn (one thread) for the extra figure.
local function run_bgproc(p)
  local regex = require "bgproc.regex"
  return with_data(p, function(_, paths, bytes)
    local re = assert(regex.new(p.pattern, "m" .. (p.flags or "")))
    local rate, lines = timed(p, bytes, function()
      local n = 0
      for _, r in ipairs(regex.search_files(re, paths, { max = p.max })) do
        assert(r.lines, r.error)
        assert(not r.more, "more than max lines in one file")
        n = n + #r.lines
      end
      return n
    end)
    local rate1, lines1 = timed(p, bytes, function()
      local n = 0
      for _, path in ipairs(paths) do
        local found, more = re:search_file(path, { max = p.max })
        assert(found, more)
        assert(not more, "more than max lines in one file")
        n = n + #found
      end
      return n
    end)
    assert(lines == p.lines and lines1 == p.lines, ("bgproc found %d and %d lines, want %d"):format(lines, lines1, p.lines))
    io.stderr:write(("%s: bgproc %.0f MiB/s (one thread: %.0f MiB/s), %d lines\n"):format(p.name, rate, rate1, lines))
    return rate, { lines = lines, one_thread_mibs = rate1 }
  end)
end

local function run_rg(p)
  return with_data(p, function(dir, _, bytes)
    local out = dir .. ".out" -- not in dir, where rg would search it
    local cmd = ("rg --no-config -n %s %s %s > %s"):format(p.flags == "i" and "-i" or "", quote(p.pattern), dir, out)
    local rss = 0
    local rate, lines = timed(p, bytes, function()
      local ok, err = sh(("(/usr/bin/time -f %%M %s) 2>&1"):format(cmd))
      assert(ok, "rg failed: " .. err)
      rss = math.max(rss, tonumber(err:match("(%d+)%s*$")) or 0)
      local _, wc = sh("wc -l < " .. out)
      return tonumber(wc)
    end)
    assert(lines == p.lines, ("rg found %d lines, want %d"):format(lines, p.lines))
    io.stderr:write(("%s: rg %.0f MiB/s, %d lines, peak RSS %d KiB\n"):format(p.name, rate, lines, rss))
    return rate, { lines = lines, rg_rss_kib = rss }
  end)
end

local benches = {}

local function bench(name, title, params)
  params.name, params.files, params.file_bytes, params.reps = name, 1024, 1 << 20, 3
  benches[name] = {
    title = title,
    unit = "MiB/s",
    target = "ratio >= 0.5 (rg -n on 2 cores)",
    params = params,
    run = run_bgproc,
    baseline_fn = run_rg,
    baseline_title = "`rg -n PATTERN DIR > FILE` (ripgrep, all cores)",
    ok = function(r) return r.ratio ~= nil and r.ratio >= 0.5 end,
  }
end

bench("search_word", "search: a plain word in 1 GiB of logs (1024 files), re:search_file", {
  pattern = NEEDLE, lines = 8 })
bench("search_regex", "search: `ERROR.*timeout \\d+ms` in 1 GiB of logs (1024 files), re:search_file", {
  pattern = [[ERROR.*timeout \d+ms]], lines = 81472 })
bench("search_icase", "search: `/disk usage.*retry/i` in 1 GiB of logs (1024 files), re:search_file", {
  pattern = "disk usage.*retry", flags = "i", lines = 120192 })

return benches
