-- Benchmarks of the Lua engine (bgproc.new + m:call) against the raw C
-- loop. Each `run` executes in a fresh lua5.4 process.
local uv = require "luv"
local common = require "common"
local luvbase = require "luvbase"

local benches = {}

local function manager(opts)
  local o = { config = {}, plugins = {}, luv = false }
  for k, v in pairs(opts or {}) do o[k] = v end
  return require("bgproc").new(o)
end

-- createBackgroundProcess -> completed, one job at a time.
benches.engine_spawn = {
  title = "engine_spawn: createBackgroundProcess `/bin/true` until completed, 1000 jobs",
  unit = "jobs/s",
  target = "ratio >= 0.85",
  params = { n = 1000 },
  run = function(p)
    local m = manager { retention = { maxFinished = 100 } }
    local function one()
      local r = assert(m:call("createBackgroundProcess", { argv = { "/bin/true" } }))
      local rec = m:get(r.id)
      m:run_until(function() return rec.status ~= "running" end, 10000)
      assert(rec.status == "completed", rec.status)
    end
    local value = common.rate(p.n, one)
    m:shutdown()
    return value
  end,
  baseline = function(p, bin) return bin, { "spawn", p.n } end,
  baseline_title = "the C spawn loop of `spawn`",
  luv_fn = function(p) return luvbase.spawn(p.n) end,
  -- the seed's spawn is its tool call already
  seed = { bench = "spawn", params = { n = 1000 } },
  ok = function(r) return r.ratio >= 0.85 end,
}

-- listBackgroundProcesses with a tag filter over 10,000 records.
benches.list = {
  title = "list: listBackgroundProcesses with a tag filter, 10,000 records",
  unit = "ms",
  target = "median <= 5 ms",
  lower_is_better = true,
  params = { records = 10000, calls = 200 },
  run = function(p)
    local m = manager { retention = { maxFinished = p.records }, maxRunning = p.records }
    local tagsets = { { "server" }, { "test" }, { "build" }, { "watch" }, { "db" },
                      { "frontend" }, { "backend" }, { "lint" }, { "docs" }, { "misc" } }
    for i = 1, p.records do
      local r = assert(m:call("createBackgroundProcess", { argv = { "/bin/true" }, tags = tagsets[i % 10 + 1] }))
      if i % 200 == 0 then m:run_until(function() return m.running == 0 end, 10000) end
      assert(r)
    end
    m:run_until(function() return m.running == 0 end, 30000)
    local count
    local ms = common.median_ms(p.calls, function()
      count = m:call("listBackgroundProcesses", { tags = { "server" } }).count
    end)
    assert(count == p.records // 10, "expected a tenth of the records, got " .. tostring(count))
    m:shutdown()
    return ms
  end,
  -- one round: 10,000 jobs through the seed take about a minute
  seed = { bench = "list", params = { records = 10000, calls = 200 }, rounds = 1 },
  ok = function(r) return r.value <= 5 end,
}

-- 1000 concurrent sleep jobs with a 64 KiB ring, then kill them all.
benches.scale = {
  title = "scale: 1000 `sleep 1000` jobs (64 KiB rings), then kill all",
  unit = "ms",
  target = "RSS <= 1000 x (ring + 16 KiB); kill all <= 1000 ms; 0 zombies",
  lower_is_better = true,
  params = { n = 1000, ring = 65536 },
  run = function(p)
    local before = common.status_kib("VmRSS")
    local m = manager { maxRunning = p.n + 10 }
    for _ = 1, p.n do
      assert(m:call("createBackgroundProcess", { argv = { "sleep", "1000" }, outputBytes = p.ring }))
    end
    local grown = common.status_kib("VmRSS") - before
    local t0 = uv.hrtime()
    local res = assert(m:call("killProcesses", { all = true, graceMs = 3000 }))
    local ms = (uv.hrtime() - t0) / 1e6
    assert(#res.killed == p.n, "killed " .. #res.killed)
    local zombies = 0
    for _, stat in ipairs(common.children(uv.os_getpid(), "stat")) do
      if stat:find("Z") then zombies = zombies + 1 end
    end
    m:shutdown()
    io.stderr:write(("scale: %d jobs, manager RSS +%d KiB (limit %d KiB), kill all %.0f ms, %d zombies\n")
      :format(p.n, grown, p.n * (p.ring / 1024 + 16), ms, zombies))
    assert(grown <= p.n * (p.ring / 1024 + 16), "RSS over budget: " .. grown)
    assert(zombies == 0, "zombies: " .. zombies)
    return ms, { grown_kib = grown, zombies = zombies, n = p.n }
  end,
  luv_fn = function(p) return luvbase.scale(p.n) end,
  -- its kill tool returns once signals are sent; survivors are counted
  -- after the same 3 s grace
  seed = { bench = "scale", params = { n = 1000, grace_ms = 3000 } },
  ok = function(r) return r.value <= 1000 end,
}

return benches
