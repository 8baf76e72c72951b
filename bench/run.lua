-- bgproc benchmarks. Each bench runs bgproc and its baseline in the same
-- invocation, on the same machine, and reports the ratio and peak RSS.
--
--   lua5.4 bench/run.lua [--json] [--rounds N] [NAME...]
--
-- --json prints one object per line:
--   {"bench":NAME,"value":V,"unit":U,"baseline":B,"ratio":R,"rss_kib":K}
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local root = here .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. here .. "/?.lua;" .. package.path
package.cpath = root .. "/lua/?.so;" .. package.cpath

local cjson = require "cjson"
local common = require "common"

local groups = { "core", "engine", "interfaces" }
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

-- Child mode: run one bench, print {value=, rss_kib=} as JSON.
if arg[1] == "--child" then
  local _, by_name = all_benches()
  local b = assert(by_name[arg[2]], "no bench " .. tostring(arg[2]))
  local fn = arg[3] == "baseline" and b.baseline_fn or b.run
  local value = fn(b.params, BASELINE)
  io.write(cjson.encode { value = value, rss_kib = common.status_kib("VmHWM") }, "\n")
  os.exit(0)
end

local json, wanted, rounds = false, {}, 3
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--json" then json = true
  elseif a == "--rounds" then
    i = i + 1
    rounds = tonumber(arg[i]) or rounds
  elseif a == "-h" or a == "--help" then
    print("usage: lua5.4 bench/run.lua [--json] [--rounds N] [NAME...]\n" ..
      "Runs each bench and its baseline N times (default 3), alternating, and reports medians.")
    os.exit(0)
  else wanted[a] = true end
  i = i + 1
end

build_baseline()
local list = all_benches()
local results = {}
if not json then
  print(("%-14s %12s %-8s %12s %7s %9s  %s"):format("bench", "bgproc", "unit", "baseline", "ratio", "rss_kib", "target"))
end
local median = common.median

-- One measurement of bgproc (in a fresh process) and of its baseline.
-- The last line a `--child` run printed: its JSON result.
local function run_child(name, which)
  local ok, out = sh(("lua5.4 %s --child %s %s"):format(arg[0], name, which or ""))
  assert(ok, name .. " " .. (which or "") .. " failed: " .. out)
  return out:match("[^\n]*\n?$")
end

local function measure(b)
  local mine = cjson.decode(run_child(b.name))
  local base
  if b.baseline_fn then
    base = cjson.decode(run_child(b.name, "baseline")).value
  elseif b.baseline then
    local cmd, args = b.baseline(b.params, BASELINE)
    local words = { cmd }
    for _, a in ipairs(args) do words[#words + 1] = ("%q"):format(tostring(a)) end
    local ok, out = sh(table.concat(words, " "))
    assert(ok, b.name .. " baseline failed: " .. out)
    base = tonumber(out:match("^(%S+)"))
  end
  return mine, base
end

for _, b in ipairs(list) do
  if next(wanted) == nil or wanted[b.name] then
    -- bgproc and baseline alternate, and the medians are compared: a noisy
    -- machine moves both the same way.
    local values, bases, rss = {}, {}, 0
    for _ = 1, rounds do
      local mine, base = measure(b)
      values[#values + 1] = mine.value
      if base then bases[#bases + 1] = base end
      rss = math.max(rss, mine.rss_kib)
    end
    local value, base = median(values), #bases > 0 and median(bases) or nil
    local r = {
      bench = b.name, value = value, unit = b.unit, baseline = base,
      ratio = base and value / base or nil, rss_kib = rss,
    }
    if b.lower_is_better and base then r.ratio = base / value end
    local met = b.ok and b.ok(r, b.params)
    results[#results + 1] = r
    if json then
      io.write(cjson.encode(r), "\n")
    else
      print(("%-14s %12.1f %-8s %12s %7s %9d  %s %s"):format(b.name, r.value, r.unit,
        base and ("%.1f"):format(base) or "-", r.ratio and ("%.2f"):format(r.ratio) or "-",
        r.rss_kib, b.target or "", met == nil and "" or met and "(met)" or "(MISSED)"))
    end
    io.stdout:flush()
  end
end
