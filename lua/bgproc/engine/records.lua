-- Public records: a job as tools and plugins see it, built from the
-- engine's record and cached once it can no longer change. Also the
-- record's life in memory: notes and tags added later, removal, retention.
local clock = require "bgproc.lib.clock"
local history = require "bgproc.engine.history"
local index = require "bgproc.engine.index"
local json = require "bgproc.lib.json"
local metrics = require "bgproc.engine.metrics"
local states = require "bgproc.engine.states"
local tags = require "bgproc.engine.tags"

local records = {}
local methods = {}
records.methods = methods

local FINAL = states.FINAL
local wall_ms = clock.wall_ms

-- ISO time of rec[ms_key], formatted once per value (kept under iso_key;
-- both keys are constants: no string is built per call).
local function cached_iso(rec, ms_key, iso_key)
  local ms = rec[ms_key]
  if not ms then return nil end
  local c = rec.iso_cache
  if not c then
    c = {}
    rec.iso_cache = c
  end
  if c[ms_key] ~= ms then
    c[ms_key] = ms
    c[iso_key] = clock.iso(ms)
  end
  return c[iso_key]
end

-- The last line of output, recomputed only when output was added.
local function last_line(rec, head)
  if rec.moved then return rec.ll end -- (its ring is gone: kept when its output went to disk)
  if rec.ll_head ~= head then
    rec.ll_head = head
    rec.ll = history.last_line_of(rec.job)
  end
  return rec.ll
end

-- The last line of a record whose ring is still there.
function records.last_line(rec)
  local _, head = rec.job:offsets()
  return last_line(rec, rec.base + head)
end

-- A copy of a list, as a JSON array: callers own what they are given.
-- (A non-empty list encodes as an array without the marker; lists of
-- one item, the most common, need no call to copy.)
local function array_copy(list)
  local n = #list
  if n == 1 then return { list[1] } end
  if n == 0 then return json.array() end
  return { table.unpack(list, 1, n) }
end

local function notes_copy(notes)
  if not notes then return nil end
  local out = {}
  for k, v in pairs(notes) do out[k] = v end
  return out
end

-- A settled record's public form is kept as a list: its values in the
-- order of KEPT, then a table of the rest (fields most records lack), if
-- any. Copying from a list is quicker than from a table of names.
local KEPT = { "id", "name", "status", "pid", "sessionId", "global", "tags", "stdin", "command", "argv",
               "startedAt", "endedAt", "durationMs", "exitCode", "outputBytes", "droppedBytes", "lastLine" }
local LISTS = { tags = true, argv = true } -- kept lists, copied for each caller
records.LISTS = LISTS
records.ARRAYS = { "tags", "argv", "ports" } -- the record's fields that are JSON arrays
local REST = #KEPT + 1
local KEPT_INDEX = {}
for i, k in ipairs(KEPT) do KEPT_INDEX[k] = i end
local STATUS_AT = KEPT_INDEX.status

-- copy_public(p): a new public record from a kept one, as one table
-- constructor written from KEPT (quicker than a loop of assignments).
local function compile_copy()
  local fields = {}
  for i, k in ipairs(KEPT) do
    local v = ("p[%d]"):format(i)
    if LISTS[k] then v = ("%s and array_copy(%s)"):format(v, v) end
    fields[i] = ("[%q] = %s"):format(k, v)
  end
  local src = "local array_copy = ...\nreturn function(p) return { " .. table.concat(fields, ", ") .. " } end"
  return assert(load(src, "=copy_public"))(array_copy)
end
local copy_kept = compile_copy()

-- The kept form of rec's public record r, sharing no table with r. Its
-- lists are the record's own: they are never changed in place (tags are
-- replaced, argv is fixed), and copy_public copies them.
local function keep_public(rec, r)
  local kept, rest = {}, nil
  for i, k in ipairs(KEPT) do kept[i] = r[k] end
  for k, v in pairs(r) do
    if not KEPT_INDEX[k] then
      rest = rest or {}
      rest[k] = v
    end
  end
  for k in pairs(LISTS) do kept[KEPT_INDEX[k]] = r[k] and rec[k] end
  if rest then rest.notes = notes_copy(rest.notes) end
  kept[REST] = rest
  return kept
