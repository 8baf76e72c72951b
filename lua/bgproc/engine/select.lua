-- Selectors: which jobs a list or a kill applies to. A selector is a table
-- of optional criteria, all of which must hold:
--   processId  one id            sessionId  jobs of that session
--   status     one or a list     tags       any of these tags
--   allTags    all of these      name       case-insensitive substring
--   global     true or false
local states = require "bgproc.engine.states"
local tags = require "bgproc.engine.tags"

local filter = {}

-- The criteria, in the order messages name them. Tools say which they
-- take (tools/common.lua gives each its schema).
filter.KEYS = { "processId", "sessionId", "status", "tags", "allTags", "name", "global" }
local KNOWN_KEY = {}
for _, k in ipairs(filter.KEYS) do KNOWN_KEY[k] = true end

local STATUSES = states.KNOWN

local function as_list(v)
  if v == nil then return nil end
  if type(v) == "string" then return { v } end
  return v
end

local function tag_set(list, field, policy)
  if list == nil then return nil end
  local norm, err = tags.normalize(list, policy)
  if not norm then return nil, ("'%s': %s"):format(field, err) end
  return norm
end

-- One predicate holding when all of `checks` hold.
local function all_of(checks)
  local n = #checks
  if n == 0 then return function() return true end end
  if n == 1 then return checks[1] end
  return function(r)
    for i = 1, n do if not checks[i](r) then return false end end
    return true
  end
end

-- Compile a selector into { match = predicate(rec) -> boolean, processId,
-- sessionId, tags, allTags, narrows } (tags normalized: the keys an
-- engine's indexes can narrow the candidates with; narrows: some criterion
-- holds back some job, so `tags: []` or `tags: [""]` select everything and
-- do not narrow), or nil and a message.
-- Records carry: id, sessionId, status, tagset, name (and lname, the name
-- lower-cased, when they have it), global. Tags are
-- normalized with `policy` (the engine's tag policy; default tags.policy).
function filter.selector(sel, policy)
  local checks = {}
  if sel.processId then
    local id = sel.processId
    checks[#checks + 1] = function(r) return r.id == id end
  end
  if sel.sessionId then
    local sid = sel.sessionId
    checks[#checks + 1] = function(r) return r.sessionId == sid end
  end
  local statuses = as_list(sel.status)
  if statuses then
    local set = {}
    for _, s in ipairs(statuses) do
      if not STATUSES[s] then
        return nil, ("'status' must be one of %s, got %q"):format(
          table.concat(states.STATUSES, ", "), tostring(s))
      end
      set[s] = true
    end
    checks[#checks + 1] = function(r) return set[r.status] == true end
  end
  local any, err = tag_set(as_list(sel.tags), "tags", policy)
  if err then return nil, err end
  if any and #any > 0 then
    checks[#checks + 1] = function(r)
      local ts = r.tagset
      for i = 1, #any do if ts[any[i]] then return true end end
      return false
    end
  end
  local all
  all, err = tag_set(as_list(sel.allTags), "allTags", policy)
  if err then return nil, err end
  if all and #all > 0 then
    checks[#checks + 1] = function(r)
      local ts = r.tagset
      for i = 1, #all do if not ts[all[i]] then return false end end
      return true
    end
  end
  if sel.name then
    local needle = sel.name:lower()
    checks[#checks + 1] = function(r)
      return (r.lname or r.name:lower()):find(needle, 1, true) ~= nil
    end
  end
  if sel.global ~= nil then
    local want = sel.global
    checks[#checks + 1] = function(r) return r.global == want end
  end
  return { match = all_of(checks), processId = sel.processId, sessionId = sel.sessionId,
           tags = any and #any > 0 and any or nil, allTags = all and #all > 0 and all or nil,
           narrows = #checks > 0 }
end

-- The selector of `keys` (a subset of KEYS) in a tool's arguments.
function filter.pick(args, keys)
  local sel = {}
  for _, k in ipairs(keys) do
    assert(KNOWN_KEY[k], "not a selector key: " .. tostring(k))
    sel[k] = args[k]
  end
  return sel
end

-- Compile a selector into predicate(rec) -> boolean, or nil and a message
-- (see filter.selector).
function filter.compile(sel, policy)
  local s, err = filter.selector(sel, policy)
  if not s then return nil, err end
  return s.match
end

return filter
