-- Benchmarks of bgproc.core against plain C loops (bench/baseline.c).
-- Each `run` executes in a fresh lua5.4 process, so its peak RSS is its own.
local core = require "bgproc.core"
local uv = require "luv"
local common = require "common"

local benches = {}
local finish = common.finish

benches.spawn = {
  unit = "jobs/s",
  target = "ratio >= 0.9",
  params = { n = 1000 },
  run = function(p)
    local loop = core.new()
    local value = common.rate(p.n, function()
      local job = assert(loop:spawn { argv = { "/bin/true" } })
      finish(loop, job)
      job:close()
    end)
    loop:close()
    return value
  end,
  baseline = function(p, bin) return bin, { "spawn", p.n } end,
  ok = function(r) return r.ratio >= 0.9 end,
}

benches.capture = {
  unit = "MiB/s",
  target = "ratio >= 0.8, rss <= ring + 8 MiB",
  params = { bytes = 1 << 30, ring = 1 << 20 },
  run = function(p, bin)
    local loop = core.new()
    local t0 = uv.hrtime()
    local job = assert(loop:spawn { argv = { bin, "write", tostring(p.bytes) }, ring = p.ring })
    finish(loop, job)
    local dt = (uv.hrtime() - t0) / 1e9
    assert(select(2, job:offsets()) == p.bytes, "lost bytes")
    loop:close()
    return p.bytes / 1048576 / dt
  end,
  baseline = function(p, bin) return bin, { "capture", p.bytes, p.ring } end,
  ok = function(r, p) return r.ratio >= 0.8 and r.rss_kib <= p.ring / 1024 + 8 * 1024 end,
}

return benches
