-- bgproc.core: output capture into the ring: offsets, wrapping, dropped
-- counts, line tails, stream order and separation, bounded memory.
local core = require "bgproc.core"
local h = require "helpers"


describe("core ring", function()
  local loop
  before_each(function() loop = core.new() end)
  after_each(function() loop:close() end)

  describe("wrapping", function()
    -- 10000 bytes through a 4096-byte ring: bytes 0-9999 are "0123456789..."
    local function job_10000()
      local job = assert(loop:spawn {
        command = "i=0; while [ $i -lt 1000 ]; do printf 0123456789; i=$((i+1)); done",
        ring = 4096,
      })
      h.finish(loop, job)
      return job
    end

    it("keeps the last ring-size bytes and counts what was dropped", function()
      local job = job_10000()
      local tail, head = job:offsets()
      assert.equal(10000, head)
      assert.equal(10000 - 4096, tail)
      local data, next, dropped = job:read(0)
      assert.equal(4096, #data)
      assert.equal(10000, next)
      assert.equal(5904, dropped)
      -- offset 5904 is digit 5904 % 10 = 4
      assert.equal(("0123456789"):rep(500):sub(5, 5 + 4095), data)
    end)

    it("reports exact dropped counts for any cursor", function()
      local job = job_10000()
      local _, next, dropped = job:read(5000)
      assert.equal(904, dropped)
      assert.equal(10000, next)
      local data
      data, next, dropped = job:read(6000)
      assert.equal(0, dropped)
      assert.equal(4000, #data)
      assert.equal("0123", data:sub(1, 4))
      data, next, dropped = job:read(5904, 10)
      assert.equal("4567890123", data)
      assert.equal(5914, next)
      assert.equal(0, dropped)
    end)

    it("answers a read past the end with nothing", function()
      local job = job_10000()
      local data, next, dropped = job:read(20000)
      assert.equal("", data)
      assert.equal(10000, next)
      assert.equal(0, dropped)
      data, next = job:read(10000)
      assert.equal("", data)
      assert.equal(10000, next)
    end)

    it("rounds ring sizes up to a multiple of 64", function()
      local job = assert(loop:spawn { argv = { "true" }, ring = 100 })
      assert.equal(128, job:info().ring)
      h.finish(loop, job)
    end)
  end)

  it("captures 64 MiB through a 64 KiB ring with bounded memory", function()
    local job
    local grown = h.peak_growth_kib(function(sample)
      job = assert(loop:spawn { command = "yes abcdefg | head -c 67108864", ring = 65536 })
      -- offsets() makes no table: the loop leaves no garbage to measure
      assert.is_true(h.pump(loop, function()
        sample()
        if select(2, job:offsets()) < 64 * 1024 * 1024 then return false end
        local info = job:info()
        return info.state == "exited" and info.eof
      end, 30000))
    end)
    local tail, head = job:offsets()
    assert.equal(64 * 1024 * 1024, head)
    assert.equal(head - 65536, tail)
    local data, _, dropped = job:read(0)
    assert.equal(65536, #data)
    assert.equal(head - 65536, dropped)
    assert.equal(("abcdefg\n"):rep(8192), data)
    assert.is_true(grown < 8 * 1024, ("RSS grew by %d KiB"):format(grown))
  end)

  describe("line tails", function()
    local function job_printing(s)
      local job = assert(loop:spawn { argv = { "printf", "%s", s } })
      h.finish(loop, job)
      return job
    end

    it("returns the last N lines, a trailing newline ending the last", function()
      local job = job_printing("a\nb\nc\n")
      assert.equal("b\nc\n", (job:tail(2)))
      assert.equal("c\n", (job:tail(1)))
      assert.equal("a\nb\nc\n", (job:tail(3)))
      assert.equal("a\nb\nc\n", (job:tail(100)))
      assert.equal("", (job:tail(0)))
    end)

    it("counts a final line without a newline", function()
      local job = job_printing("a\nb\nc")
      assert.equal("b\nc", (job:tail(2)))
      assert.equal("c", (job:tail(1)))
    end)

    it("keeps empty lines", function()
      local job = job_printing("a\n\n\nb\n")
      assert.equal("\nb\n", (job:tail(2)))
      assert.equal("\n\nb\n", (job:tail(3)))
    end)

    it("returns where the tail starts, for use as a cursor", function()
      local job = job_printing("one\ntwo\nthree\n")
      local data, from = job:tail(1)
      assert.equal("three\n", data)
      assert.equal(8, from)
      assert.equal("three\n", (job:read(from)))
    end)

    it("caps a tail at max bytes", function()
      local job = job_printing("short\n" .. ("x"):rep(1000) .. "\n")
      local data = job:tail(1, "both", 100)
      assert.equal(100, #data)
      assert.equal(("x"):rep(99) .. "\n", data)
    end)

    it("answers from the ring only once lines were wrapped away", function()
      local job = assert(loop:spawn { command = "seq 1 100000", ring = 4096 })
      h.finish(loop, job)
      assert.equal("99998\n99999\n100000\n", (job:tail(3)))
      local all = job:tail(1000000)
      assert.is_true(#all <= 4096)
      assert.equal("100000\n", all:sub(-7))
    end)
  end)

  describe("two streams in one ring", function()
    local script = "for i in 1 2 3 4 5 6 7 8; do echo out$i; sleep 0.02; echo err$i >&2; sleep 0.02; done"

    it("keeps arrival order across stdout and stderr", function()
      local job = assert(loop:spawn { command = script })
      local out = h.finish(loop, job)
      local expected = {}
      for i = 1, 8 do expected[#expected + 1] = ("out%d\nerr%d\n"):format(i, i) end
      assert.equal(table.concat(expected), out)
    end)

    it("tells the streams apart", function()
      local job = assert(loop:spawn { command = script })
      h.finish(loop, job)
      assert.equal("out1\nout2\nout3\nout4\nout5\nout6\nout7\nout8\n", (job:read(0, nil, "stdout")))
      assert.equal("err1\nerr2\nerr3\nerr4\nerr5\nerr6\nerr7\nerr8\n", (job:read(0, nil, "stderr")))
      local runs = job:runs()
      assert.equal(16, #runs)
      for i, run in ipairs(runs) do
        assert.equal(i % 2 == 1 and "stdout" or "stderr", run[3])
        assert.equal(5, run[2] - run[1])
      end
      assert.equal("err7\nerr8\n", (job:tail(2, "stderr")))
      assert.equal("out8\n", (job:tail(1, "stdout")))
    end)

    it("reads one stream from a cursor and caps by that stream's bytes", function()
      local job = assert(loop:spawn { command = script })
      h.finish(loop, job)
      local data, next = job:read(0, 7, "stderr")
      assert.equal("err1\ner", data)
      data = job:read(next, nil, "stderr")
      assert.equal("r2\nerr3\n", data:sub(1, 8))
    end)

    it("with merge = true shares one pipe: exact order, all of it stdout", function()
      local job = assert(loop:spawn { command = "echo a; echo b >&2; echo c", merge = true })
      assert.equal("a\nb\nc\n", h.finish(loop, job))
      assert.equal("a\nb\nc\n", (job:read(0, nil, "stdout")))
      assert.equal("", (job:read(0, nil, "stderr")))
    end)

    it("rejects an unknown stream name", function()
      local job = assert(loop:spawn { argv = { "true" } })
      assert.has_error(function() job:read(0, 10, "stdoot") end)
      h.finish(loop, job)
    end)
  end)

  it("keeps output written just before exit", function()
    local job = assert(loop:spawn { command = "head -c 300000 /dev/zero | tr '\\0' x; exit 4" })
    local got_exit = false
    local deadline = h.now_ms() + 5000
    while not got_exit and h.now_ms() < deadline do
      for _, ev in ipairs(loop:wait(100)) do
        if ev.exit then
          got_exit = true
          -- everything written before exit is in the ring when exit is reported
          assert.equal(300000, select(2, job:offsets()))
        end
      end
    end
    assert.is_true(got_exit)
  end)

  it("shrinks a finished job's ring to what it holds, keeping offsets and streams", function()
    local job = assert(loop:spawn { command = "echo out; echo err >&2; printf tail", ring = 65536 })
    local busy = { job:shrink() }
    if busy[1] == nil then assert.equal("EBUSY", busy[3]) end
    h.finish(loop, job)
    local before = { job:read(0) }
    local runs = job:runs()
    assert.equal(64, job:shrink())
    assert.same(before, { job:read(0) })
    assert.same(runs, job:runs())
    assert.equal("err\n", (job:read(0, nil, "stderr")))
    assert.equal("tail", (job:tail(1, "stdout")))
    -- a wrapped ring shrinks to its window
    local big = assert(loop:spawn { command = "seq 1 3000", ring = 4096 })
    h.finish(loop, big)
    local data, next, dropped = big:read(0)
    assert.equal(4096, big:shrink())
    assert.same({ data, next, dropped }, { big:read(0) })
  end)

  it("raises on misuse and on a closed job", function()
    local job = assert(loop:spawn { argv = { "echo", "hi" } })
    h.finish(loop, job)
    assert.has_error(function() job:read(-1) end)
    assert.has_error(function() job:read("x") end)
    assert.has_error(function() job:tail(-1) end)
    job:close()
    job:close()
    assert.has_error(function() job:read(0) end, "attempt to use a closed job")
    assert.equal("closed", job:info().state)
  end)
end)
