-- Output files: one per job, in a 0700 directory, each 0600.
--
--   <id>.log   the job's output bytes as they came (both streams), from
--              cursor `start` on (the store's record says where); plain
--              text, so grep and rg read it as it is
--   <id>.err   which of those bytes came from stderr: "from to" lines
--              (cursors, half-open), absent when none did
--
-- Writes go through luv's fs calls so each file is created 0600 whatever
-- the umask. Every function returns true (or a value), or nil and a
-- message naming the file.
local files = require "bgproc.lib.files"
local paths = require "bgproc.lib.paths"
local uv = require "luv"

local outfiles = {}
local Files = {}
Files.__index = Files

local FILE_MODE = tonumber("600", 8)
local DIR_MODE = tonumber("700", 8)

local function fail(path, err)
  return nil, ("%s: %s"):format(path, tostring(err))
end

-- A files object over dir (created 0700 when missing).
function outfiles.new(dir)
  local made, err = paths.ensure_dir(dir, DIR_MODE)
  if not made then return fail(dir, err) end
  local st = uv.fs_stat(dir)
  if not st then return fail(dir, "gone") end
  if st.mode % 512 ~= DIR_MODE then uv.fs_chmod(dir, DIR_MODE) end
  return setmetatable({ dir = dir }, Files)
end

function Files:log_path(id) return self.dir .. "/" .. id .. ".log" end
function Files:err_path(id) return self.dir .. "/" .. id .. ".err" end

-- Write data at byte `at` of path (created when missing; with at == 0
-- whatever was there goes: a file no record owned). Returns the file's
-- size before, or nil and why; on a failure the file is cut back to `at`,
-- so a short write leaves nothing half there.
local function write_at(path, data, at)
  local fd, err = uv.fs_open(path, at == 0 and "w" or "r+", FILE_MODE)
  if not fd and at > 0 and tostring(err):find("^ENOENT") then fd, err = uv.fs_open(path, "w", FILE_MODE) end
  if not fd then return fail(path, err) end
  local off, n = 0, #data
  while off < n do
    local wrote, werr = uv.fs_write(fd, off == 0 and data or data:sub(off + 1), at + off)
    if not wrote then
      uv.fs_ftruncate(fd, at)
      uv.fs_close(fd)
      return fail(path, werr)
    end
    off = off + wrote
  end
  if at > 0 then uv.fs_ftruncate(fd, at + n) end -- (a longer file than the record says: what a crash left)
  local ok, cerr = uv.fs_close(fd)
  if not ok then return fail(path, cerr) end
  return true
end

local function cut(path, size)
  local fd = uv.fs_open(path, "r+", FILE_MODE)
  if fd then
    uv.fs_ftruncate(fd, size)
    uv.fs_close(fd)
  end
end

local function size_of(path)
  local st = uv.fs_stat(path)
  return st and st.size or 0
end

-- "from to" lines of the stderr runs.
local function runs_text(runs)
  local lines = {}
  for i, r in ipairs(runs) do lines[i] = ("%d %d\n"):format(r[1], r[2]) end
  return table.concat(lines)
end

-- Add output to the job's files: data at byte `at` of its log (what the
-- record says it holds; 0: a new log), its stderr runs ({ from, to }
-- cursors) after the others. All or nothing: a failure leaves both files
-- as they were.
function Files:append(id, data, runs, at)
  local log, errs = self:log_path(id), self:err_path(id)
  local ok, err = write_at(log, data, at)
  if not ok then return nil, err end
  if #runs == 0 then return true end
  local errs_at = at == 0 and 0 or size_of(errs)
  ok, err = write_at(errs, runs_text(runs), errs_at)
  if not ok then
    cut(log, at)
    return nil, err
  end
  return true
end

-- Replace the job's files with data and runs, all at once: the new files
-- are written beside, then renamed over the old ones.
function Files:replace(id, data, runs)
  local log, err_file = self:log_path(id), self:err_path(id)
  local ok, err = write_at(log .. ".new", data, 0)
  if ok and #runs > 0 then ok, err = write_at(err_file .. ".new", runs_text(runs), 0) end
  if ok then ok, err = uv.fs_rename(log .. ".new", log) end
  if ok then
    if #runs > 0 then ok, err = uv.fs_rename(err_file .. ".new", err_file) else uv.fs_unlink(err_file) end
  end
  if not ok then
    uv.fs_unlink(log .. ".new")
    uv.fs_unlink(err_file .. ".new")
    return fail(log, err)
  end
  return true
end

-- The stderr runs of a job inside [from, to), as { from, to } pairs.
function Files:runs(id, from, to)
  local data = files.read(self:err_path(id)) or ""
  local out = {}
  for a, b in data:gmatch("(%d+) (%d+)\n") do
    a, b = math.max(tonumber(a), from), math.min(tonumber(b), to)
    if a < b then out[#out + 1] = { a, b } end
  end
  return out
end

-- Bytes in the job's output file (0 when it has none).
function Files:size(id)
  return size_of(self:log_path(id))
end

-- When the job's output file was last written (ms since the epoch), or nil.
function Files:mtime_ms(id)
  local st = uv.fs_stat(self:log_path(id))
  return st and (st.mtime.sec * 1000 + st.mtime.nsec // 1000000) or nil
end

-- Delete the job's files (gone already is fine).
function Files:remove(id)
  uv.fs_unlink(self:log_path(id))
  uv.fs_unlink(self:err_path(id))
end

-- The ids that have an output file (to find files no record owns).
function Files:ids()
  local out = {}
  local scan = uv.fs_scandir(self.dir)
  while scan do
    local name = uv.fs_scandir_next(scan)
    if not name then break end
    local id = name:match("^(.+)%.log$")
    if id then out[#out + 1] = id end
  end
  return out
end

return outfiles
