-- searchBackgroundOutput: one regex over many jobs' output, in rings and
-- in stored files, newest job first, with context and bounds.
local h = require "helpers"

describe("searchBackgroundOutput", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function()
    h.cleanup()
    os.execute("rm -rf " .. dir)
  end)

  local function engine() return h.manager { store = dir .. "/bgproc.db" } end
  local function start(m, args) return h.ok(m, "createBackgroundProcess", args) end
  local function search(m, args) return h.ok(m, "searchBackgroundOutput", args) end
  local function settled(m, id)
    return m:run_until(function()
      local r = m:record(id)
      return r.status == "completed" and m.jobs[id].moved
    end, 10000)
  end

  it("finds lines in finished (stored) and running jobs, newest first, with line numbers and cursors", function()
    local m = engine()
    local a = start(m, { command = "printf 'alpha\\nneedle one\\ngamma\\n'", name = "a", tags = { "t" } })
    assert.is_true(settled(m, a.id))
    local b = start(m, { command = "echo 'x needle two'; exec sleep 600", name = "b", tags = { "t" } })
    assert.is_true(m:run_until(function()
      return h.ok(m, "getBackgroundProcess", { processId = b.id }).output ~= ""
    end, 10000))
    local r = search(m, { pattern = "needle" })
    assert.equal(2, r.count)
    assert.is_false(r.truncated)
    assert.equal(b.id, r.matches[1].processId)
    assert.equal("x needle two", r.matches[1].text)
    assert.equal(1, r.matches[1].line)
    assert.equal(a.id, r.matches[2].processId)
    assert.equal(2, r.matches[2].line)
    assert.equal("a", r.matches[2].name)
    -- a cursor reads from that line on
    local g = h.ok(m, "getBackgroundProcess", { processId = a.id, since = r.matches[2].cursor })
    assert.equal("needle one\ngamma\n", g.output)
    assert.equal(2, r.searchedJobs)
  end)

  it("gives context lines, and honours /re/flags and ^ per line", function()
    local m = engine()
    local a = start(m, { command = "printf 'l1\\nl2\\nWARN x\\nl4\\nl5'" })
    assert.is_true(settled(m, a.id))
    local r = search(m, { pattern = "/^warn/i", contextLines = 2 })
    assert.equal(1, r.count)
    assert.same({ "l1", "l2" }, r.matches[1].before)
    assert.same({ "l4", "l5" }, r.matches[1].after)
    assert.equal(3, r.matches[1].line)
    assert.equal(0, search(m, { pattern = "^x" }).count)
  end)

  it("narrows by selectors and processIds; a selection of nothing is an empty answer", function()
    local m = engine()
    local a = start(m, { command = "echo hit", name = "one", tags = { "x" } })
    local b = start(m, { command = "echo hit", name = "two", tags = { "y" } })
    assert.is_true(settled(m, a.id) and settled(m, b.id))
    assert.equal(2, search(m, { pattern = "hit" }).count)
    assert.equal(a.id, search(m, { pattern = "hit", tags = { "x" } }).matches[1].processId)
    assert.equal(b.id, search(m, { pattern = "hit", processIds = { "two" } }).matches[1].processId)
    assert.equal(1, search(m, { pattern = "hit", name = "tw" }).count)
    local none = search(m, { pattern = "hit", tags = { "nothing" } })
    assert.equal(0, none.count)
    assert.equal(0, none.searchedJobs)
    assert.equal(0, search(m, { pattern = "hit", status = "running" }).count)
  end)

  it("bounds the answer: maxMatches sets truncated; long lines are cut", function()
    local m = engine()
    local a = start(m, { command = "for i in $(seq 1 50); do echo match $i; done; head -c 5000 /dev/zero | tr '\\0' m" })
    assert.is_true(settled(m, a.id))
    local r = search(m, { pattern = "match", maxMatches = 10 })
    assert.equal(10, r.count)
    assert.is_true(r.truncated)
    assert.equal("match 10", r.matches[10].text)
    local long = search(m, { pattern = "^m+$" })
    assert.equal(1, long.count)
    assert.is_true(#long.matches[1].text < 600, "cut at 500 characters")
    assert.matches("…$", long.matches[1].text)
  end)

  it("refuses a malformed pattern, naming it; an output file gone is no error", function()
    local m = engine()
    local msg = h.fails(m, "invalid_argument", "searchBackgroundOutput", { pattern = "(" })
    assert.matches("'pattern'", msg)
    h.fails(m, "invalid_argument", "searchBackgroundOutput", {})
    local a = start(m, { command = "echo gone-soon" })
    assert.is_true(settled(m, a.id))
    os.remove(dir .. "/output/" .. a.id .. ".log")
    assert.equal(0, search(m, { pattern = "gone" }).count)
  end)

  it("stops a pathological pattern after its time, with what it found", function()
    local m = engine()
    -- 4 MB of it: far more than 5 s of this pattern's backtracking
    local a = start(m, { command = "yes xxxxxxxxxxxxxxx | head -c 4000000; echo; exec sleep 600",
                         outputBytes = 4 * 1024 * 1024 })
    assert.is_true(m:run_until(function()
      return h.ok(m, "getBackgroundProcess", { processId = a.id }).outputBytes >= 4000000
    end, 10000))
    local t0 = h.now_ms()
    local r = search(m, { pattern = "(x+x+)+y" })
    local took = h.now_ms() - t0
    assert.is_true(r.timedOut)
    assert.is_true(r.truncated)
    assert.equal(0, r.count)
    assert.is_true(took >= 4500 and took < 9000, "about its 5 s, took " .. took .. " ms")
  end)

  it("searches in memory without a store", function()
    local m = h.manager()
    local a = start(m, { command = "echo in-memory" })
    assert.is_true(m:run_until(function() return m:record(a.id).status == "completed" end, 10000))
    local r = search(m, { pattern = "memory" })
    assert.equal(1, r.count)
    assert.equal("in-memory", r.matches[1].text)
  end)
end)