end

-- A new public record from a kept one: a fresh table, lists and notes
-- copied too, so the caller may change it freely.
local function copy_public(p)
  local r = copy_kept(p)
  local rest = p[REST]
  if rest then
    for k, v in pairs(rest) do r[k] = v end
    r.notes = notes_copy(rest.notes)
  end
  return r
end

-- The record as tools and plugins see it, built from its fields. now:
-- wall_ms(), taken once by callers that make many.
local function build_public(rec, now)
  local started, command = rec.startedMs, rec.command
  local tail, head = history.window(rec)
  -- the fields most records have, in one constructor of 16 (a table of
  -- 16 slots: the rest, rarer, may grow it)
  local r = {
    id = rec.id, name = rec.name, status = rec.status, pid = rec.pid,
    sessionId = rec.sessionId, global = rec.global, tags = array_copy(rec.tags), stdin = rec.stdin,
    command = command, argv = not command and array_copy(rec.argv) or nil,
    startedAt = cached_iso(rec, "startedMs", "startedAt"), endedAt = cached_iso(rec, "endedMs", "endedAt"),
    durationMs = started and math.floor((rec.endedMs or now or wall_ms()) - started) or nil,
    exitCode = rec.exitCode, outputBytes = head, droppedBytes = tail,
  }
  if rec.job or rec.moved then r.lastLine = last_line(rec, head) end
  if rec.cwd then r.cwd = rec.cwd end
  if rec.signal then r.signal = rec.signal end
  if rec.error then r.error = rec.error end
  if rec.restarts > 0 then r.restarts = rec.restarts end
  if rec.ready ~= nil then r.ready, r.readyLine = rec.ready, rec.readyLine end
  if rec.readyPort then r.readyPort = rec.readyPort end
  if rec.readyUrl then r.readyUrl = rec.readyUrl end
  if rec.memoryMax then r.memoryMax = rec.memoryMax end
  local m = rec.m -- the last sample (engine/metrics.lua); once ended, its totals only
  if m then
    r.cpuMs, r.memoryPeakBytes = m.cpuMs, m.memoryPeakBytes
    if not FINAL[rec.status] then
      r.cpuPercent, r.memoryBytes = m.cpuPercent, m.memoryBytes
      if m.ports then r.ports = json.array(table.move(m.ports, 1, #m.ports, 1, {})) end
    end
  end
  local stop = rec.stop
  if stop then
    r.stopReason = stop.reason
    if not FINAL[rec.status] then r.stopping = true end
  end
  if FINAL[rec.status] then r.endReason = states.end_reason(rec) end
  if rec.notifyPattern then r.notifyPattern = rec.notifyPattern end
  if rec.notes then r.notes = notes_copy(rec.notes) end
  return r
end

-- Whether a record's public form can no longer change by itself: it has
-- ended and all its output is in. What else changes it (notes, tags, a
-- stop, a restart) calls unsettle().
local function settled(rec)
  return rec.finished and FINAL[rec.status] and states.output_done(rec)
end

-- The record changed: its cached public form is stale.
function records.unsettle(rec)
  rec.pub = nil
end

-- The record as tools and plugins see it. A settled record's public form
-- is built once and kept (rec.pub); callers get copies of it, which they
-- may change freely (a list of thousands of records costs half as much).
local function public_record(rec, now)
  if rec.cold then history.warm(rec) end -- (a record of an earlier run, read for the first time)
  local pub = rec.pub
  -- (its status: a change of state that forgot unsettle() is seen)
  if pub and pub[STATUS_AT] == rec.status then return copy_public(pub) end
  local r = build_public(rec, now)
  if settled(rec) then rec.pub = keep_public(rec, r) end
  return r
end
records.public = public_record

-- What on_output and api.jobs give plugins: who the job is and its
-- state, without a full record's costs (reading output, copying notes).
function records.light(rec)
  -- (not warmed: a plugin that looks at every job each second must not
  -- load every record of earlier runs; those have no pid any more)
  return { id = rec.id, name = rec.name, status = rec.status, pid = rec.pid,
           sessionId = rec.sessionId, global = rec.global, stdin = rec.stdin or "null",
           tags = table.move(rec.tags, 1, #rec.tags, 1, {}) }
end

-- The cursor just past the record's output: where a next run's begins.
function records.output_end(rec)
  return select(2, history.window(rec))
end

-- Let go of a record's core job: its ring, and anything left of its group.
function records.drop_job(self, rec)
  if not rec.job then return end
  self.by_job[rec.job] = nil
  rec.job:close()
  rec.job = nil
  records.unsettle(rec) -- its output counts are now rec.base
end

function methods:record(id)
  local rec = self.jobs[id]
  if rec then metrics.refresh(self, { rec }) end
  return rec and public_record(rec)
end

function methods:public(rec)
  metrics.refresh(self, { rec })
  return public_record(rec)
end

-- Public records of a list of records (a JSON array).
function methods:publics(recs)
  metrics.refresh(self, recs)
  local now = wall_ms()
  local out = json.array()
  for i, rec in ipairs(recs) do out[i] = public_record(rec, now) end
  return out
end

-- Counts for the daemon's status.
function methods:stats()
  local jobs, sessions = 0, 0
  for _ in pairs(self.jobs) do jobs = jobs + 1 end
  for _ in pairs(self.sessions) do sessions = sessions + 1 end
  return { jobs = jobs, running = self.running, sessions = sessions }
end

-- A free-form fact on a record (shown under `notes`). Returns whether
-- the record exists.
function methods:note(id, key, value)
  local rec = self.jobs[id]
  if not rec then return false end
  history.warm(rec) -- (its stored notes first)
  rec.notes = rec.notes or {}
  rec.notes[key] = value
  records.unsettle(rec)
  history.save(self, rec)
  return true
end

-- A list of tags under this engine's tag policy: the normalized list,
-- or nil and a message.
function methods:tag_list(list)
  return tags.normalize(list, self.tag_policy)
end

-- More tags on a record, under the tag policy: true, false (no such
-- record), or nil and a message.
function methods:add_tags(id, list)
  local rec = self.jobs[id]
  if not rec then return false end
  history.warm(rec)
  local merged = table.move(rec.tags, 1, #rec.tags, 1, {})
  for _, t in ipairs(list) do merged[#merged + 1] = t end
  local norm, err = tags.normalize(merged, self.tag_policy)
  if not norm then return nil, err end
  for _, tag in ipairs(norm) do
    if not rec.tagset[tag] then index.add(self.by_tag, tag, rec) end
  end
  rec.tags, rec.tagset = norm, tags.set(norm)
  records.unsettle(rec)
  history.save(self, rec)
  return true
end

-- Forget a finished record: free its ring, end anything left of its group.
function methods:remove(rec)
  if rec.removed then return end
  rec.removed = true
  if rec.finished then self.nfinished = self.nfinished - 1 end
  self.jobs[rec.id] = nil
  records.drop_job(self, rec)
  index.delete(self, rec)
  history.forget(self, rec)
end

-- Retention: keep at most maxFinished finished records, none older than
-- maxAgeMs (counted from when they ended), and at most maxDiskBytes of
-- their output on disk. Finished records queue up in the order they
-- finished, so this costs O(records removed).
function methods:retain()
  local r = self.cfg.retention
  local max_n, max_age, max_disk = r.maxFinished, r.maxAgeMs, r.maxDiskBytes
  local q = self.done_q
  local now = wall_ms()
  while q.first <= q.last do
    local rec = q[q.first]
    local valid = rec.qi == q.first and not rec.removed and FINAL[rec.status]
    local expired = valid and ((max_n and self.nfinished > max_n)
      or (max_age and rec.endedMs and now - rec.endedMs > max_age)
      or (max_disk and history.disk_bytes(self) > max_disk))
    if valid and not expired then break end
    q[q.first] = nil
    q.first = q.first + 1
    if valid then self:remove(rec) end
  end
end

return records
