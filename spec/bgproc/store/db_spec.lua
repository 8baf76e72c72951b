-- bgproc.store.db: the job records' SQLite database, on real files in a
-- temporary directory. The fault cases use what really fails as root
-- (which ignores permission bits): a parent that is a regular file, an
-- immutable directory or file (chattr +i), a read-only or full tmpfs
-- (mount), a database another program holds locked. Where chattr or mount
-- is not available, those cases are pending.
local h = require "helpers"
local db = require "bgproc.store.db"
local uv = require "luv"

local tmp
local opened = {}
local cases = 0

-- A fresh path for one case: <tmp>/<n>/bgproc/jobs.db (nothing created).
local function fresh(name)
  cases = cases + 1
  return ("%s/%d/%s"):format(tmp, cases, name or "bgproc/jobs.db")
end

-- db.open that must succeed; closed after the case.
local function open(path)
  local handle, err = db.open(path)
  assert(handle, err)
  opened[#opened + 1] = handle
  return handle
end

local function mode(path)
  local st = uv.fs_stat(path)
  return st and ("%o"):format(st.mode & tonumber("7777", 8))
end

local function row(id, seq, extra)
  local r = { id = id, seq = seq, status = "running", out_bytes = 0, data = '{"id":"' .. id .. '"}',
              name = "", tags = "", global = false, out_start = 0 }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

local function ids(rows)
  local out = {}
  for i, r in ipairs(rows) do out[i] = r.id end
  return out
end

local function sq(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- A child lua5.4 running code with DB=path; returns ok, its output.
local function child(code, path, prefix)
  local env = h.lua_env()
  return h.sh(("%sLUA_PATH_5_4=%s LUA_CPATH_5_4=%s DB=%s %s -e %s"):format(prefix or "",
    sq(env.LUA_PATH_5_4), sq(env.LUA_CPATH_5_4), sq(path), h.lua, sq(code)))
end

local OPEN_IN_CHILD = [[
local db = require "bgproc.store.db"
local handle, err = db.open(os.getenv("DB"))
if not handle then print(err) os.exit(1) end
handle:close()
print("opened")
]]

local function sqlite3(path, sql)
  return h.sh(("sqlite3 %s %s"):format(sq(path), sq(sql)))
end

local function can_chattr()
  local probe = tmp .. "/chattr-probe"
  h.write_file(probe, "")
  local ok = h.sh("chattr +i " .. sq(probe))
  if ok then h.sh("chattr -i " .. sq(probe)) end
  os.remove(probe)
  return ok
end

-- A tmpfs mounted at dir (opts: mount's -o), or nil when mounting is not allowed.
local function tmpfs(dir, opts)
  assert(os.execute("mkdir -p " .. sq(dir)))
  return h.sh(("mount -t tmpfs -o %s tmpfs %s"):format(opts, sq(dir)))
end

describe("bgproc.store.db", function()
  setup(function()
    tmp = h.tmpdir()
  end)

  after_each(function()
    for i = #opened, 1, -1 do
      opened[i]:close()
      opened[i] = nil
    end
  end)

  teardown(function()
    h.sh("chattr -R -i " .. sq(tmp))
    os.execute("rm -rf " .. sq(tmp))
  end)

  describe("rows", function()
    it("round-trip exactly, odd strings included", function()
      local bytes = {}
      for b = 1, 255 do bytes[#bytes + 1] = string.char(b) end
      local odd = {
        row("quote'd", 1, { data = "it's ''doubled'' and \"double\" \\ back\\slash" }),
        row("lines", 2, { data = "a\nb\r\nc\t');\nDROP TABLE jobs; --", session = "s'1" }),
        row("bytes", 3, { data = table.concat(bytes), status = "\xff\xfe" }),
        row("not-utf8", 4, { data = "\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\x28\x80\xbf" }),
        row("long", 5, { data = ("{\"x\":\"" .. ("é'\n"):rep(200000) .. "\"}") }),
        row("empty", 6, { data = "" }),
        row("numbers", 7, { ended_ms = 2 ^ 53 | 0, out_bytes = math.maxinteger, session = "" }),
        row("negative", -8, { ended_ms = -1, out_bytes = 0 }),
        row("found-by", 9, { name = "it's a\nname", tags = "a\nb:c", global = true, out_start = 1 << 40 }),
      }
      local path = fresh()
      local handle = open(path)
      for _, r in ipairs(odd) do assert.is_true(handle:put(r)) end
      local sorted = { odd[8] }
      for i = 1, 7 do sorted[#sorted + 1] = odd[i] end
      sorted[#sorted + 1] = odd[9]
      assert.same(sorted, handle:load())
      handle:close()
      assert.same(sorted, open(path):load())
    end)

    it("come one at a time to a function, in seq order, without a list", function()
      local handle = open(fresh())
      for _, r in ipairs { row("a", 30), row("b", 10) } do handle:put(r) end
      local seen = {}
      assert.is_true(handle:load(function(r) seen[#seen + 1] = r.id end))
      assert.same({ "b", "a" }, seen)
    end)

    it("come back ordered by seq, not by id or by when they were put", function()
      local handle = open(fresh())
      for _, r in ipairs { row("a", 30), row("b", 10), row("c", 20), row("d", 5) } do handle:put(r) end
      assert.same({ "d", "b", "c", "a" }, ids(handle:load()))
    end)

    it("put replaces the row with the same id, every column", function()
      local handle = open(fresh())
      handle:put(row("a", 1, { session = "s1", ended_ms = 5, out_bytes = 10 }))
      handle:put(row("b", 2))
      local again = { id = "a", seq = 3, status = "exited", out_bytes = 99, data = "{}", name = "n", tags = "t",
                      global = true, out_start = 7 }
      assert.is_true(handle:put(again))
      local rows = handle:load()
      assert.equal(2, #rows)
      again.session, again.ended_ms = nil, nil
      assert.same(again, rows[2])
      assert.equal(2, handle:stats().records)
    end)

    it("delete removes one, delete_many several in one go (missing ids are no error)", function()
      local handle = open(fresh())
      local all = {}
      for i = 1, 1200 do
        handle:put(row("job-" .. i, i))
        all[#all + 1] = "job-" .. i
      end
      assert.is_true(handle:delete("job-1"))
      assert.is_true(handle:delete("nope"))
      assert.equal(1199, handle:stats().records)
      assert.is_true(handle:delete_many {})
      assert.is_true(handle:delete_many { "job-2", "job-3", "nope" })
      assert.equal(1197, handle:stats().records)
      assert.is_true(handle:delete_many(all)) -- more than one statement's worth
      assert.same({}, handle:load())
    end)

    it("a wrong row is misuse: it raises", function()
      local handle = open(fresh())
      assert.has_error(function() handle:put(row("a", "1")) end)
      assert.has_error(function() handle:put(row("a", 1.5)) end)
      assert.has_error(function() handle:put(row("a", 1, { data = "a\0b" })) end)
      assert.has_error(function() handle:put(row("a", 1, { session = 5 })) end)
      assert.has_error(function() handle:put { id = "a", seq = 1, status = "x" } end)
      assert.has_error(function() handle:delete_many("a") end)
      assert.same({}, handle:load())
    end)
  end)

  it("meta keeps small strings; an unknown key is nil without a message", function()
    local path = fresh()
    local handle = open(path)
    local v, err = handle:meta("next_id")
    assert.is_nil(v)
    assert.is_nil(err)
    assert.is_true(handle:set_meta("next_id", 41))
    assert.is_true(handle:set_meta("next_id", 42))
    assert.is_true(handle:set_meta("it's", "a\nb'c"))
    assert.equal("42", handle:meta("next_id"))
    handle:close()
    handle = open(path)
    assert.equal("42", handle:meta("next_id"))
    assert.equal("a\nb'c", handle:meta("it's"))
  end)

  describe("batch", function()
    it("commits everything at the end", function()
      local handle = open(fresh())
      assert.is_true(handle:batch(function()
        handle:put(row("a", 1))
        handle:put(row("b", 2))
        handle:set_meta("k", "v")
        assert.is_true(handle:batch(function() handle:put(row("c", 3)) end)) -- nested: the same transaction
        handle:delete_many { "b" }
      end))
      assert.same({ "a", "c" }, ids(handle:load()))
      assert.equal("v", handle:meta("k"))
    end)

    it("rolls everything back when fn raises, and raises again", function()
      local handle = open(fresh())
      handle:put(row("a", 1))
      assert.has_error(function()
        handle:batch(function()
          handle:put(row("b", 2))
          handle:delete("a")
          error("boom")
        end)
      end, "boom")
      assert.same({ "a" }, ids(handle:load()))
      assert.is_true(handle:put(row("c", 3))) -- no transaction left open
      assert.is_true(handle:batch(function() handle:put(row("d", 4)) end))
      assert.same({ "a", "c", "d" }, ids(handle:load()))
    end)
  end)

  it("keeps everything across close and reopen; close is idempotent; a closed handle raises", function()
    local path = fresh()
    local handle = open(path)
    handle:put(row("a", 1))
    handle:set_meta("k", "v")
    assert.is_true(handle:close())
    assert.is_true(handle:close())
    assert.has_error(function() handle:load() end)
    assert.has_error(function() handle:put(row("b", 2)) end)
    handle = open(path)
    assert.same({ "a" }, ids(handle:load()))
    assert.equal("v", handle:meta("k"))
  end)

  it("a collected handle releases the database", function()
    local path = fresh()
    assert(db.open(path))
    collectgarbage()
    collectgarbage()
    open(path)
  end)

  it("uses WAL, and keeps SQLite's locks while open (the sqlite3 CLI is locked out)", function()
    local path = fresh()
    local handle = open(path)
    handle:put(row("a", 1))
    local ok, out = sqlite3(path, "SELECT count(*) FROM jobs")
    assert.is_falsy(ok)
    assert.matches("locked", out)
    handle:close()
    ok, out = sqlite3(path, "PRAGMA journal_mode; PRAGMA user_version; SELECT count(*) FROM jobs;")
    assert.is_true(ok, out)
    assert.equal("wal\n" .. db.VERSION .. "\n1\n", out)
  end)

  it("stats: the path, the number of records, the size of the database and its WAL", function()
    local path = fresh()
    local handle = open(path)
    for i = 1, 20 do handle:put(row("job-" .. i, i, { data = ("x"):rep(1000) })) end
    local s = handle:stats()
    assert.equal(path, s.path)
    assert.equal(20, s.records)
    assert.equal(uv.fs_stat(path).size + uv.fs_stat(path .. "-wal").size, s.bytes)
    assert.is_true(s.bytes > 20000)
  end)

  it(":memory: takes no lock and leaves no file", function()
    local a, b = open(":memory:"), open(":memory:")
    a:put(row("a", 1))
    assert.same({ "a" }, ids(a:load()))
    assert.same({}, b:load())
    assert.equal(1, a:stats().records)
    assert.is_nil(uv.fs_stat(":memory:.lock"))
    assert.is_nil(uv.fs_stat(":memory:"))
  end)

  describe("permissions", function()
    it("creates the directory 0700 and the files 0600, even under umask 000", function()
      local path = fresh()
      local ok, out = child(OPEN_IN_CHILD .. [[
        local handle = assert(db.open(os.getenv("DB")))
        assert(handle:put { id = "a", seq = 1, status = "x", data = "{}" })
        local uv = require "luv"
        for _, p in ipairs { "", "-wal", ".lock" } do
          print(p, ("%o"):format(uv.fs_stat(os.getenv("DB") .. p).mode & 511))
        end
      ]], path, "umask 000; ")
      assert.is_true(ok, out)
      assert.equal("opened\n\t600\n-wal\t600\n.lock\t600\n", out)
      assert.equal("700", mode(path:match("^(.*)/")))
      assert.equal("700", mode(path:match("^(.*)/.*/")))
      assert.equal("600", mode(path))
    end)

    it("makes an existing bgproc directory and database private, and leaves another directory as it is", function()
      local path = fresh()
      local dir = path:match("^(.*)/")
      assert(os.execute(("mkdir -p %s && chmod 755 %s && touch %s && chmod 644 %s"):format(sq(dir), sq(dir), sq(path), sq(path))))
      open(path):close()
      assert.equal("700", mode(dir))
      assert.equal("600", mode(path))

      local other = fresh("shared/jobs.db")
      local odir = other:match("^(.*)/")
      assert(os.execute(("mkdir -p %s && chmod 755 %s"):format(sq(odir), sq(odir))))
      open(other)
      assert.equal("755", mode(odir))
      assert.equal("600", mode(other))
    end)
  end)

  describe("one bgproc per database", function()
    it("a second open in this process fails: in use", function()
      local path = fresh()
      open(path)
      local again, err = db.open(path)
      assert.is_nil(again)
      assert.equal(("database %s is in use by this process (pid %d)"):format(path, h.self_pid()), err)
    end)

    it("another process fails while we hold it, and opens it once we closed it", function()
      local path = fresh()
      local handle = open(path)
      local ok, out = child(OPEN_IN_CHILD, path)
      assert.is_falsy(ok)
      assert.equal(("database %s is in use by another bgproc (pid %d)\n"):format(path, h.self_pid()), out)
      handle:close()
      ok, out = child(OPEN_IN_CHILD, path)
      assert.is_true(ok, out)
      assert.equal("opened\n", out)
    end)

    it("a database another program holds locked fails to open, and is not changed", function()
      local path = fresh()
      open(path):close()
      local ready = path .. ".ready"
      -- another program (not bgproc: no flock) in a write transaction until its stdin closes
      local env = h.lua_env()
      local holder = assert(io.popen(("LUA_PATH_5_4=%s LUA_CPATH_5_4=%s %s -e %s"):format(sq(env.LUA_PATH_5_4),
        sq(env.LUA_CPATH_5_4), h.lua, sq(([[
        local conn = assert(require("luasql.sqlite3").sqlite3():connect(%q))
        assert(conn:execute("BEGIN IMMEDIATE"))
        assert(conn:execute("INSERT INTO meta VALUES('holder', 'x')"))
        io.open(%q, "w"):close()
        io.read("a")
        conn:execute("ROLLBACK")
        conn:close()
      ]]):format(path, ready))), "w"))
      local released = false
      finally(function()
        if not released then holder:close() end
      end)
      assert.truthy(h.wait_until(function() return uv.fs_stat(ready) end, 5000))
      local handle, err = db.open(path)
      assert.is_nil(handle)
      assert.equal(("database %s is locked by another program (database is locked)"):format(path), err)
      holder:close()
      released = true
      assert.is_nil(open(path):meta("holder"))
    end)
  end)

  describe("a file that is not ours to change", function()
    it("a corrupt file fails with a clear message and is left untouched", function()
      for _, garbage in ipairs { "garbage", ("not a database\n"):rep(1000), "SQLite format 3\0" .. ("\xff"):rep(5000) } do
        local path = fresh()
        assert(os.execute("mkdir -p " .. sq(path:match("^(.*)/"))))
        h.write_file(path, garbage)
        local handle, err = db.open(path)
        assert.is_nil(handle)
        assert.matches("database " .. path:gsub("%p", "%%%0") .. " is not a SQLite database", err)
        assert.equal(garbage, h.read_file(path))
        assert.is_nil(uv.fs_stat(path .. "-wal"))
        assert.is_nil(uv.fs_stat(path .. "-shm"))
      end
    end)

    it("a database from a newer bgproc is refused and left untouched", function()
      local path = fresh()
      open(path):close()
      local ok, out = sqlite3(path, "PRAGMA journal_mode = DELETE; PRAGMA user_version = 999;")
      assert.is_true(ok, out)
      local before = h.read_file(path)
      local handle, err = db.open(path)
      assert.is_nil(handle)
      assert.equal(("database %s has schema version 999, newer than this bgproc knows (%d): "
        .. "use a newer bgproc; the file is left as it is"):format(path, db.VERSION), err)
      assert.equal(before, h.read_file(path))
      ok, out = sqlite3(path, "PRAGMA journal_mode; PRAGMA user_version;")
      assert.equal("delete\n999\n", out)
    end)

    it("an empty file (version 0) is migrated to the current version", function()
      local path = fresh()
      assert(os.execute("mkdir -p " .. sq(path:match("^(.*)/"))))
      h.write_file(path, "")
      local handle = open(path)
      assert.is_true(handle:put(row("a", 1)))
      handle:close()
      local ok, out = sqlite3(path, "PRAGMA user_version; SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name;")
      assert.is_true(ok, out)
      assert.equal(db.VERSION .. "\njobs\nmeta\n", out)
      assert.equal("600", mode(path))
    end)
  end)

  describe("a place we cannot write (as root too)", function()
    it("a parent that is a regular file fails, saying where", function()
      local file = fresh("file")
      assert(os.execute("mkdir -p " .. sq(file:match("^(.*)/"))))
      h.write_file(file, "x")
      local path = file .. "/bgproc/jobs.db"
      local handle, err = db.open(path)
      assert.is_nil(handle)
      assert.matches("database " .. path:gsub("%p", "%%%0") .. ": cannot create its directory: .*not a directory", err)
      assert.equal("x", h.read_file(file))
    end)

    it("an immutable directory (chattr +i) fails, for a new database and for an existing one", function()
      if not can_chattr() then
        pending("chattr +i does not work here")
        return
      end
      local path = fresh()
      local dir = path:match("^(.*)/")
      assert(os.execute(("mkdir -p %s && chmod 700 %s"):format(sq(dir), sq(dir))))
      finally(function() h.sh("chattr -i " .. sq(dir)) end)
      assert(h.sh("chattr +i " .. sq(dir)))
      local handle, err = db.open(path)
      assert.is_nil(handle)
      assert.matches("cannot take its lock: EPERM", err)

      assert(h.sh("chattr -i " .. sq(dir)))
      open(path):close()
      assert(h.sh("chattr +i " .. sq(dir)))
      handle, err = db.open(path) -- its WAL cannot be created
      assert.is_nil(handle)
      assert.matches("database " .. path:gsub("%p", "%%%0") .. " cannot be read: unable to open", err)
    end)

    it("a read-only file system fails", function()
      local dir = fresh("ro")
      if not tmpfs(dir, "size=1m") then
        pending("mount -t tmpfs is not allowed here")
        return
      end
      finally(function() h.sh("umount " .. sq(dir)) end)
      open(dir .. "/jobs.db"):close()
      assert(h.sh("mount -o remount,ro " .. sq(dir)))
      local handle, err = db.open(dir .. "/jobs.db")
      assert.is_nil(handle)
      assert.matches("EROFS", err)
    end)
  end)

  describe("a failure after open returns nil, msg, sets failure, and leaves no transaction open", function()
    it("a full disk (a small tmpfs)", function()
      local dir = fresh("small")
      if not tmpfs(dir, "size=256k") then
        pending("mount -t tmpfs is not allowed here")
        return
      end
      local handle
      finally(function()
        if handle then handle:close() end
        h.sh("umount " .. sq(dir))
      end)
      handle = assert(db.open(dir .. "/jobs.db"))
      assert.is_true(handle:put(row("a", 1)))
      h.sh("dd if=/dev/zero of=" .. sq(dir .. "/filler") .. " bs=4k")

      local ok, err = handle:put(row("b", 2, { data = ("x"):rep(5000) }))
      assert.is_nil(ok)
      assert.matches("put b failed: database or disk is full", err)
      assert.equal(err, handle.failure)
      ok, err = handle:batch(function()
        handle:put(row("c", 3, { data = ("y"):rep(3000) }))
        handle:put(row("d", 4))
      end)
      assert.is_nil(ok)
      assert.matches("full", err)
      assert.equal(err, handle.failure)

      os.remove(dir .. "/filler")
      assert.is_true(handle:put(row("b", 2, { data = ("x"):rep(5000) })))
      assert.is_nil(handle.failure)
      assert.same({ "a", "b" }, ids(handle:load())) -- the failed batch left nothing
    end)

    it("the database and its WAL made immutable under the connection (chattr +i)", function()
      if not can_chattr() then
        pending("chattr +i does not work here")
        return
      end
      local path = fresh()
      local handle = open(path)
      handle:put(row("a", 1))
      local files = sq(path) .. " " .. sq(path .. "-wal")
      finally(function() h.sh("chattr -i " .. files) end)
      assert(h.sh("chattr +i " .. files))

      local ok, err = handle:put(row("b", 2))
      assert.is_nil(ok)
      assert.equal(("database %s: put b failed: disk I/O error"):format(path), err)
      assert.equal(err, handle.failure)
      ok, err = handle:delete_many { "a" }
      assert.is_nil(ok)
      assert.matches("disk I/O error", err)
      assert.same({ "a" }, ids(handle:load()))
      assert.is_nil(handle.failure) -- a success clears it

      assert(h.sh("chattr -i " .. files))
      assert.is_true(handle:put(row("b", 2)))
      assert.same({ "a", "b" }, ids(handle:load()))
    end)
  end)
end)
