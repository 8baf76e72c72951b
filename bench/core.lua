-- Benchmarks of bgproc.core against plain C loops (bench/baseline.c).
-- Each `run` executes in a fresh lua5.4 process, so its peak RSS is its own.
local core = require "bgproc.core"
local uv = require "luv"
local common = require "common"
local luvbase = require "luvbase"

local benches = {}
local finish = common.finish

benches.spawn = {
  title = "spawn: spawn + reap `/bin/true`, 1000 jobs, via bgproc.core",
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
  baseline_title = "posix_spawn + pidfd + waitid of `/bin/true`, in C",
  luv_fn = function(p) return luvbase.spawn(p.n) end,
  -- the seed runs every command through `sh -c`; completion is polled
  -- with its get tool
  seed = { bench = "spawn", params = { n = 1000 } },
  ok = function(r) return r.ratio >= 0.9 end,
}

-- Issue 5: capture beats the plain C loop, in bounded memory.
benches.capture = {
  title = "capture: 1 GiB through a job into a 1 MiB ring",
  unit = "MiB/s",
  target = "ratio > 1 (beats the C loop), peak RSS <= ring + 8 MiB",
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
  baseline_title = "read() from the pipe straight into a 1 MiB ring, in C",
  luv_fn = function(p, bin) return luvbase.capture(p.bytes, p.ring, bin) end,
  -- the seed keeps every chunk and fails a job past ~95 MiB of output
  seed = { bench = "capture", params = { bytes = 64 << 20 }, note = "64 MiB, not 1 GiB: it fails a job past ~95 MiB" },
  ok = function(r, p) return r.ratio > 1 and r.rss_kib <= p.ring / 1024 + 8 * 1024 end,
}

return benches
