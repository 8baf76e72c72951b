-- Whole small files (/proc, cgroup files): read or write in one go.
local files = {}

-- The contents of path, or nil and why (a missing file is common here:
-- a process that went, a controller a cgroup does not have).
function files.read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

-- Write s to path (replacing it): true, or nil and why.
function files.write(path, s)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(s)
  local closed, cerr = f:close()
  if not ok or not closed then return nil, werr or cerr end
  return true
end

return files
