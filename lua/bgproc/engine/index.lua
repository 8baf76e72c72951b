-- Rosters and indexes: the records in creation order, by tag, by session
-- and by name, so a selection (or a name) looks at the fewest records it
-- can.
--
-- A roster is a list of records in creation order (by rec.seq). Removed
-- records stay in it as holes (callers skip rec.removed) until they are
-- many: removing one costs O(1) amortized.
local errors = require "bgproc.lib.errors"
local selectors = require "bgproc.engine.select"
local states = require "bgproc.engine.states"

local index = {}
local methods = {}
index.methods = methods

local NONE = {} -- the roster of a key no record has (never added to)

-- Add rec to a roster. A record usually comes last (it is new); a tag a
-- plugin adds to an older record puts it in its place instead.
function index.roster_add(list, rec)
  local n = #list
  if n == 0 or list[n].seq < rec.seq then
    list[n + 1] = rec
    return
  end
  local lo, hi = 1, n -- first position whose record is newer than rec
  while lo < hi do
    local mid = (lo + hi) // 2
    if list[mid].seq < rec.seq then lo = mid + 1 else hi = mid end
  end
  table.insert(list, lo, rec)
end

-- Count one more removed record in a roster; squeeze the holes out once
-- they are over a quarter of it, or all of it. Returns true when the
-- roster is then empty.
function index.roster_forget(list)
  local holes = (list.holes or 0) + 1
  list.holes = holes
  if holes < #list and (holes <= 64 or holes <= #list // 4) then return false end
  local n = 0
  for i = 1, #list do
    local rec = list[i]
    if not rec.removed then
      n = n + 1
      list[n] = rec
    end
  end
  for i = #list, n + 1, -1 do list[i] = nil end
  list.holes = 0
  return n == 0
end

-- keyed: key -> roster (by_tag, by_session).
function index.add(keyed, key, rec)
  local list = keyed[key]
  if not list then
    list = {}
    keyed[key] = list
  end
  index.roster_add(list, rec)
end

-- A record of `key` was removed: a roster of holes only is dropped, so
-- the tags and sessions of the past do not pile up.
local function forget(keyed, key)
  if index.roster_forget(keyed[key]) then keyed[key] = nil end
end

-- A new record joins the rosters.
function index.insert(self, rec)
  index.roster_add(self.order, rec)
  for _, tag in ipairs(rec.tags) do index.add(self.by_tag, tag, rec) end
  index.add(self.by_session, rec.sessionId, rec)
  index.add(self.by_name, rec.name, rec)
end

-- A removed record (rec.removed set) leaves them.
function index.delete(self, rec)
  index.roster_forget(self.order)
  for _, tag in ipairs(rec.tags) do forget(self.by_tag, tag) end
  forget(self.by_session, rec.sessionId)
  forget(self.by_name, rec.name)
end

-- The records of several rosters, each once, in creation order: a merge
-- that looks at the head of every roster for each record it takes.
local function merged(lists)
  local out, at = {}, {}
  for i = 1, #lists do at[i] = 1 end
  while true do
    local oldest
    for i, list in ipairs(lists) do
      local rec = list[at[i]]
      if rec and (not oldest or rec.seq < oldest.seq) then oldest = rec end
    end
    if not oldest then return out end
    out[#out + 1] = oldest
    for i, list in ipairs(lists) do
      if list[at[i]] == oldest then at[i] = at[i] + 1 end
    end
  end
end

-- The records with any of `tags`, in creation order, when merging their
-- rosters costs less than a scan of all records; else nil.
local function any_tag(self, tags)
  local lists, n = {}, 0
  for _, tag in ipairs(tags) do
    local list = self.by_tag[tag]
    if list then
      lists[#lists + 1] = list
      n = n + #list
    end
  end
  if n * #lists > 2 * #self.order then return nil end
  return #lists == 1 and lists[1] or merged(lists)
end

-- The shortest roster that holds every record selector s (see
-- select.lua) can match: that of its session, of one of its allTags, of
-- its tags, else all the records.
local function candidates(self, s)
  local best = self.order
  local function narrow(list)
    list = list or NONE
    if #list < #best then best = list end
  end
  if s.sessionId then narrow(self.by_session[s.sessionId]) end
  for _, tag in ipairs(s.allTags or NONE) do narrow(self.by_tag[tag]) end
  if s.tags then narrow(any_tag(self, s.tags) or self.order) end
  return best
end

-- Compile a selector (select.lua) under this engine's tag policy.
function methods:selector(criteria)
  return selectors.selector(criteria, self.tag_policy)
end

function methods:get(id)
  return self.jobs[id]
end

local function any() return true end -- (each skips removed records)
local function running(rec) return not states.FINAL[rec.status] end

-- "ab-3 (running, session s1, cwd /app)" for a list of candidates.
local function describe(recs)
  local parts = {}
  for i, rec in ipairs(recs) do
    parts[i] = ("%s (%s, session %s%s)"):format(rec.id, rec.status, rec.sessionId,
      rec.cwd and (", cwd " .. rec.cwd) or "") -- (a cold record's cwd is not known: running ones are warm)
  end
  return table.concat(parts, ", ")
end

-- The job `ref` means to the caller of session sid (may be nil): the one
-- with that id, else the one with that exact name. Among jobs of one
-- name, the caller's own session's and global ones come first, then the
-- running one, else the newest. Two running of one name are ambiguous.
-- Returns the record, or nil and an error naming `field`.
function methods:resolve(ref, sid, field)
  field = field or "processId"
  local rec = self.jobs[ref]
  if rec then return rec end
  local named = self.by_name[ref] and self:each(any, self.by_name[ref]) or {}
  if #named == 0 then
    return errors.fail("not_found", "'%s': no process '%s' (no job has that id or name; finished jobs are "
      .. "removed after a while: see listBackgroundProcesses)", field, ref)
  end
  local mine = sid and self:each(function(r) return r.sessionId == sid or r.global end, named) or {}
  if #mine > 0 then named = mine end
  local up = self:each(running, named)
  if #up > 1 then
    return errors.fail("invalid_argument", "'%s': the name '%s' is ambiguous: %d running jobs have it: %s; "
      .. "give an id", field, ref, #up, describe(up))
  end
  return up[1] or named[#named]
end

-- The records for which pred(rec) holds, in creation order. `within`: a
-- roster to look in (default: all the records).
function methods:each(pred, within)
  local out = {}
  for _, rec in ipairs(within or self.order) do
    if not rec.removed and pred(rec) then out[#out + 1] = rec end
  end
  return out
end

-- The records compiled selector s (see select.lua) matches, in creation
-- order; the indexes limit the records looked at.
function methods:select(s)
  if s.processId then
    local rec = self.jobs[s.processId]
    return rec and s.match(rec) and { rec } or {}
  end
  return self:each(s.match, candidates(self, s))
end

-- Whether a session is open, or has records.
function methods:session_known(id)
  local roster = self.by_session[id]
  return self.sessions[id] ~= nil or (roster ~= nil and #roster > 0)
end

return index
