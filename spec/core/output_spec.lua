-- bgproc.core: a finished job's output saved to a file and loaded back
-- (core.output_load) answers every read exactly as the job's ring did;
-- job:drop_output() frees a finished job's ring.
local core = require "bgproc.core"
local h = require "helpers"

local HUGE = math.maxinteger

describe("core output", function()
  local loop
  local files = {}

  -- A temporary file holding bytes (removed after each test).
  local function tmpfile(bytes)
    local path = os.tmpname()
    files[#files + 1] = path
    local f = assert(io.open(path, "wb"))
    f:write(bytes)
    f:close()
    return path
  end

  before_each(function() loop = core.new() end)
  after_each(function()
    loop:close()
    for i = #files, 1, -1 do
      os.remove(files[i])
      files[i] = nil
    end
  end)

  -- What the engine keeps of a finished job: its bytes from its tail and
  -- its stderr runs.
  local function save(job)
    local tail = job:offsets()
    local data, next, dropped = job:read(tail, HUGE)
    assert.equal(select(2, job:offsets()), next)
    assert.equal(0, dropped)
    local runs = {}
    for _, r in ipairs(job:runs()) do
      if r[3] == "stderr" then runs[#runs + 1] = { r[1], r[2] } end
    end
    return tmpfile(data), tail, runs
  end

  local function finished(spec)
    local job = assert(loop:spawn(spec))
    h.finish(loop, job)
    return job
  end

  -- Offsets where answers change: around the tail, the middle, the head.
  local function cursors(tail, head)
    local mid = (tail + head) // 2
    local list, seen = {}, {}
    for _, v in ipairs { 0, tail - 1, tail, tail + 1, tail + 7, mid - 1, mid,
                         head - 5, head - 1, head, head + 10 } do
      if v >= 0 and not seen[v] then
        seen[v] = true
        list[#list + 1] = v
      end
    end
    return list
  end

  local STREAMS = { n = 4, nil, "both", "stdout", "stderr" }

  -- Every read, tail, runs and offsets of obj, as a comparable list.
  -- shift moves the offsets asked (and those answered back, by unshift).
  local function answers(obj, tail, head, shift)
    shift = shift or 0
    local out = {}
    local function put(key, ...) out[#out + 1] = { key, ... } end
    local t, hd = obj:offsets()
    put("offsets", t - shift, hd - shift)
    for _, since in ipairs(cursors(tail, head)) do
      for _, max in ipairs { n = 7, nil, 0, 1, 5, 64, 1000, HUGE } do
        for s = 1, STREAMS.n do
          local data, next, dropped = obj:read(since + shift, max, STREAMS[s])
          put("read", since, max, STREAMS[s], data, next - shift, dropped)
        end
      end
    end
    for _, lines in ipairs { n = 8, nil, 0, 1, 2, 3, 5, 50, 100000 } do
      for s = 1, STREAMS.n do
        for _, max in ipairs { n = 7, nil, 0, 1, 3, 20, 200, 100000 } do
          local data, from = obj:tail(lines, STREAMS[s], max)
          put("tail", lines, STREAMS[s], max, data, from - shift)
        end
      end
    end
    local function shifted(runs)
      for _, r in ipairs(runs) do r[1], r[2] = r[1] - shift, r[2] - shift end
      return runs
    end
    put("runs", shifted(obj:runs()))
    for _, from in ipairs(cursors(tail, head)) do
      for _, to in ipairs(cursors(tail, head)) do
        put("runs", from, to, shifted(obj:runs(from + shift, to + shift)))
      end
      put("runs", from, shifted(obj:runs(from + shift)))
    end
    return out
  end

  local function assert_same_reads(job, out)
    local tail, head = job:offsets()
    assert.same({ job:offsets() }, { out:offsets() })
    local want, got = answers(job, tail, head), answers(out, tail, head)
    assert.equal(#want, #got)
    for i = 1, #want do assert.same(want[i], got[i]) end
  end

  -- Interleaved stdout and stderr lines, bytes that are not UTF-8, and a
  -- last line without a newline.
  local MIXED = "for i in 1 2 3 4 5 6; do echo \"out $i\"; echo \"err $i\" >&2; done; " ..
                "printf 'bin \\377\\376\\200\\n'; printf 'e\\351\\n' >&2; echo more; printf last"

  describe("loaded from a finished job's saved output", function()
    it("answers read, tail, runs and offsets exactly like the job", function()
      local job = finished { command = MIXED }
      local path, tail, runs = save(job)
      assert.equal(0, tail)
      assert.is_true(#runs > 0)
      local out = assert(core.output_load(path, tail, runs))
      assert.matches("bin \255\254\128\n", (out:read(0, nil, "stdout")), 1, true)
      assert.matches("e\233\n", (out:read(0, nil, "stderr")), 1, true)
      assert.equal("last", (out:tail(1, "stdout")))
      assert_same_reads(job, out)
      out:close()
    end)

    it("takes the job's own runs list (stdout runs included) as well", function()
      local job = finished { command = MIXED }
      local path, tail, runs = save(job)
      local a = assert(core.output_load(path, tail, runs))
      local b = assert(core.output_load(path, tail, job:runs()))
      assert.same(job:runs(), a:runs())
      assert.same(a:runs(), b:runs())
      assert.same({ a:read(0, nil, "stderr") }, { b:read(0, nil, "stderr") })
      a:close()
      b:close()
    end)

    it("answers like a ring that wrapped, its tail past 0", function()
      -- two streams of about 2.7 KB each through a 4 KiB ring: whatever
      -- the order they arrived in, the window holds some of each
      local job = finished {
        command = "i=100; while [ $i -lt 300 ]; do echo \"out line $i\"; " ..
                  "echo \"err line $i\" >&2; i=$((i+1)); done",
        ring = 4096,
      }
      local path, tail, runs = save(job)
      local _, head = job:offsets()
      assert.is_true(tail > 0)
      assert.equal(4096, head - tail)
      assert.is_true(#runs > 0)
      assert.is_true(#job:read(0, nil, "stdout") > 0)
      local out = assert(core.output_load(path, tail, runs))
      local data, next, dropped = out:read(0)
      assert.equal(4096, #data)
      assert.equal(head, next)
      assert.equal(tail, dropped)
      assert_same_reads(job, out)
      out:close()
    end)

    it("answers the same at any start offset, the sizes not a multiple of 64", function()
      local job = finished { command = MIXED }
      local path, tail, runs = save(job)
      local _, head = job:offsets()
      assert.is_true((head - tail) % 64 ~= 0)
      local shift = 1000003
      for _, r in ipairs(runs) do r[1], r[2] = r[1] + shift, r[2] + shift end
      local out = assert(core.output_load(path, tail + shift, runs))
      assert.same({ tail + shift, head + shift }, { out:offsets() })
      assert.same(answers(job, tail, head), answers(out, tail, head, shift))
      assert.equal(tail + shift, select(3, out:read(0)))
      out:close()
    end)

    it("loads a larger output whole", function()
      local job = finished { command = "seq 1 30000; echo oops >&2; seq 30001 30100" }
      local path, tail, runs = save(job)
      local out = assert(core.output_load(path, tail, runs))
      assert.same({ job:offsets() }, { out:offsets() })
      assert.same({ job:read(0) }, { out:read(0) })
      assert.same({ job:read(0, nil, "stdout") }, { out:read(0, nil, "stdout") })
      assert.equal("oops\n", (out:read(0, nil, "stderr")))
      assert.same({ job:tail(3) }, { out:tail(3) })
      assert.same({ job:tail(1, "stderr") }, { out:tail(1, "stderr") })
      assert.same(job:runs(), out:runs())
      out:close()
    end)

    it("loads a job that printed nothing", function()
      local job = finished { argv = { "true" } }
      local path, tail, runs = save(job)
      local out = assert(core.output_load(path, tail, runs))
      assert.same({ 0, 0 }, { out:offsets() })
      assert_same_reads(job, out)
      out:close()
    end)
  end)

  describe("core.output_load", function()
    it("gives an empty file an empty window at its start", function()
      local out = assert(core.output_load(tmpfile(""), 42, { { 0, 100 } }))
      assert.same({ 42, 42 }, { out:offsets() })
      assert.same({ "", 42, 0 }, { out:read(42) })
      assert.same({ "", 42, 42 }, { out:read(0) })
      assert.same({ "", 42 }, { out:tail() })
      assert.same({}, out:runs())
      out:close()
    end)

    it("places the file at start and clips, orders and overlaps runs", function()
      local path = tmpfile("abcdefghij")
      local out = assert(core.output_load(path, 100, {
        { 150, 160 },                  -- past the head: ignored
        { 108, 200 },                  -- clipped to 110
        { 105, 106 }, { 104, 106 },    -- overlapping, unsorted
        { 107, 107 }, { 109, 102 },    -- empty
        { 90, 103 },                   -- clipped to 100
      }))
      assert.same({ 100, 110 }, { out:offsets() })
      assert.same({
        { 100, 103, "stderr" }, { 103, 104, "stdout" }, { 104, 106, "stderr" },
        { 106, 108, "stdout" }, { 108, 110, "stderr" },
      }, out:runs())
      assert.same({ "abcefij", 110, 100 }, { out:read(0, nil, "stderr") })
      assert.same({ "dgh", 110, 0 }, { out:read(100, nil, "stdout") })
      assert.same({ "cdefg", 107, 0 }, { out:read(102, 5) })
      out:close()
      -- a later run wins, and may say "stdout"
      out = assert(core.output_load(path, 100, { { 100, 110 }, { 102, 104, "stdout" } }))
      assert.same({ { 100, 102, "stderr" }, { 102, 104, "stdout" }, { 104, 110, "stderr" } },
                  out:runs())
      out:close()
      -- without runs, all of it is stdout
      out = assert(core.output_load(path, 0))
      assert.same({ { 0, 10, "stdout" } }, out:runs())
      out:close()
    end)

    it("returns nil, message, errno name for a file it cannot load", function()
      local out, msg, name = core.output_load("/nonexistent/bgproc-output", 0)
      assert.is_nil(out)
      assert.equal("ENOENT", name)
      assert.matches("^ENOENT: open '/nonexistent/bgproc%-output'", msg)
      out, msg, name = core.output_load("/", 0)
      assert.is_nil(out)
      assert.equal("EISDIR", name)
      assert.matches("^EISDIR: ", msg)
      -- not a regular file: its size says nothing (and a FIFO must not block)
      local fifo = tmpfile("")
      os.remove(fifo)
      assert(h.sh("mkfifo '" .. fifo .. "'"))
      out, msg, name = core.output_load(fifo, 0)
      assert.is_nil(out)
      assert.equal("EINVAL", name)
      assert.matches("^EINVAL: load ", msg)
      -- offsets past what a Lua integer holds
      out, msg, name = core.output_load(tmpfile("xy"), HUGE - 1)
      assert.is_nil(out)
      assert.equal("EOVERFLOW", name)
      assert.matches("^EOVERFLOW: ", msg)
      out = assert(core.output_load(tmpfile("x"), HUGE - 1))
      assert.same({ HUGE - 1, HUGE }, { out:offsets() })
      out:close()
    end)

    it("raises on bad arguments", function()
      local path = tmpfile("data\n")
      for _, args in ipairs {
        { n = 0 }, { n = 1, path }, { n = 2, path, -1 }, { n = 2, path, 1.5 },
        { n = 2, path, "x" }, { n = 2, {}, 0 },
        { n = 3, path, 0, "runs" }, { n = 3, path, 0, { 5 } },
        { n = 3, path, 0, { { 1 } } }, { n = 3, path, 0, { { 1, 2.5 } } },
        { n = 3, path, 0, { { -1, 3 } } }, { n = 3, path, 0, { { 1, -3 } } },
        { n = 3, path, 0, { { 1, 3 }, { "a", 4 } } },
        { n = 3, path, 0, { { 1, 3, "stdin" } } }, { n = 3, path, 0, { { 1, 3, 2 } } },
      } do
        assert.has_error(function() core.output_load(table.unpack(args, 1, args.n)) end)
      end
      -- misuse raises before the file is looked at
      assert.has_error(function() core.output_load("/nonexistent/x", 0, { { -1, 2 } }) end)
      local out = assert(core.output_load(path, 0))
      assert.has_error(function() out:read(-1) end)
      assert.has_error(function() out:read("x") end)
      assert.has_error(function() out:read(0, -1) end)
      assert.has_error(function() out:read(0, 10, "stdoot") end)
      assert.has_error(function() out:tail(-1) end)
      assert.has_error(function() out:tail(1, "both", -1) end)
      assert.has_error(function() out:runs(-1) end)
      assert.has_error(function() out:runs(0, -1) end)
      assert.has_error(function() out.read({}) end)
      out:close()
    end)

    it("closes at once, twice is fine, and reads then raise", function()
      local out = assert(core.output_load(tmpfile("one\ntwo\n"), 7))
      assert.matches("^bgproc.core.Output: %[7, 15%)$", tostring(out))
      out:close()
      out:close()
      assert.equal("bgproc.core.Output (closed)", tostring(out))
      for _, m in ipairs { "read", "tail", "runs", "offsets" } do
        assert.has_error(function() out[m](out) end, "attempt to use a closed output")
      end
      local kept
      do
        local o <close> = assert(core.output_load(tmpfile("x"), 0))
        kept = o
        assert.equal("x", (o:read()))
      end
      assert.has_error(function() kept:read() end, "attempt to use a closed output")
      -- left to the collector
      assert(core.output_load(tmpfile("y"), 0))
      collectgarbage()
      collectgarbage()
    end)
  end)

  describe("job:drop_output", function()
    it("frees a finished job's ring; the job stays usable", function()
      local job = finished { command = "echo out; echo err >&2; exit 3" }
      assert.is_number(job:info().ring)
      assert.is_true(job:drop_output())
      for _, m in ipairs { "read", "tail", "runs", "offsets", "shrink" } do
        assert.has_error(function() job[m](job) end, "job output was dropped")
      end
      assert.is_true(job:drop_output())
      assert.is_false(job:alive())
      assert.equal(3, (job:exit()))
      assert.is_number(job:pid())
      local info = job:info()
      assert.equal("exited", info.state)
      assert.equal(3, info.code)
      assert.is_true(info.eof)
      assert.is_true(info.output_dropped)
      assert.is_nil(info.ring)
      assert.is_nil(info.head)
      local hits, _, name = job:kill()
      assert.is_nil(hits)
      assert.equal("ESRCH", name)
      assert.equal(0, job:members())
      assert.same({}, job:escaped())
      job:cgroup()
      assert.matches("exited", tostring(job))
      job:close()
      assert.has_error(function() job:read() end, "attempt to use a closed job")
      assert.has_error(function() job:drop_output() end, "attempt to use a closed job")
    end)

    it("is EBUSY while output is still open, and works once it is in", function()
      local job = assert(loop:spawn { argv = { "cat" }, stdin = "pipe" })
      assert.equal(6, job:write("hello\n"))
      assert.is_true(h.pump(loop, function() return job:read(0) == "hello\n" end))
      local ok, msg, name = job:drop_output()
      assert.is_nil(ok)
      assert.equal("EBUSY", name)
      assert.matches("^EBUSY: ", msg)
      -- nothing was dropped
      assert.equal("hello\n", (job:read(0)))
      assert.is_true(job:close_stdin())
      h.finish(loop, job)
      local path, tail, runs = save(job)
      assert.is_true(job:drop_output())
      local out = assert(core.output_load(path, tail, runs))
      assert.same({ "hello\n", 6, 0 }, { out:read(0) })
      out:close()
    end)
  end)
end)
