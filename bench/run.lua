-- bgproc benchmarks. Each bench runs bgproc and its baseline in the same
-- invocation, on the same machine, and reports the ratio and peak RSS.
--
--   lua5.4 bench/run.lua [--json] [--rounds N] [--luv] [--seed] [NAME...]
--
-- --luv adds the same workloads written on luv's uv.spawn (bench/luvbase.lua)
-- where a bench declares one; --seed adds the seed's implementation
-- (@zenobius/opencode-background under Bun, bench/seed/), fetched by
-- bench/seed/setup.sh into a cache directory.
--
-- --json prints one object per line:
--   {"bench":NAME,"value":V,"unit":U,"baseline":B,"ratio":R,"rss_kib":K,
--    "title":..,"target":..,"met":BOOL,"extra":{..},"baseline_rss_kib":K,
--    "baseline_title":..,
--    "luv":V,"luv_ratio":R,"luv_rss_kib":K,"luv_extra":{..},
--    "seed":V,"seed_ratio":R,"seed_rss_kib":K,"seed_extra":{..},"seed_note":S}
-- and, last, {"run":{"rounds":N,"luv":BOOL,"seed":BOOL,"bun":VERSION,...}}.
-- Every ratio is bgproc's speed over the other's: above 1, bgproc is faster
-- (for times, the other's time over bgproc's).
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local root = here .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. here .. "/?.lua;" .. package.path
package.cpath = root .. "/lua/?.so;" .. package.cpath

local cjson = require "cjson"
local uv = require "luv"
local common = require "common"

local groups = { "core", "engine", "interfaces", "metrics", "search", "history" }
local BASELINE = root .. "/build/bench-baseline"

