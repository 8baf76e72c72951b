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
  local st = uv.fs_stat(dir)
  if not st then
    local ok, err = uv.fs_mkdir(dir, DIR_MODE)
    if not ok and not tostring(err):find("^EEXIST") then return fail(dir, err) end
    st = uv.fs_stat(dir)
  end
  if not st or st.type ~= "directory" then return fail(dir, "not a directory") end
  if st.mode % 512 ~= DIR_MODE then uv.fs_chmod(dir, DIR_MODE) end
  return setmetatable({ dir = dir }, Files)
end

function Files:log_path(id) return self.dir .. "/" .. id .. ".log" end
function Files:err_path(id) return self.dir .. "/" .. id .. ".err" end

-- Write data at the end of path (flags "a") or as its whole content ("w").
local function write(path, flags, data)
  local fd, err = uv.fs_open(path, flags, FILE_MODE)
  if not fd then return fail(path, err) end
  local off, n = 0, #data
  while off < n do
    local wrote, werr = uv.fs_write(fd, off == 0 and data or data:sub(off + 1), -1)
    if not wrote then
      uv.fs_close(fd)
      return fail(path, werr)
    end
    off = off + wrote
  end
  local ok, cerr = uv.fs_close(fd)
  if not ok then return fail(path, cerr) end
  return true
end

-- "from to" lines of the stderr runs.
local function runs_text(runs)
  local lines = {}
  for i, r in ipairs(runs) do lines[i] = ("%d %d\n"):format(r[1], r[2]) end
  return table.concat(lines)
end

-- Add output at the end of the job's files. runs: its stderr runs
-- ({ from, to } cursors).
function Files:append(id, data, runs)
  if #data > 0 then
    local ok, err = write(self:log_path(id), "a", data)
    if not ok then return nil, err end
  end
  if #runs > 0 then return write(self:err_path(id), "a", runs_text(runs)) end
  return true
end

-- Replace the job's files with data and runs, all at once: the new files
-- are written beside, then renamed over the old ones.
function Files:replace(id, data, runs)
  local log, err_file = self:log_path(id), self:err_path(id)
  local ok, err = write(log .. ".new", "w", data)
  if ok and #runs > 0 then ok, err = write(err_file .. ".new", "w", runs_text(runs)) end
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
  local fd = uv.fs_open(self:err_path(id), "r", 0)
  if not fd then return {} end
  local st = uv.fs_fstat(fd)
  local data = st and st.size > 0 and uv.fs_read(fd, st.size, 0) or ""
  uv.fs_close(fd)
  local out = {}
  for a, b in data:gmatch("(%d+) (%d+)\n") do
    a, b = math.max(tonumber(a), from), math.min(tonumber(b), to)
    if a < b then out[#out + 1] = { a, b } end
  end
  return out
end

-- Bytes in the job's output file (0 when it has none).
function Files:size(id)
  local st = uv.fs_stat(self:log_path(id))
  return st and st.size or 0
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
