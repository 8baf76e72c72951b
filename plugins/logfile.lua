-- logfile: tee every job's output to a file, capped, under
-- $XDG_STATE_HOME/bgproc/logs/<id>.log. When the file reaches maxBytes it
-- is moved to <id>.log.1 (replacing the older one) and a new one begun, so
-- a job uses at most twice maxBytes of disk. A write error (a full disk)
-- is reported once and logging stops for that job; the job goes on.
--
--   config: logfile = { dir = "...", maxBytes = 10485760 }
local paths = require "bgproc.lib.paths"

local opts = { maxBytes = 10 * 1024 * 1024 }
local files = {} -- id -> { f, size, path } or { failed = true }

local function open(api, id)
  local entry = files[id]
  if entry then return entry end
  local path = opts.dir .. "/" .. id .. ".log"
  local f, err = io.open(path, "ab")
  if not f then
    paths.ensure_dir(opts.dir) -- if it fails, so does the open, which says why
    f, err = io.open(path, "ab")
  end
  if not f then
    api.log("warn", ("logfile: %s"):format(err))
    api.note(id, "logfile", "error: " .. tostring(err))
    files[id] = { failed = true }
    return files[id]
  end
  entry = { f = f, size = f:seek("end"), path = path }
  files[id] = entry
  api.note(id, "logfile", path)
  return entry
end

local function fail(api, id, entry, err)
  api.log("warn", ("logfile: %s: %s; no more logging for %s"):format(entry.path, tostring(err), id))
  api.note(id, "logfile", ("error: %s (logging stopped)"):format(tostring(err)))
  pcall(entry.f.close, entry.f)
  files[id] = { failed = true, path = entry.path }
end

return {
  name = "logfile",
  setup = function(api, o)
    for k, v in pairs(o or {}) do opts[k] = v end
    opts.dir = opts.dir or (api.state_dir .. "/logs")
  end,
  on_output = function(api, record, chunk)
    local entry = open(api, record.id)
    if entry.failed then return end
    if #chunk > opts.maxBytes then chunk = chunk:sub(-opts.maxBytes) end
    if entry.size + #chunk > opts.maxBytes then
      entry.f:close()
      os.rename(entry.path, entry.path .. ".1")
      local f, err = io.open(entry.path, "wb")
      if not f then return fail(api, record.id, entry, err) end
      entry.f, entry.size = f, 0
    end
    local ok, err = entry.f:write(chunk)
    if ok then ok, err = entry.f:flush() end
    if not ok then return fail(api, record.id, entry, err) end
    entry.size = entry.size + #chunk
  end,
  on_exit = function(api, record)
    local entry = files[record.id]
    if entry and entry.f then pcall(entry.f.close, entry.f) end
    files[record.id] = nil
  end,
}