local function all_benches()
  local list, by_name = {}, {}
  for _, group in ipairs(groups) do
    local ok, benches = pcall(require, group)
    if ok then
      local names = {}
      for name in pairs(benches) do names[#names + 1] = name end
      table.sort(names)
      for _, name in ipairs(names) do
        local b = benches[name]
        b.name, b.group = name, group
        list[#list + 1] = b
        by_name[name] = b
      end
    end
  end
  return list, by_name
end

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

local function build_baseline()
  local ok, out = sh(("mkdir -p %s/build && cc -std=c11 -Wall -Wextra -Werror -O2 -o %s %s/bench/baseline.c 2>&1")
    :format(root, BASELINE, root))
  assert(ok, "cannot build the baseline: " .. out)
end

-- A word for sh, quoted.
local function quote(word)
  return "'" .. tostring(word):gsub("'", "'\\''") .. "'"
end

-- Child mode: run one bench (bgproc, its "baseline" or its "luv" form),
-- print {value=, rss_kib=, extra=} as JSON.
if arg[1] == "--child" then
  local _, by_name = all_benches()
  local b = assert(by_name[arg[2]], "no bench " .. tostring(arg[2]))
  local fn = ({ baseline = b.baseline_fn, luv = b.luv_fn })[arg[3]] or b.run
  local value, extra = fn(b.params, BASELINE)
  io.write(cjson.encode { value = value, rss_kib = common.status_kib("VmHWM"), extra = extra or {} }, "\n")
  os.exit(0)
end

local json, wanted, rounds, with_luv, with_seed = false, {}, 3, false, false
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--json" then json = true
  elseif a == "--rounds" then
    i = i + 1
    rounds = tonumber(arg[i]) or rounds
  elseif a == "--luv" then with_luv = true
  elseif a == "--seed" then with_seed = true
  elseif a == "-h" or a == "--help" then
    print("usage: lua5.4 bench/run.lua [--json] [--rounds N] [--luv] [--seed] [NAME...]\n" ..
      "Runs each bench and its baseline N times (default 3), alternating, and reports medians.\n" ..
      "--luv and --seed add the luv uv.spawn and the seed (Bun) columns.")
    os.exit(0)
  else wanted[a] = true end
  i = i + 1
end

build_baseline()
local list = all_benches()
if not json then
  print(("%-14s %12s %-8s %12s %7s %9s  %s"):format("bench", "bgproc", "unit", "baseline", "ratio", "rss_kib", "target"))
end

-- One measurement of bgproc (in a fresh process) and of its baseline.
-- The last line a `--child` run printed: its JSON result.
local function run_child(name, which)
  local ok, out = sh(("lua5.4 %s --child %s %s"):format(arg[0], name, which or ""))
  assert(ok, name .. " " .. (which or "") .. " failed: " .. out)
  return out:match("[^\n]*\n?$")
end

-- The C baseline's run: {value=, rss_kib=} (it prints "value unit rss").
local function measure_baseline(b)
  if b.baseline_fn then return cjson.decode(run_child(b.name, "baseline")) end
  if not b.baseline then return nil end
  local cmd, args = b.baseline(b.params, BASELINE)
  local words = { quote(cmd) }
  for _, a in ipairs(args) do words[#words + 1] = quote(a) end
  local ok, out = sh(table.concat(words, " "))
  assert(ok, b.name .. " baseline failed: " .. out)
  local value, rss = out:match("^(%S+)%s+%S+%s+(%d+)")
  return { value = tonumber(value), rss_kib = tonumber(rss) }
end

-- The seed column: where Bun and the seed are (bench/seed/setup.sh), or why
-- it cannot run.
local seed_env
local function seed_setup()
  if seed_env then return seed_env end
  local _, out = sh(("sh %s/bench/seed/setup.sh 2>&1"):format(quote(root)))
  local bun, bundle = out:match("bun=([^\n]+)"), out:match("seed=([^\n]+)")
  seed_env = bun and bundle and { bun = bun, bundle = bundle }
    or { error = out:match("error=([^\n]+)") or out:gsub("%s+$", "") }
  return seed_env
end

-- Processes whose environment holds `mark` (the driver gives it to the
-- seed's jobs only): SIGKILL them; how many there were.
local function sweep(mark)
  local swept = 0
  for name in uv.fs_scandir_next, assert(uv.fs_scandir("/proc")) do
    local f = name:match("^%d+$") and io.open("/proc/" .. name .. "/environ", "rb")
    if f then
      local env = f:read("a") or ""
      f:close()
      if ("\0" .. env):find("\0BGPROC_BENCH_MARK=" .. mark .. "\0", 1, true) then
        uv.kill(tonumber(name), "sigkill")
        swept = swept + 1
      end
    end
  end
  return swept
end

-- One run of the seed's form of bench b: {value=, rss_kib=, extra=}, or
-- {note=} saying why there is none.
local function measure_seed(b)
  local env = seed_setup()
  if env.error then return { note = "not run: " .. env.error } end
  local mark = ("%d-%d-%d"):format(os.time(), uv.os_getpid(), math.random(1 << 30))
  local params = { writer = BASELINE, mark = mark }
  for k, v in pairs(b.seed.params) do params[k] = v end
  local ok, out = sh(("%s %s %s %s %s 2>&1"):format(quote(env.bun),
    quote(root .. "/bench/seed/driver.mjs"), quote(env.bundle), quote(b.seed.bench), quote(cjson.encode(params))))
  local swept = sweep(mark)
  if swept > 0 then io.stderr:write(("%s: swept %d seed processes left behind\n"):format(b.name, swept)) end
  local last = out:match("([^\n]*)\n?$")
  local decoded_ok, r = pcall(cjson.decode, last)
  if not ok or not decoded_ok or type(r) ~= "table" then
    io.stderr:write(b.name, " (seed) failed:\n", out, "\n")
    return { note = "failed: " .. (last ~= "" and last or "no output") }
  end
  return r
end

-- bgproc's speed over the other's (above 1: bgproc faster).
local function speedup(b, mine, other)
  if not (mine and other) then return nil end
  if b.lower_is_better then return other / mine end
  return mine / other
end

-- The medians of `runs` (a list of {value=, rss_kib=, extra=}): the median
-- run's value and extra, and the highest peak RSS.
local function summary(runs)
  if #runs == 0 then return nil end
  local sorted = {}
  for k, r in ipairs(runs) do sorted[k] = r end
  table.sort(sorted, function(x, y) return x.value < y.value end)
  local mid = sorted[(#sorted + 1) // 2]
  local rss
  for _, r in ipairs(runs) do rss = r.rss_kib and math.max(rss or 0, r.rss_kib) or rss end
  return { value = mid.value, extra = mid.extra, rss_kib = rss }
end

-- The seed's runs by workload: two benches with the same seed workload
-- (spawn, engine_spawn: its spawn is its tool call) share them.
local seed_runs = {}

for _, b in ipairs(list) do
  if next(wanted) == nil or wanted[b.name] then
    -- bgproc and the others alternate, and the medians are compared: a
    -- noisy machine moves them all the same way.
    local runs = { mine = {}, base = {}, luv = {}, seed = {} }
    local seed_note = b.seed_na
    local seed_key = b.seed and b.seed.bench .. cjson.encode(b.seed.params)
    local seed_done = seed_key and seed_runs[seed_key]
    if seed_done then runs.seed, seed_note = seed_done.runs, seed_done.note end
    for round = 1, rounds do
      runs.mine[#runs.mine + 1] = cjson.decode(run_child(b.name))
      runs.base[#runs.base + 1] = measure_baseline(b)
      if with_luv and b.luv_fn then runs.luv[#runs.luv + 1] = cjson.decode(run_child(b.name, "luv")) end
      if with_seed and b.seed and not seed_done and round <= (b.seed.rounds or rounds) and not seed_note then
        local s = measure_seed(b)
        if s.note then seed_note = s.note else runs.seed[#runs.seed + 1] = s end
      end
    end
    if seed_key and with_seed then seed_runs[seed_key] = { runs = runs.seed, note = seed_note } end
    local mine, base, luv, seed = summary(runs.mine), summary(runs.base), summary(runs.luv), summary(runs.seed)
    if not with_seed and b.seed then seed_note = "not run (no --seed)" end
    if seed then seed_note = b.seed.note end
    local value = mine.value
    local r = {
      bench = b.name, title = b.title, value = value, unit = b.unit, rss_kib = mine.rss_kib, extra = mine.extra,
      target = b.target,
      baseline = base and base.value, baseline_rss_kib = base and base.rss_kib, baseline_title = b.baseline_title,
      ratio = speedup(b, value, base and base.value),
      luv = luv and luv.value, luv_rss_kib = luv and luv.rss_kib, luv_extra = luv and luv.extra,
      luv_ratio = speedup(b, value, luv and luv.value),
      seed = seed and seed.value, seed_rss_kib = seed and seed.rss_kib, seed_extra = seed and seed.extra,
      seed_ratio = speedup(b, value, seed and seed.value), seed_note = seed_note,
    }
    -- a kill that leaves processes running is not a faster kill
    if seed and (seed.extra.survivors or 0) > 0 then r.seed_ratio = nil end
    local met = b.ok and b.ok(r, b.params)
    r.met = met
    if json then
      io.write(cjson.encode(r), "\n")
    else
      print(("%-14s %12.1f %-8s %12s %7s %9d  %s %s"):format(b.name, r.value, r.unit,
        r.baseline and ("%.1f"):format(r.baseline) or "-", r.ratio and ("%.2f"):format(r.ratio) or "-",
        r.rss_kib, b.target or "", met == nil and "" or met and "(met)" or "(MISSED)"))
      if with_luv or with_seed then
        local function column(v, ratio, note)
          return v and ("%.1f (%s)"):format(v, ratio and ("%.2f"):format(ratio) or "-") or note or "-"
        end
        print(("%14s luv %s; seed %s"):format("", column(r.luv, r.luv_ratio),
          column(r.seed, r.seed_ratio, r.seed_note)))
      end
    end
    io.stdout:flush()
  end
end

-- The run itself, for the report: rounds, columns, the Bun that ran the seed.
if json then
  local run = { rounds = rounds, luv = with_luv, seed = with_seed, luv_version = uv.version_string() }
  if seed_env and seed_env.bun then
    local _, version = sh(quote(seed_env.bun) .. " --version")
    run.bun = version:match("%S+")
  elseif seed_env then
    run.seed_error = seed_env.error
  end
  io.write(cjson.encode { run = run }, "\n")
end
