-- What plugins get as `api`: a narrow view of the engine, through its
-- methods only (see plugins/host.lua for the hooks).
local paths = require "bgproc.lib.paths"
local errors = require "bgproc.lib.errors"
local records = require "bgproc.engine.records"
local text = require "bgproc.lib.text"

local api = {}

function api.new(engine)
  local a = {}
  function a.log(level, msg) engine:log(level, msg) end
  function a.after(ms, fn) return engine:after(ms, fn) end
  function a.every(ms, fn) return engine:every(ms, fn) end
  function a.record(id) return engine:record(id) end
  -- public records, those for which pred(record) holds
  function a.records(pred)
    local all = engine:publics(engine:each(function() return true end))
    if not pred then return all end
    local out = {}
    for _, r in ipairs(all) do if pred(r) then out[#out + 1] = r end end
    return out
  end
  -- light records (records.light), those for which pred(light) holds:
  -- cheap enough for a plugin's timer
  function a.jobs(pred)
    local out = {}
    engine:each(function(rec)
      local l = records.light(rec)
      if not pred or pred(l) then out[#out + 1] = l end
      return false
    end)
    return out
  end
  function a.respawn(id)
    local rec = engine:get(id)
    if not rec then return errors.fail("not_found", "no process '%s'", id) end
    return engine:respawn(rec)
  end
  -- notes: free-form facts a plugin adds to a record (shown as `notes`)
  function a.note(id, key, value) return engine:note(id, key, value) end
  function a.add_tags(id, list) return engine:add_tags(id, list) end
  -- the last lines of output (default 10), at most max_bytes (default 64 KiB)
  function a.output(id, lines, max_bytes)
    local rec = engine:get(id)
    if not rec then return "" end
    return text.clean(engine:tail(rec, lines or 10, "both", max_bytes or 65536), true)
  end
  -- how long a job's run has printed nothing (from the first time asked)
  local seen = setmetatable({}, { __mode = "k" }) -- record -> { bytes, run, at }
  function a.silent_ms(id)
    local rec = engine:get(id)
    if not rec then return nil end
    local bytes, now = engine:output_bytes(rec), engine:now()
    local s = seen[rec]
    if not s or s.bytes ~= bytes or s.run ~= rec.restarts then
      s = { bytes = bytes, run = rec.restarts, at = now }
      seen[rec] = s
    end
    return now - s.at
  end
  a.state_dir = paths.state_dir()
  a.config = engine:settings()
  a.tag_policy = engine.tag_policy -- max_length, max_count, charset (read only)
  return a
end

return api
