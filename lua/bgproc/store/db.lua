-- The job records' SQLite database: the daemon journals every job's state
-- change here, so history survives a restart.
--
--   local h, err = db.open(path)  -- a file's path, or ":memory:"
--   h:put(row [, fresh])  -> true          insert or replace one job (fresh: a new id, insert)
--   h:delete(id)          -> true          (true also when there was none)
--   h:delete_many(ids)    -> true          all in one transaction
--   h:load([each])        -> rows          every row, ordered by seq (each(row): one at a time)
--   h:meta(key)           -> value | nil   nil alone: no such key
--   h:set_meta(key, v)    -> true          v a string or an integer
--   h:batch(fn)           -> true          fn() in one transaction
--   h:stats()             -> { path, records, bytes = db + wal file size }
--   h:close()             -> true          idempotent; also on collection
--   h:gone()              -> boolean       the file at the path is not the one open any more
--   h.path, h.failure     the last failure's message (nil after a success)
--   db.VERSION            the schema version this code writes
--
-- A row is { id = string, seq = integer, status = string, session =
-- string|nil, ended_ms = integer|nil, out_bytes = integer (nil: 0), data =
-- string, name = string, tags = string, global = boolean, out_start =
-- integer } (data is JSON text; every string may hold any bytes but NUL;
-- name, tags, global and the out_ fields are what a record is found and
-- read by before its data is decoded, see engine/history.lua).
-- A wrong row, or a closed handle, is misuse: it raises. An operational
-- failure (disk full, I/O error, the database locked by another program)
-- returns nil, msg, sets h.failure and leaves no transaction open.
--
-- A batch is all or nothing: when a statement in it fails, it returns nil,
-- msg and everything done in it is rolled back; when fn raises, the batch
-- is rolled back and the error raised again.
--
-- Durability: WAL with synchronous=NORMAL. A commit is in the WAL when the
-- call returns, so a crash of the process loses nothing committed; a
-- power loss or an OS crash may lose the last commits, never corrupts.
--
-- One process per database: open takes an exclusive flock on PATH.lock and
-- writes its pid there, for the message a second opener gets. SQLite's
-- own locks are then taken once and kept (locking_mode=EXCLUSIVE): it
-- saves the lock calls every commit made (a third of a put's time) and the
-- -shm file; the price is that the sqlite3 CLI cannot read the file while
-- bgproc has it open (it says "database is locked"). The parent
-- directory is created 0700; the database and its -wal and -shm are 0600.
-- A file that is not a SQLite database, or one of a newer schema, is
-- refused and left as it is.
local uv = require "luv"
local dbfiles = require "bgproc.store.dbfiles"

local db = {}

-- Ordered: migration n takes a database from version n-1 to n. Each entry
-- is a list of statements (LuaSQL runs one per call).
local MIGRATIONS = {
  { -- 1: the tables
    [[CREATE TABLE jobs (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, status TEXT NOT NULL, session TEXT,
        ended_ms INTEGER, out_bytes INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '', tags TEXT NOT NULL DEFAULT '', global INTEGER NOT NULL DEFAULT 0,
        out_start INTEGER NOT NULL DEFAULT 0)]],
    "CREATE INDEX jobs_by_seq ON jobs(seq)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
  },
}

db.VERSION = #MIGRATIONS

-- Only a program other than bgproc can hold SQLite's lock when we open
-- (ours keeps out other bgprocs), and the daemon's loop waits: keep it short.
local BUSY_TIMEOUT_MS = 100
local DELETE_CHUNK = 500
local COLUMNS = "id, seq, status, session, ended_ms, out_bytes, data, name, tags, global, out_start"

-- SQL text: LuaSQL binds no parameters, so strings are quoted here.

-- 'text' with quotes doubled: any bytes but NUL (checked by the callers).
local function quote(s)
  if not s:find("'", 1, true) then return "'" .. s .. "'" end
  return "'" .. s:gsub("'", "''") .. "'"
end

local function check_text(v, what)
  if type(v) ~= "string" then error(what .. " must be a string, got " .. type(v), 3) end
  if v:find("\0", 1, true) then error(what .. " must not contain NUL", 3) end
  return v
end

local function check_int(v, what)
  local n = math.type(v) == "integer" and v or (type(v) == "number" and math.tointeger(v))
  if not n then error(what .. " must be an integer, got " .. tostring(v), 3) end
  return n
end

local function opt_text(v, what) return v == nil and "NULL" or quote(check_text(v, what)) end
local function opt_int(v, what) return v == nil and "NULL" or check_int(v, what) end

-- LuaSQL's message without its "LuaSQL: " prefix.
local function bare(err)
  return (tostring(err):gsub("^LuaSQL: ", ""))
end

-- The handle's bookkeeping: every method ends in succeed or fail.

local function fail(h, msg)
  h.failure = msg
  return nil, msg
end

local function succeed(h, value)
  h.failure = nil
  return value
end

local function where(h, what, err)
  return ("database %s: %s failed: %s"):format(h.path, what, bare(err))
end

-- Ends whatever transaction SQLite may still have open after a failure
-- (with no transaction open, SQLite's complaint is expected and ignored).
local function rollback(h)
  if h._conn then h._conn:execute("ROLLBACK") end
end

local function conn_of(h)
  local conn = h._conn
  if not conn then error("database " .. h.path .. " is closed", 3) end
  return conn
end

-- One writing statement: the number of rows it changed, or nil, msg
-- (never raises, never leaves a transaction open outside a batch).
local function write(h, what, sql)
  local conn = conn_of(h)
  if h._batch_failure then return fail(h, h._batch_failure) end
  local n, err = conn:execute(sql)
  if n == nil then
    local msg = where(h, what, err)
    if h._depth > 0 then h._batch_failure = msg else rollback(h) end
    return fail(h, msg)
  end
  return succeed(h, n)
end

-- One statement whose rows, if any, are not wanted (some PRAGMAs answer
-- with one): true, or nil, msg. Every cursor is closed: an open one would
-- keep the connection from closing.
local function exec(conn, sql)
  local res, err = conn:execute(sql)
  if res == nil then return nil, err end
  if type(res) == "userdata" then res:close() end
  return true
end

-- The first column of a query's first row (nil when no row), or nil, msg.
local function value(conn, sql)
  local cur, err = conn:execute(sql)
  if not cur then return nil, err end
  if type(cur) ~= "userdata" then return nil end
  local v, ferr = cur:fetch()
  cur:close()
  if v == nil and ferr then return nil, ferr end
  return v
end

-- fn(...) inside BEGIN IMMEDIATE ... COMMIT; inside a batch, fn runs in
-- the batch's transaction.
local function transaction(h, fn, ...)
  local conn = conn_of(h)
  if h._depth > 0 then
    fn(...)
    if h._batch_failure then return nil, h._batch_failure end
    return true
  end
  local ok, err = conn:execute("BEGIN IMMEDIATE")
  if not ok then
    rollback(h)
    return fail(h, where(h, "begin", err))
  end
  h._depth, h._batch_failure = 1, nil
  local done, raised = pcall(fn, ...)
  local failed = h._batch_failure
  h._depth, h._batch_failure = 0, nil
  if not done then
    rollback(h)
    error(raised, 0)
  end
  if failed then
    rollback(h)
    return fail(h, failed)
  end
  ok, err = conn:execute("COMMIT")
  if not ok then
    rollback(h)
    return fail(h, where(h, "commit", err))
  end
  return succeed(h, true)
end

local Handle = {}
Handle.__index = Handle

-- An UPDATE first, an INSERT only for a new id: most puts are a known
-- job's state change, and an UPDATE rewrites one page where INSERT OR
-- REPLACE deletes and re-inserts (three times slower). We are the only
-- writer (the lock), so nothing comes between the two. fresh: the caller
-- knows the id is new (a job just created): the INSERT at once.
function Handle:put(row, fresh)
  if type(row) ~= "table" then error("put: row must be a table", 2) end
  local id = quote(check_text(row.id, "row.id"))
  local seq = check_int(row.seq, "row.seq")
  local status = quote(check_text(row.status, "row.status"))
  local session = opt_text(row.session, "row.session")
  local ended_ms = opt_int(row.ended_ms, "row.ended_ms")
  local out_bytes = row.out_bytes == nil and 0 or check_int(row.out_bytes, "row.out_bytes")
  local data = quote(check_text(row.data, "row.data"))
  local name = quote(check_text(row.name or "", "row.name"))
  local tags = quote(check_text(row.tags or "", "row.tags"))
  local global = row.global and 1 or 0
  local out_start = row.out_start == nil and 0 or check_int(row.out_start, "row.out_start")
  local what = "put " .. row.id
  local n, err = 0, nil
  if not fresh then
    n, err = write(self, what, "UPDATE jobs SET seq=" .. seq .. ",status=" .. status .. ",session=" .. session
      .. ",ended_ms=" .. ended_ms .. ",out_bytes=" .. out_bytes .. ",data=" .. data .. ",name=" .. name
      .. ",tags=" .. tags .. ",global=" .. global .. ",out_start=" .. out_start .. " WHERE id=" .. id)
    if n == nil then return nil, err end
    if n > 0 then return true end
  end
  n, err = write(self, what, "INSERT INTO jobs(" .. COLUMNS .. ") VALUES(" .. id .. "," .. seq .. "," .. status
    .. "," .. session .. "," .. ended_ms .. "," .. out_bytes .. "," .. data .. "," .. name .. "," .. tags .. ","
    .. global .. "," .. out_start .. ")")
  return n and true, err
end

function Handle:delete(id)
  local n, err = write(self, "delete " .. tostring(id), "DELETE FROM jobs WHERE id = " .. quote(check_text(id, "id")))
  return n and true, err
end

local function delete_chunks(h, quoted)
  for first = 1, #quoted, DELETE_CHUNK do
    local list = table.concat(quoted, ",", first, math.min(first + DELETE_CHUNK - 1, #quoted))
    if not write(h, "delete_many", "DELETE FROM jobs WHERE id IN (" .. list .. ")") then return end
  end
end

function Handle:delete_many(ids)
  if type(ids) ~= "table" then error("delete_many: ids must be a list", 2) end
  local quoted = {}
  for i, id in ipairs(ids) do quoted[i] = quote(check_text(id, "ids[" .. i .. "]")) end
  if #quoted == 0 then
    conn_of(self)
    return succeed(self, true)
  end
  return transaction(self, delete_chunks, self, quoted)
end

-- Every row, in seq order: a list, or (each) each(row) called per row
-- as it is read, so no list of them all is ever held. Returns the list
-- (or true), or nil and a message.
function Handle:load(each)
  local conn = conn_of(self)
  local cur, err = conn:execute("SELECT " .. COLUMNS .. " FROM jobs ORDER BY seq")
  if not cur then return fail(self, where(self, "load", err)) end
  local rows, n = {}, 0
  while true do
    local id, seq, status, session, ended_ms, out_bytes, data, name, tags, global, out_start = cur:fetch()
    if id == nil then
      -- the end (the cursor closes itself), or nil, msg in seq's place
      if seq ~= nil then return fail(self, where(self, "load", seq)) end
      break
    end
    local row = { id = id, seq = seq, status = status, session = session, ended_ms = ended_ms,
                  out_bytes = out_bytes, data = data, name = name, tags = tags, global = global == 1,
                  out_start = out_start }
    if each then
      each(row)
    else
      n = n + 1
      rows[n] = row
    end
  end
  return succeed(self, each and true or rows)
end

function Handle:meta(key)
  local conn = conn_of(self)
  local v, err = value(conn, "SELECT value FROM meta WHERE key = " .. quote(check_text(key, "key")))
  if v == nil and err then return fail(self, where(self, "meta " .. key, err)) end
  return succeed(self, v)
end

function Handle:set_meta(key, v)
  if math.type(v) == "integer" then v = tostring(v) end
  local sql = "INSERT OR REPLACE INTO meta(key, value) VALUES(" .. quote(check_text(key, "key")) .. ","
    .. quote(check_text(v, "value")) .. ")"
  local n, err = write(self, "set_meta " .. key, sql)
  return n and true, err
end

function Handle:batch(fn)
  if type(fn) ~= "function" then error("batch: fn must be a function", 2) end
  return transaction(self, fn)
end

local function file_size(path) return (uv.fs_stat(path) or { size = 0 }).size end

function Handle:stats()
  local conn = conn_of(self)
  local records, err = value(conn, "SELECT count(*) FROM jobs")
  if not records then return fail(self, where(self, "stats", err)) end
  local bytes
  if self.path == ":memory:" then
    bytes = (value(conn, "PRAGMA page_count") or 0) * (value(conn, "PRAGMA page_size") or 0)
  else
    bytes = file_size(self.path) + file_size(self.path .. "-wal")
  end
  return succeed(self, { path = self.path, records = records, bytes = bytes })
end

function Handle:close()
  local conn, env, lock = self._conn, self._env, self._lock
  self._conn, self._env, self._lock = nil, nil, nil
  if conn then conn:close() end
  if env then env:close() end
  if lock then lock:close() end -- after the connection: no other bgproc may open it before
  return true
end

Handle.__gc = Handle.close

local function migrate(h, from)
  local conn = h._conn
  local ok, err = conn:execute("BEGIN IMMEDIATE")
  if not ok then return nil, where(h, "open for writing", err) end
  for v = from + 1, db.VERSION do
    for _, sql in ipairs(MIGRATIONS[v]) do
      ok, err = exec(conn, sql)
      if not ok then break end
    end
    if ok then ok, err = exec(conn, "PRAGMA user_version = " .. v) end
    if not ok then
      rollback(h)
      return nil, where(h, ("migration to schema version %d"):format(v), err)
    end
  end
  ok, err = conn:execute("COMMIT")
  if not ok then
    rollback(h)
    return nil, where(h, "open for writing", err)
  end
  return true
end

-- Settings, then the version check before anything is written: a newer
-- or unreadable database is left exactly as it was.
local function prepare(h)
  local conn = h._conn
  for _, sql in ipairs { "PRAGMA busy_timeout = " .. BUSY_TIMEOUT_MS, "PRAGMA foreign_keys = OFF",
                         "PRAGMA locking_mode = EXCLUSIVE" } do
    local ok, err = exec(conn, sql)
    if not ok then return nil, where(h, sql, err) end
  end
  local version, err = value(conn, "PRAGMA user_version")
  if not version then
    err = bare(err)
    if err:find("not a database", 1, true) then
      return nil, ("database %s is not a SQLite database (%s); left as it is"):format(h.path, err)
    elseif err:find("locked", 1, true) then
      return nil, ("database %s is locked by another program (%s)"):format(h.path, err)
    end
    return nil, ("database %s cannot be read: %s; left as it is"):format(h.path, err)
  end
  if version > db.VERSION then
    return nil, ("database %s has schema version %d, newer than this bgproc knows (%d): "
      .. "use a newer bgproc; the file is left as it is"):format(h.path, version, db.VERSION)
  end
  if h.path ~= ":memory:" then
    local mode, merr = value(conn, "PRAGMA journal_mode = WAL")
    if mode ~= "wal" then
      return nil, ("database %s: cannot use WAL mode: %s"):format(h.path, merr and bare(merr) or tostring(mode))
    end
  end
  local ok, serr = exec(conn, "PRAGMA synchronous = NORMAL")
  if not ok then return nil, where(h, "PRAGMA synchronous", serr) end
  -- a checkpoint (two fsyncs, in the daemon's loop) every 4000 pages, not
  -- 1000: a job's two rows then cost about a fifth less; the WAL is cut
  -- back to 16 MiB after each
  exec(conn, "PRAGMA wal_autocheckpoint = 4000")
  exec(conn, "PRAGMA journal_size_limit = 16777216")
  return migrate(h, version)
end

local function connect(h)
  -- (required here: a host that keeps no history needs no LuaSQL)
  local found, luasql = pcall(require, "luasql.sqlite3")
  if not found then return nil, "LuaSQL's SQLite driver is missing (Debian: apt-get install lua-sql-sqlite3)" end
  h._env = luasql.sqlite3()
  local conn, err = h._env:connect(h.path)
  if not conn then return nil, ("database %s: cannot open it: %s"):format(h.path, bare(err)) end
  h._conn = conn
  h._ino = h.path ~= ":memory:" and (uv.fs_stat(h.path) or {}).ino or nil
  return prepare(h)
end

-- Whether the file at the database's path is no longer the one open
-- (deleted or replaced under us: what is written then is lost).
function Handle:gone()
  if not self._ino then return false end
  local st = uv.fs_stat(self.path)
  return not st or st.ino ~= self._ino
end

function db.open(path)
  if type(path) ~= "string" or path == "" then error("db.open: path must be a non-empty string", 2) end
  local h = setmetatable({ path = path, _depth = 0 }, Handle)
  local ok, err = true, nil
  if path ~= ":memory:" then
    ok, err = dbfiles.claim_dir(path)
    if ok then h._lock, err = dbfiles.take_lock(path) end
    ok = ok and h._lock ~= nil
    if ok then ok, err = dbfiles.check_file(path) end
    if ok then ok, err = dbfiles.private_files(path) end
  end
  if ok then ok, err = connect(h) end
  if ok and path ~= ":memory:" then ok, err = dbfiles.private_files(path) end -- the -wal and -shm SQLite made
  if not ok then
    h:close()
    return nil, err
  end
  return h
end

return db
