-- History on disk (engine/history.lua): records and output outlive the
-- engine, a finished job's output leaves memory, ids never come back,
-- retention deletes for real, and a store that fails costs no job.
local h = require "helpers"

describe("history in a store", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function()
    h.cleanup()
    os.execute("rm -rf " .. dir)
  end)

  local function db_path() return dir .. "/state/bgproc/bgproc.db" end
  local function engine(opts)
    local o = { store = db_path() }
    for k, v in pairs(opts or {}) do o[k] = v end
    return h.manager(o)
  end
  local function start(m, args, ctx) return h.ok(m, "createBackgroundProcess", args, ctx) end
  local function done(m, id)
    return m:run_until(function()
      local r = m:record(id)
      return r and (r.status == "completed" or r.status == "failed" or r.status == "cancelled")
    end, 10000)
  end
  -- the engine's own record (to see where its output is)
  local function rec_of(m, id) return m.jobs[id] end
  local function settled(m, id)
    return m:run_until(function() return done(m, id) and m.jobs[id].moved end, 10000)
  end
  local function mode(path)
    local _, out = h.sh("stat -c %a " .. path)
    return (out:gsub("%s+$", ""))
  end

  it("keeps records and output across engines; a finished job's output is on disk only", function()
    local m = engine()
    local r = start(m, { command = "echo out1; echo err1 >&2; echo out2; printf 'last'", name = "mixed",
                         tags = { "t1" }, env = { A = "1" } })
    assert.is_true(done(m, r.id))
    assert.is_true(m:run_until(function() return rec_of(m, r.id).moved end, 10000), "its output moved to disk")
    local before = h.ok(m, "getBackgroundProcess", { processId = r.id })
    local last4 = h.ok(m, "getBackgroundProcess", { processId = r.id, since = before.outputBytes - 4 }).output
    local rec = rec_of(m, r.id)
    assert.is_true(rec.moved)
    local file = dir .. "/state/bgproc/output/" .. r.id .. ".log"
    assert.equal(before.output, h.read_file(file), "both streams, as they came")
    assert.equal(#"out1\nerr1\nout2\nlast", #before.output)
    assert.equal("600", mode(file))
    assert.equal("700", mode(dir .. "/state/bgproc/output"))
    assert.equal("600", mode(db_path()))
    m:shutdown()

    local m2 = engine()
    local g = h.ok(m2, "getBackgroundProcess", { processId = r.id })
    for _, k in ipairs { "id", "name", "status", "exitCode", "outputBytes", "droppedBytes", "startedAt", "endedAt",
                         "lastLine", "endReason" } do
      assert.same(before[k], g[k], k)
    end
    assert.same({ "t1" }, g.tags)
    assert.equal(before.output, g.output)
    local err = h.ok(m2, "getBackgroundProcess", { processId = r.id, stream = "stderr" })
    assert.equal("err1\n", err.output)
    local list = h.ok(m2, "listBackgroundProcesses", { tags = { "t1" } })
    assert.equal(1, list.count)
    assert.equal(before.lastLine, list.processes[1].lastLine)
    -- a name finds it too, and a cursor read goes on where it was
    assert.equal(r.id, h.ok(m2, "getBackgroundProcess", { processId = "mixed" }).id)
    assert.equal(last4, h.ok(m2, "getBackgroundProcess", { processId = r.id, since = before.outputBytes - 4 }).output)
  end)

  it("gives ids that never come back, across engines and after removals", function()
    local m = engine()
    local a = start(m, { argv = { "true" } })
    assert.is_true(done(m, a.id))
    h.ok(m, "removeBackgroundProcesses", { processIds = { a.id } })
    m:shutdown()
    local m2 = engine()
    local b = start(m2, { argv = { "true" } })
    assert.not_equal(a.id, b.id)
    assert.equal(a.id:match("^(.-)%-"), b.id:match("^(.-)%-"), "one prefix for the database's life")
    assert.is_true(tonumber(b.id:match("%-(%d+)$")) > tonumber(a.id:match("%-(%d+)$")))
  end)

  it("flushes a running job's output, and cuts a finished job's file to its ring", function()
    local m = engine()
    -- 200 KiB then a wait on stdin: its output is flushed once 64 KiB wait
    local r = start(m, { command = "head -c 204800 /dev/zero | tr '\\0' 'x'; echo; read x; echo end",
                         stdin = "pipe", outputBytes = 65536 })
    local file = dir .. "/state/bgproc/output/" .. r.id .. ".log"
    assert.is_true(m:run_until(function()
      local f = io.open(file)
      local n = f and f:seek("end") or 0
      if f then f:close() end
      return n >= 65536
    end, 10000), "flushed while it runs")
    h.ok(m, "sendBackgroundProcessInput", { processId = r.id, input = "go\n" })
    assert.is_true(done(m, r.id))
    assert.is_true(m:run_until(function() return rec_of(m, r.id).moved end, 10000))
    local body = h.read_file(file)
    assert.is_true(#body == 65536, "the file holds what the ring held: outputBytes at most, not " .. #body)
    assert.is_true(body:sub(-6) == "x\nend\n", "the file ends with the output's end")
    local g = h.ok(m, "getBackgroundProcess", { processId = r.id, lines = 1 })
    assert.equal("end\n", g.output)
    assert.equal(204805, g.outputBytes)
  end)

  it("deletes what retention drops: rows and files", function()
    local m = engine { retention = { maxFinished = 2 } }
    local ids = {}
    for i = 1, 3 do
      local r = start(m, { command = "echo job" .. i })
      assert.is_true(done(m, r.id))
      assert.is_true(m:run_until(function() return rec_of(m, r.id) == nil or rec_of(m, r.id).moved end, 10000))
      ids[i] = r.id
    end
    assert.is_true(m:run_until(function() return m:record(ids[1]) == nil end, 10000))
    assert.is_nil(io.open(dir .. "/state/bgproc/output/" .. ids[1] .. ".log"))
    m:shutdown()
    local _, rows = h.sh(("sqlite3 %s 'select id from jobs order by seq'"):format(db_path()))
    assert.equal(ids[2] .. "\n" .. ids[3] .. "\n", rows)
  end)

  it("keeps the inherited environment off disk, and reruns with the caller's", function()
    local secret = "s3cr3t-" .. h.new_marker()
    local m = engine()
    local base = { PATH = os.getenv("PATH"), SECRET_TOKEN = secret }
    local r = start(m, { command = ('test "${#SECRET_TOKEN}" = %d && echo has-it "$MINE"'):format(#secret),
                         env = { MINE = "given" }, baseEnv = base, name = "sec" })
    assert.is_true(done(m, r.id))
    assert.equal("has-it given\n", h.ok(m, "getBackgroundProcess", { processId = r.id }).output)
    m:shutdown()
    local _, where = h.sh(("grep -r -a -l %q %s/state"):format(secret, dir))
    assert.equal("", where, "the secret is nowhere under the state directory")
    local m2 = engine()
    local rr = start(m2, { rerun = "sec", baseEnv = { PATH = os.getenv("PATH"), SECRET_TOKEN = secret } })
    assert.not_equal(r.id, rr.id)
    assert.equal("sec", rr.name)
    assert.is_true(done(m2, rr.id))
    assert.equal("has-it given\n", h.ok(m2, "getBackgroundProcess", { processId = rr.id }).output)
    -- a restored job cannot restart under its id: it says to rerun it
    local msg = h.fails(m2, "conflict", "restartBackgroundProcess", { processId = r.id })
    assert.matches("rerun", msg)
  end)

  it("marks a job that was running when its engine died as failed, with its flushed output", function()
    local m = engine()
    local r = start(m, { command = "echo before; exec sleep 600" })
    assert.is_true(m:run_until(function()
      return h.ok(m, "getBackgroundProcess", { processId = r.id }).output == "before\n"
    end, 10000))
    -- what a killed daemon leaves: its row says running, its file has what was flushed
    assert.is_true(m:run_until(function()
      return h.read_file(dir .. "/state/bgproc/output/" .. r.id .. ".log") == "before\n"
    end, 5000), "flushed within a second")
    local pid = r.pid
    local copy = dir .. "/copy"
    os.execute(("mkdir -p %s && cp -a %s/state %s/"):format(copy, dir, copy))
    m:shutdown()
    assert.is_false(h.alive(pid))
    local m2 = h.manager { store = copy .. "/state/bgproc/bgproc.db" }
    local g = h.ok(m2, "getBackgroundProcess", { processId = r.id })
    assert.equal("failed", g.status)
    assert.equal("daemon-died", g.stopReason)
    assert.equal("before\n", g.output)
    assert.equal("before", g.lastLine)
    os.execute("rm -rf " .. copy)
  end)

  it("runs on in memory when the store is in use, and says so", function()
    local holder = engine()
    local m = engine()
    local st = m:store_status()
    assert.matches("in use", st.failure)
    local r = start(m, { command = "echo fine" })
    assert.matches("history is not being saved", r.warning)
    assert.is_true(done(m, r.id))
    assert.equal("fine\n", h.ok(m, "getBackgroundProcess", { processId = r.id }).output)
    assert.is_nil(holder:store_failure())
  end)

  it("keeps a job's output in memory when its file cannot be written (disk full), and says so", function()
    local mnt = dir .. "/state"
    os.execute("mkdir -p " .. mnt)
    if not h.sh(("mount -t tmpfs -o size=256k tmpfs %s 2>/dev/null"):format(mnt)) then
      pending("mount -t tmpfs is not allowed here")
      return
    end
    local ok, err = pcall(function()
      local m = engine()
      assert.is_nil(m:store_failure())
      local r = start(m, { command = "head -c 1048576 /dev/zero | tr '\\0' y; echo; echo tail-line",
                           outputBytes = 2 * 1024 * 1024 })
      assert.is_true(done(m, r.id))
      assert.is_true(m:run_until(function() return m:store_failure() ~= nil end, 5000))
      assert.matches("space", m:store_failure())
      local g = h.ok(m, "getBackgroundProcess", { processId = r.id, lines = 1 })
      assert.equal("tail-line\n", g.output)
      assert.equal(1048576 + 11, g.outputBytes)
      assert.equal(0, g.droppedBytes, "the ring kept it all")
      assert.equal(1, h.ok(m, "listBackgroundProcesses", {}).count)
      assert.matches("history is not being saved", start(m, { argv = { "true" } }).warning)
      m:shutdown()
    end)
    os.execute("umount " .. mnt)
    assert(ok, err)
  end)

  it("journals a job's end even when its file cannot be written, and never doubles output", function()
    local m = engine()
    os.execute(("mkdir -p %s/state/bgproc/output"):format(dir))
    -- its first flush cannot write the stderr runs: nothing of it stays
    local r = start(m, { command = "echo A; echo E >&2; read x; echo B", stdin = "pipe" })
    local out = dir .. "/state/bgproc/output/" .. r.id
    os.execute(("mkdir %s.err"):format(out))
    assert.is_true(m:run_until(function() return m:store_failure() ~= nil end, 5000), "the flush failed")
    assert.equal("", h.read_file(out .. ".log") or "", "no half-written log")
    os.execute(("rmdir %s.err"):format(out))
    h.ok(m, "sendBackgroundProcessInput", { processId = r.id, input = "\n" })
    assert.is_true(done(m, r.id))
    local g = h.ok(m, "getBackgroundProcess", { processId = r.id })
    assert.equal(6, g.outputBytes)
    assert.equal(6, #g.output, "each byte once: " .. g.output)
    assert.is_nil(m:store_failure(), "the failure is over")
    -- a job whose file cannot be written at all ends journaled all the same
    local r2 = start(m, { command = "echo x; read y", stdin = "pipe" })
    os.execute(("mkdir %s/state/bgproc/output/%s.log"):format(dir, r2.id))
    h.ok(m, "sendBackgroundProcessInput", { processId = r2.id, input = "\n" })
    assert.is_true(done(m, r2.id))
    assert.equal("x\n", h.ok(m, "getBackgroundProcess", { processId = r2.id }).output, "kept in memory")
    m:shutdown()
    local m2 = engine()
    assert.equal("completed", m2:record(r2.id).status)
    assert.equal(g.output, h.ok(m2, "getBackgroundProcess", { processId = r.id }).output)
  end)

  it("saves again what it could not while the database failed", function()
    local m = engine()
    local put = m.history.db.put
    m.history.db.put = function() return nil, "database or disk is full" end
    local r = start(m, { command = "echo during" })
    assert.is_true(done(m, r.id))
    assert.matches("disk is full", m:store_failure())
    m.history.db.put = put
    assert.is_true(m:run_until(function() return m:store_failure() == nil end, 5000), "saved again within a second")
    m:shutdown()
    local m2 = engine()
    assert.equal("completed", m2:record(r.id).status)
  end)

  it("keeps an output directory failure in its status, and counts only finished output for maxDiskBytes", function()
    os.execute(("mkdir -p %s/state/bgproc && touch %s/state/bgproc/output"):format(dir, dir))
    local m = engine()
    assert.matches("output", m:store_failure())
    local r = start(m, { command = "echo x" })
    assert.is_true(done(m, r.id))
    assert.matches("output", m:store_failure(), "a record's save does not hide it")
    assert.matches("history is not being saved", start(m, { argv = { "true" } }).warning)
    m:shutdown()
    os.execute(("rm -f %s/state/bgproc/output"):format(dir))
    -- a running job's big file is not a finished job's: retention leaves the finished ones
    local m2 = engine { retention = { maxDiskBytes = 100000 } }
    local small = start(m2, { command = "echo small" })
    assert.is_true(settled(m2, small.id))
    local big = start(m2, { command = "head -c 300000 /dev/zero; read x", stdin = "pipe", outputBytes = 1 << 20 })
    assert.is_true(m2:run_until(function()
      return (m2.jobs[big.id].disk or { size = 0 }).size >= 300000
    end, 10000), "the running job flushed")
    local other = start(m2, { command = "echo other" })
    assert.is_true(settled(m2, other.id))
    assert.is_not_nil(m2:record(small.id), "finished output is far under maxDiskBytes")
  end)

  it("keeps a record of an earlier run whole: its notes, a row it cannot read", function()
    local m = engine()
    local r = start(m, { command = "echo n" })
    assert.is_true(done(m, r.id))
    assert.is_true(m:note(r.id, "first", 1))
    local r2 = start(m, { command = "echo bad" })
    assert.is_true(done(m, r2.id))
    m:shutdown()
    assert.is_true(h.sh(("sqlite3 %s \"update jobs set data = '{\\\"id\\\":' where id = '%s'\""):format(db_path(), r2.id)))
    local m2 = engine()
    assert.is_true(m2:note(r.id, "second", 2))
    assert.same({ first = 1, second = 2 }, m2:record(r.id).notes)
    local list = h.ok(m2, "listBackgroundProcesses", {})
    assert.equal(2, list.count, "a row it cannot read is listed all the same")
    assert.equal("its stored record could not be read", m2:record(r2.id).error)
  end)

  it("reruns a command that is not UTF-8 byte for byte", function()
    local m = engine()
    local r = start(m, { argv = { "printf", "%s", "caf\xe9" }, name = "latin1" })
    assert.is_true(done(m, r.id))
    m:shutdown()
    local m2 = engine()
    local rr = start(m2, { rerun = "latin1" })
    assert.is_true(done(m2, rr.id))
    assert.equal("caf\xe9", (h.ok(m2, "getBackgroundProcess", { processId = rr.id, stripAnsi = false }).output
      :gsub("\xef\xbf\xbd", "\xe9")), "the job printed its byte (shown as U+FFFD in the JSON-safe output)")
    assert.same({ "printf", "%s", "caf\xe9" }, m2:spec_of(m2.jobs[rr.id]).argv)
  end)

  it("says so when its database is deleted under it", function()
    local m = engine()
    assert.is_nil(m:store_failure())
    os.remove(db_path())
    assert.is_true(m:run_until(function() return m:store_failure() ~= nil end, 5000), "seen within a second")
    assert.matches("deleted or replaced", m:store_failure())
    local r = start(m, { command = "echo still" })
    assert.matches("deleted or replaced", r.warning)
    assert.is_true(done(m, r.id))
    assert.equal("still\n", h.ok(m, "getBackgroundProcess", { processId = r.id }).output)
  end)

  it("runs on in memory when the database is corrupt, and leaves the file alone", function()
    os.execute(("mkdir -p %s/state/bgproc && printf 'garbage, not sqlite' > %s"):format(dir, db_path()))
    local m = engine()
    assert.is_string(m:store_failure())
    local r = start(m, { command = "echo fine" })
    assert.is_true(done(m, r.id))
    assert.equal("fine\n", h.ok(m, "getBackgroundProcess", { processId = r.id }).output)
    assert.equal("garbage, not sqlite", h.read_file(db_path()))
  end)
end)
