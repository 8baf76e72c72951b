-- Benchmarks of history on disk (issue 12): what the store costs when
-- jobs are made, listing and searching what it brings back, a daemon's
-- first answer over a big history, and memory over a long one.
--
--   lua5.4 bench/run.lua engine_spawn_store list_store first_call history_memory search_store
--
-- Every history here is made by real jobs through the engine (bgproc.new
-- { store = ... } and createBackgroundProcess), never by writing rows:
-- the database's schema is not this file's to know.
--
-- Files: all of them go in one temporary directory. run.lua's process
-- names it when it loads this group, hands its path to the benches'
-- processes in BGPROC_BENCH_HISTORY_TMP (the first to need it makes it)
-- and removes it when it exits.
-- The two big histories (10,000 records, for list_store and first_call;
-- 1 GiB of output, for search_store) are made there once per run, by the
-- first bench that needs them (in a process of their own: `lua5.4
-- bench/history.lua --make records|search ...`), and reused by the
-- others. A bench's own files go in a directory of its own, removed when
-- it returns. (A bench run without run.lua's process makes, and removes,
-- a directory of its own.)
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local as_script = select(1, ...) == "--make"
if as_script then
  package.path = here .. "/../lua/?.lua;" .. here .. "/../lua/?/init.lua;" .. here .. "/?.lua;" .. package.path
  package.cpath = here .. "/../lua/?.so;" .. package.cpath
end

local uv = require "luv"
local cjson = require "cjson"
local core = require "bgproc.core"
local common = require "common"

local ROOT = uv.fs_realpath(here .. "/..")
local BIN = ROOT .. "/bin/bgproc"
local SELF = ROOT .. "/bench/history.lua"
local TMP_ENV = "BGPROC_BENCH_HISTORY_TMP"

local TAGSETS = { { "server" }, { "test" }, { "build" }, { "watch" }, { "db" },
                  { "frontend" }, { "backend" }, { "lint" }, { "docs" }, { "misc" } }
local GiB = 1024 * 1024 * 1024

-- Enough retention to keep every record a bench makes, and its output.
local function retention(records)
  return { maxFinished = math.max(20000, records or 0), maxAgeMs = 10 * 365 * 86400000, maxDiskBytes = 20 * GiB }
end

-- ---- files -------------------------------------------------------------------------------

-- A word for sh, quoted.
local function quote(word)
  return "'" .. tostring(word):gsub("'", "'\\''") .. "'"
end

local execute = os.execute
local function rm_rf(path)
  execute("rm -rf " .. quote(path))
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function mkdtemp(parent, name)
  return assert(uv.fs_mkdtemp(parent .. "/" .. name .. "-XXXXXX"))
end

local function mkdir_p(dir)
  assert(os.execute("mkdir -p " .. quote(dir)))
end

