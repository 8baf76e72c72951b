-- The database's files, before SQLite opens them: its directory (0700),
-- its lock (one bgproc per database, the holder's pid written in it), the
-- file itself (0600, a SQLite header or nothing) and the -wal and -shm
-- beside it (0600). Each returns true (or the lock), or nil and a message
-- naming the database.
local sys = require "bgproc.sys"
local paths = require "bgproc.lib.paths"
local uv = require "luv"

local dbfiles = {}

local PRIVATE_FILE, PRIVATE_DIR = tonumber("600", 8), tonumber("700", 8)
local HEADER = "SQLite format 3\0"

local function is_ours(st) return st.uid == sys.getuid() end

-- The parent directory, created 0700; bgproc's own (named "bgproc") made
-- 0700 when it is ours. Another directory is the user's to set.
function dbfiles.claim_dir(path)
  local dir = paths.dir(path)
  local ok, err = paths.ensure_dir(dir, PRIVATE_DIR)
  if not ok then return nil, ("database %s: cannot create its directory: %s"):format(path, tostring(err)) end
  local st, serr = uv.fs_stat(dir)
  if not st then return nil, ("database %s: %s"):format(path, serr) end
  if dir:match("([^/]+)/*$") == "bgproc" and is_ours(st) and st.mode & tonumber("777", 8) ~= PRIVATE_DIR then
    ok, err = uv.fs_chmod(dir, PRIVATE_DIR)
    if not ok then return nil, ("database %s: cannot make %s private: %s"):format(path, dir, err) end
  end
  return true
end

-- The pid in a lock file, or nil.
local function read_pid(lock_path)
  local f = io.open(lock_path, "rb")
  if not f then return nil end
  local pid = tonumber((f:read("l") or ""):match("^%s*(%d+)"))
  f:close()
  return pid
end

-- Written in place and then cut, so a reader never sees an empty file. The
-- pid only makes the "in use" message better: the lock holds without it.
local function write_pid(lock_path)
  local fd = uv.fs_open(lock_path, "r+", PRIVATE_FILE)
  if not fd then return end
  local text = ("%d\n"):format(uv.os_getpid())
  if uv.fs_write(fd, text, 0) then uv.fs_ftruncate(fd, #text) end
  uv.fs_close(fd)
end

function dbfiles.take_lock(path)
  local lock_path = path .. ".lock"
  local lock, err, ename = sys.lock(lock_path)
  if lock then
    write_pid(lock_path)
    return lock
  end
  if ename ~= "EAGAIN" and ename ~= "EWOULDBLOCK" then
    return nil, ("database %s: cannot take its lock: %s"):format(path, err)
  end
  local pid = read_pid(lock_path)
  local who = pid == uv.os_getpid() and "this process" or "another bgproc"
  return nil, ("database %s is in use by %s (pid %s)"):format(path, who, pid or "unknown")
end

-- 0600 if ours, and not already.
local function make_private(path)
  local st = uv.fs_stat(path)
  if not st or not is_ours(st) or st.mode & tonumber("777", 8) == PRIVATE_FILE then return true end
  local ok, err = uv.fs_chmod(path, PRIVATE_FILE)
  if not ok then return nil, ("database %s: cannot make %s private: %s"):format(path, path, err) end
  return true
end

-- The file before SQLite sees it: created 0600 when missing (SQLite gives
-- -wal and -shm the database's mode); else a regular file with SQLite's
-- header, which we will not rewrite otherwise.
function dbfiles.check_file(path)
  local st = uv.fs_stat(path)
  if not st then
    local fd, err = uv.fs_open(path, "a", PRIVATE_FILE)
    if not fd then return nil, ("database %s: cannot create it: %s"):format(path, err) end
    uv.fs_close(fd)
    return true
  end
  if st.type ~= "file" then return nil, ("database %s is a %s, not a file"):format(path, st.type) end
  if st.size > 0 then
    local f, err = io.open(path, "rb")
    if not f then return nil, ("database %s: cannot read it: %s"):format(path, err) end
    local head = f:read(#HEADER)
    f:close()
    if head ~= HEADER then
      return nil, ("database %s is not a SQLite database (file is not a database); left as it is"):format(path)
    end
  end
  return true
end

-- The database and the -wal and -shm beside it: 0600.
function dbfiles.private_files(path)
  for _, p in ipairs { path, path .. "-wal", path .. "-shm" } do
    local ok, err = make_private(p)
    if not ok then return nil, err end
  end
  return true
end

-- Version 0 (a new file) to db.VERSION, in one transaction. Run even when
-- current: taking the write lock proves the database writable now rather
-- than at the first put.

return dbfiles