-- run.lua's own process (not one of its --child runs) names the run's
-- directory (a bench's process makes it, the first time it is needed)
-- and removes it when it ends: the keeper's finalizer runs at lua_close,
-- also after an error. A run of other benches makes nothing.
local keeper
if not as_script and type(arg) == "table" and arg[1] ~= "--child" and not os.getenv(TMP_ENV) then
  local f = assert(io.open("/dev/urandom", "rb"))
  local salt = f:read(6):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  f:close()
  local dir = ("%s/bgproc-bench-history-%d-%s"):format(os.getenv("TMPDIR") or "/tmp", uv.os_getpid(), salt)
  uv.os_setenv(TMP_ENV, dir)
  keeper = setmetatable({ dir = dir }, { __gc = function(k) if uv.fs_stat(k.dir) then rm_rf(k.dir) end end })
end

-- The run's directory, made 0700 when missing; nil when it is not ours.
local function run_dir()
  local dir = os.getenv(TMP_ENV)
  if not dir then return nil end
  uv.fs_mkdir(dir, tonumber("700", 8))
  local st = uv.fs_lstat(dir)
  if st and st.type == "directory" and st.uid == require("bgproc.sys").getuid() then return dir end
end

-- fn(dir, shared): dir a new directory for this bench, shared the run's
-- directory (where the big histories are made once). Both removed after
-- (the run's only when it was made here).
local function with_dirs(name, fn)
  local shared, own = run_dir(), false
  if not shared then
    shared, own = mkdtemp(os.getenv("TMPDIR") or "/tmp", "bgproc-bench-history"), true
  end
  local dir = mkdtemp(shared, name)
  local res = table.pack(pcall(fn, dir, shared))
  rm_rf(dir)
  if own then rm_rf(shared) end
  assert(res[1], res[2])
  return table.unpack(res, 2, res.n)
end

-- The daemon's layout under a state directory.
local function db_path(state) return state .. "/bgproc/bgproc.db" end
local function output_dir(state) return state .. "/bgproc/output" end

-- ---- engines and jobs --------------------------------------------------------------------

local function manager(opts)
  local o = { config = {}, plugins = {}, luv = false }
  for k, v in pairs(opts or {}) do o[k] = v end
  return require("bgproc").new(o)
end

local function ms_since(t0) return (uv.hrtime() - t0) / 1e6 end

-- Run n jobs (argv_of(i) each, extra create arguments in args_of(i)),
-- `batch` at a time, each batch to its end. on_batch(done) after each.
local function run_jobs(m, n, batch, argv_of, args_of, on_batch)
  local done = 0
  while done < n do
    local k = math.min(batch, n - done)
    for i = done + 1, done + k do
      local a = { argv = argv_of(i) }
      for key, v in pairs(args_of and args_of(i) or {}) do a[key] = v end
      local r, err = m:call("createBackgroundProcess", a)
      assert(r, err and err.message)
    end
    assert(m:run_until(function() return m.running == 0 end, 120000), "jobs did not end in time")
    done = done + k
    if on_batch then on_batch(done) end
  end
end

-- The list of bench `list`: tag "server", one record in ten. Median ms of
-- `calls` calls.
local function list_median(m, records, calls)
  local count
  local ms = common.median_ms(calls, function()
    count = m:call("listBackgroundProcesses", { tags = { "server" } }).count
  end)
  assert(count == records // 10, ("expected %d records, got %s"):format(records // 10, tostring(count)))
  return ms
end

-- The whole list, once (ms).
local function full_list_ms(m, records)
  local t0 = uv.hrtime()
  local r = m:call("listBackgroundProcesses", {})
  local ms = ms_since(t0)
  assert(r.count == records, ("expected %d records, got %s"):format(records, tostring(r.count)))
  return ms
end

-- `records` finished `/bin/true` jobs, tagged as bench `list`'s, made
-- through an engine with its store at db (200 at a time). Returns the
-- engine (still open) and the seconds it took.
local function make_records(db, records)
  local t0 = uv.hrtime()
  local m = manager { store = db, retention = retention(records), maxRunning = records }
  run_jobs(m, records, 200, function() return { "/bin/true" } end, function(i) return { tags = TAGSETS[i % 10 + 1] } end)
  return m, ms_since(t0) / 1000
end

-- ---- the big histories, made once per run --------------------------------------------------

-- As a script: make one in its own process; the last line of its output
-- is what to remember of it (JSON).
if as_script then
  local _, kind, dir, a, b = ...
  local made
  if kind == "records" then
    local records, calls = tonumber(a), tonumber(b)
    local m, seconds = make_records(db_path(dir .. "/state"), records)
    -- the list on the engine that made them, as it holds them
    made = { records = records, seconds = seconds, list_ms = list_median(m, records, calls) }
    m:shutdown()
  elseif kind == "search" then
    local files, bytes = tonumber(a), tonumber(b)
    local src = dir .. "/src"
    mkdir_p(src)
    assert(os.execute(("lua5.4 %s --generate %s %d %d"):format(quote(ROOT .. "/bench/search.lua"), quote(src), files, bytes)),
      "the generator failed")
    local t0 = uv.hrtime()
    local m = manager { store = db_path(dir .. "/state"), retention = retention(files) }
    -- each job prints one generated file (about `bytes`), all of it kept
    run_jobs(m, files, 8, function(i) return { "cat", ("%s/job-%04d.log"):format(src, i) } end,
      function() return { outputBytes = 2 * bytes } end)
    m:shutdown()
    rm_rf(src)
    made = { files = files, seconds = ms_since(t0) / 1000 }
  else
    error("usage: lua5.4 bench/history.lua --make records|search DIR ...")
  end
  io.write(cjson.encode(made), "\n")
  os.exit(0)
end

-- The history named `kind` in the run's directory: made the first time,
-- { dir, state (an XDG_STATE_HOME whose bgproc/bgproc.db is the store),
-- made (what its maker said) }.
local function shared_history(shared, kind, a, b)
  local dir = ("%s/%s-%s-%s"):format(shared, kind, a, b)
  local marker = dir .. "/made.json"
  if not uv.fs_stat(marker) then
    rm_rf(dir)
    mkdir_p(dir)
    io.stderr:write(("history: making the %s history (%s, %s) once for this run...\n"):format(kind, a, b))
    local p = assert(io.popen(("lua5.4 %s --make %s %s %s %s"):format(quote(SELF), kind, quote(dir), a, b)))
    local out = p:read("a")
    assert(p:close(), "making the " .. kind .. " history failed: " .. out)
    local f = assert(io.open(marker, "w"))
    f:write((out:match("([^\n]*)\n?$")))
    f:close()
  end
  return { dir = dir, state = dir .. "/state", made = cjson.decode(read_file(marker)) }
end

-- ---- a daemon ------------------------------------------------------------------------------

-- A `bgproc daemon run` on a private socket, config and state (its store
-- is state's bgproc/bgproc.db): the ms from its spawn to the first answer
-- of a tagged list over its socket, and more.
local function daemon_first_call(dir, state, records, calls)
  local config = dir .. "/config.lua"
  common.write_file(config, ("return { plugins = {}, retention = { maxFinished = %d, maxAgeMs = %d, maxDiskBytes = %d } }\n")
    :format(retention(records).maxFinished, retention(records).maxAgeMs, retention(records).maxDiskBytes))
  local socket = dir .. "/run/bgproc/daemon.sock"
  local env = {
    XDG_STATE_HOME = state, XDG_RUNTIME_DIR = dir .. "/run", BGPROC_SOCKET = socket, BGPROC_CONFIG = config,
    XDG_CONFIG_HOME = dir .. "/config", BGPROC_SESSION = false, NO_COLOR = false,
  }
  local client = require "bgproc.client"
  local loop = core.new()
  local t0 = uv.hrtime()
  local job = assert(loop:spawn { argv = { "lua5.4", BIN, "daemon", "run" }, env = env })
  local c
  while true do
    c = client.connect { socket = socket, autostart = false }
    if c then break end
    loop:dispatch()
    assert(job:alive(), "the daemon did not come up: " .. tostring((job:read(0))))
    assert(ms_since(t0) < 60000, "the daemon did not come up in 60 s")
    uv.sleep(1)
  end
  local connect_ms = ms_since(t0)
  local function list(args)
    local r, err = c:call("tools/call", { name = "listBackgroundProcesses", arguments = args }, 60000)
    assert(r, err and err.message)
    return r
  end
  local r = list { tags = { "server" } }
  local first_ms = ms_since(t0)
  assert(r.count == records // 10, ("expected %d records, got %s"):format(records // 10, tostring(r.count)))
  -- then, the daemon warm: the same list, and the whole list
  local again = common.median_ms(calls, function() list { tags = { "server" } } end)
  local t1 = uv.hrtime()
  local all = list {}
  local full_ms = ms_since(t1)
  assert(all.count == records, ("expected %d records, got %s"):format(records, tostring(all.count)))
  local rss, hwm = common.status_kib("VmRSS", job:pid()), common.status_kib("VmHWM", job:pid())
  c:call("daemon/stop", {}, 30000)
  c:close()
  common.finish(loop, job)
  loop:close()
  return first_ms, { connect_ms = connect_ms, warm_list_ms = again, full_list_ms = full_ms,
                     daemon_rss_kib = rss, daemon_hwm_kib = hwm, records = records }
end

-- ---- memory --------------------------------------------------------------------------------

-- RSS growth of this process while `jobs` jobs print `bytes` each and
-- end, `batch` at a time, on an engine with (store) or without a store
-- that keeps them all. The peak (VmHWM, reset through clear_refs once
-- the engine is warm) over the RSS then, in KiB.
local function memory_growth(p, bin, dir, store, jobs)
  local argv = p.gen == "base64" and { "sh", "-c", ("head -c %d /dev/urandom | base64 -w 100"):format(p.bytes) }
    or { bin, "write", tostring(p.bytes) }
  local m = manager { store = store and db_path(dir .. "/state") or nil, retention = retention(jobs) }
  local function argv_of() return argv end
  run_jobs(m, p.warmup, p.batch, argv_of)
  m:run_until(function() return false end, 200) -- (the last outputs settle)
  collectgarbage()
  collectgarbage()
  local f = io.open("/proc/self/clear_refs", "w")
  local reset = f and f:write("5") and f:close()
  local before = common.status_kib("VmRSS")
  local t0 = uv.hrtime()
  local curve = {}
  local step = math.max(p.batch, jobs // 10 // p.batch * p.batch)
  run_jobs(m, jobs, p.batch, argv_of, nil, function(done)
    if done % step == 0 or done == jobs then
      curve[#curve + 1] = ("%d:%d"):format(done, (common.status_kib("VmRSS") - before) // 1024)
    end
  end)
  m:run_until(function() return false end, 200)
  local seconds = ms_since(t0) / 1000
  local peak = (reset and common.status_kib("VmHWM") or common.status_kib("VmRSS")) - before
  local final = common.status_kib("VmRSS") - before
  collectgarbage()
  collectgarbage()
  local after_gc = common.status_kib("VmRSS") - before
  local status = m:store_status()
  local lua_kib = collectgarbage("count")
  m:shutdown()
  local grown = peak / 1024
  io.stderr:write(("history_memory (%s): %d jobs of %d bytes in %.0f s: RSS +%.1f MiB at the peak, +%.1f MiB at "
    .. "the end, +%.1f MiB after a full GC (Lua heap %.1f MiB); RSS growth by jobs done (MiB): %s\n")
    :format(store and "store" or "no store", jobs, p.bytes, seconds, grown, final / 1024, after_gc / 1024,
      lua_kib / 1024, table.concat(curve, " ")))
  return grown, { jobs = jobs, peak_kib = peak, end_kib = final, after_gc_kib = after_gc, lua_heap_kib = lua_kib,
                  per_job_kib = peak / jobs, seconds = seconds, curve = table.concat(curve, " "),
                  output_bytes = status and status.outputBytes, hwm_reset = reset and true or false }
end

-- ---- search ----------------------------------------------------------------------------------

-- The .log files of an output directory and their bytes; read once, so
-- they come from the page cache.
local function warm_logs(dir)
  local bytes, n = 0, 0
  for name in uv.fs_scandir_next, assert(uv.fs_scandir(dir)) do
    if name:find("%.log$") then
      bytes, n = bytes + assert(uv.fs_stat(dir .. "/" .. name)).size, n + 1
    end
  end
  assert(os.execute(("cat %s/*.log > /dev/null"):format(quote(dir))))
  return bytes, n
end

local function median_rate(reps, bytes, once)
  local rates = {}
  for r = 1, reps do
    local t0 = uv.hrtime()
    once()
    rates[r] = bytes / 1048576 / (ms_since(t0) / 1000)
  end
  return common.median(rates)
end

-- ---- the benches -----------------------------------------------------------------------------

local benches = {}

local function spawn_rate(store, p)
  return with_dirs("spawn", function(dir)
    local m = manager { store = store and db_path(dir .. "/state") or nil, retention = { maxFinished = 100 } }
    local function one()
      local r = assert(m:call("createBackgroundProcess", { argv = { "/bin/true" } }))
      local rec = m:get(r.id)
      m:run_until(function() return rec.status ~= "running" end, 10000)
      assert(rec.status == "completed", rec.status)
    end
    local value = common.rate(p.n, one)
    m:shutdown()
    return value
  end)
end

-- engine_spawn with a store against the same without one.
benches.engine_spawn_store = {
  title = "engine_spawn_store: createBackgroundProcess `/bin/true` until completed, 1000 jobs, with a store",
  unit = "jobs/s",
  target = "ratio >= 0.9 (with a store / without)",
  params = { n = 1000 },
  run = function(p) return spawn_rate(true, p) end,
  baseline_fn = function(p) return spawn_rate(false, p) end,
  baseline_title = "the same engine_spawn workload without a store",
  ok = function(r) return r.ratio ~= nil and r.ratio >= 0.9 end,
}

-- The tagged list over 10,000 records a new engine brought back from the
-- store.
benches.list_store = {
  title = "list_store: listBackgroundProcesses with a tag filter, 10,000 records restored from the store",
  unit = "ms",
  target = "median <= 5 ms",
  lower_is_better = true,
  params = { records = 10000, calls = 200 },
  run = function(p)
    return with_dirs("list", function(_, shared)
      local h = shared_history(shared, "records", p.records, p.calls)
      local rss0 = common.status_kib("VmRSS")
      local t0 = uv.hrtime()
      local m = manager { store = db_path(h.state), retention = retention(p.records) }
      local open_ms = ms_since(t0)
      local open_rss = common.status_kib("VmRSS") - rss0
      local ms = list_median(m, p.records, p.calls)
      local full = full_list_ms(m, p.records)
      m:shutdown()
      io.stderr:write(("list_store: %d records restored in %.0f ms (RSS +%.1f MiB); tagged list %.2f ms median, "
        .. "whole list %.1f ms; on the engine that made them: %.2f ms\n")
        :format(p.records, open_ms, open_rss / 1024, ms, full, h.made.list_ms))
      return ms, { open_ms = open_ms, open_rss_kib = open_rss, full_list_ms = full, maker_list_ms = h.made.list_ms,
                   made_s = h.made.seconds }
    end)
  end,
  -- the same making (an engine with a store of its own), and the list on
  -- that engine, the records as it holds them in memory
  baseline_fn = function(p)
    return with_dirs("list-base", function(dir)
      local m = make_records(db_path(dir .. "/state"), p.records)
      local ms = list_median(m, p.records, p.calls)
      m:shutdown()
      return ms
    end)
  end,
  baseline_title = "the same list on the engine that made the 10,000 records (store attached, records in memory)",
  ok = function(r) return r.value <= 5 end,
}

-- A daemon over the 10,000-record store: from its spawn to its first
-- answer.
benches.first_call = {
  title = "first_call: a daemon over 10,000 stored records, from its spawn to its first tagged list answer",
  unit = "ms",
  target = "<= 200 ms",
  lower_is_better = true,
  params = { records = 10000, calls = 200, warm_calls = 20 },
  run = function(p)
    return with_dirs("first", function(dir, shared)
      local h = shared_history(shared, "records", p.records, p.calls)
      local ms, extra = daemon_first_call(dir, h.state, p.records, p.warm_calls)
      io.stderr:write(("first_call: %d records: socket up %.0f ms, first answer %.0f ms, whole list %.0f ms, "
        .. "daemon RSS %.1f MiB\n"):format(p.records, extra.connect_ms, ms, extra.full_list_ms, extra.daemon_rss_kib / 1024))
      return ms, extra
    end)
  end,
  baseline_fn = function(p)
    return with_dirs("first-base", function(dir)
      return daemon_first_call(dir, dir .. "/state", 0, p.warm_calls)
    end)
  end,
  baseline_title = "the same daemon with an empty store",
  ok = function(r) return r.value <= 200 end,
}

-- Memory while 10,000 jobs print 1 MiB each and end, all kept.
benches.history_memory = {
  title = "history_memory: RSS growth while 10,000 jobs print 1 MiB each and end, all kept, with a store",
  unit = "MiB",
  target = "growth <= 64 MiB",
  lower_is_better = true,
  -- gen: "write" (the C baseline's writer, 64-byte lines) or "base64"
  -- (`head -c BYTES /dev/urandom | base64 -w 100`)
  params = { jobs = 10000, baseline_jobs = 1000, bytes = 1048576, batch = 8, warmup = 16, gen = "write" },
  run = function(p, bin)
    return with_dirs("memory", function(dir) return memory_growth(p, bin, dir, true, p.jobs) end)
  end,
  baseline_fn = function(p, bin)
    return with_dirs("memory-base", function(dir) return memory_growth(p, bin, dir, false, p.baseline_jobs) end)
  end,
  baseline_title = "the same engine without a store, 1,000 jobs, not 10,000 (it keeps each finished job's 1 MiB "
    .. "in memory, ~1 MiB a job)",
  ok = function(r) return r.value <= 64 end,
}

-- searchBackgroundOutput over 1 GiB of stored output, against rg.
local function needles(p) return (p.files + 127) // 128 end

local function search_history(shared, p)
  local h = shared_history(shared, "search", p.files, p.file_bytes)
  local bytes, n = warm_logs(output_dir(h.state))
  assert(n == p.files, ("%d output files, want %d"):format(n, p.files))
  return h, bytes
end

benches.search_store = {
  title = "search_store: searchBackgroundOutput for a rare word in 1 GiB of stored output (1024 finished jobs)",
  unit = "MiB/s",
  target = "ratio >= 0.5 (rg -n on 2 cores)",
  -- (bench/search.lua's generator puts the word on one line of every 128th file)
  params = { files = 1024, file_bytes = 1 << 20, pattern = "deadlock", reps = 3 },
  run = function(p)
    return with_dirs("search", function(_, shared)
      local h, bytes = search_history(shared, p)
      local t0 = uv.hrtime()
      local m = manager { store = db_path(h.state), retention = retention(p.files) }
      local open_ms = ms_since(t0)
      local r
      local rate = median_rate(p.reps, bytes, function()
        local err
        r, err = m:call("searchBackgroundOutput", { pattern = p.pattern })
        assert(r, err and err.message)
      end)
      m:shutdown()
      assert(r.count == needles(p) and not r.truncated, ("found %d lines, want %d"):format(r.count, needles(p)))
      assert(r.searchedJobs == p.files, ("searched %d jobs, want %d"):format(r.searchedJobs, p.files))
      io.stderr:write(("search_store: bgproc %.0f MiB/s over %d jobs, %.0f MiB, %d lines (store opened in %.0f ms)\n")
        :format(rate, r.searchedJobs, r.searchedBytes / 1048576, r.count, open_ms))
      return rate, { lines = r.count, searched_bytes = r.searchedBytes, jobs = r.searchedJobs, open_ms = open_ms }
    end)
  end,
  baseline_fn = function(p)
    return with_dirs("search-rg", function(dir, shared)
      local h, bytes = search_history(shared, p)
      local out = dir .. "/rg.out" -- to a file: into /dev/null rg stops at the first match
      local cmd = ("rg --no-config -n %s %s > %s"):format(quote(p.pattern), quote(output_dir(h.state)), quote(out))
      local rss, lines = 0, nil
      local rate = median_rate(p.reps, bytes, function()
        local pipe = assert(io.popen(("(/usr/bin/time -f %%M %s) 2>&1"):format(cmd)))
        local err = pipe:read("a")
        assert(pipe:close(), "rg failed: " .. err)
        rss = math.max(rss, tonumber(err:match("(%d+)%s*$")) or 0)
      end)
      lines = select(2, read_file(out):gsub("\n", ""))
      assert(lines == needles(p), ("rg found %d lines, want %d"):format(lines, needles(p)))
      io.stderr:write(("search_store: rg %.0f MiB/s, %d lines, peak RSS %d KiB\n"):format(rate, lines, rss))
      return rate, { lines = lines, rg_rss_kib = rss }
    end)
  end,
  baseline_title = "`rg -n PATTERN <the store's output dir> > FILE` (ripgrep, all cores)",
  ok = function(r) return r.ratio ~= nil and r.ratio >= 0.5 end,
}

-- Smaller sizes for a quick run, in the environment:
-- BGPROC_BENCH_HISTORY_PARAMS="jobs=500,records=1000,files=64" sets each
-- key in every bench of this file that has it.
for key, value in (os.getenv("BGPROC_BENCH_HISTORY_PARAMS") or ""):gmatch("([%w_]+)=([^,]+)") do
  for _, b in pairs(benches) do
    if b.params[key] ~= nil then b.params[key] = math.tointeger(tonumber(value)) or tonumber(value) or value end
  end
end

-- (the keeper lives as long as this group is loaded)
return setmetatable(benches, { keeper = keeper })
