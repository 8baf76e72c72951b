-- History: records and output that outlive the engine, in a store (a
-- SQLite database, store/db.lua, and output files beside it,
-- store/outfiles.lua). Without one (no `store` option) all stays in
-- memory, as before.
--
-- The journal: a record's row is written before the change is answered
-- to anyone: when the job is created and started, when it is ready, when
-- its output is flushed, when it ends, when tags or notes are added.
--
-- Output: a running job's ring stays in memory and is flushed to its file
-- every FLUSH_MS, or as soon as FLUSH_BYTES are waiting (at most every
-- FLUSH_GAP_MS), so a crash loses at most that much. Once the job has ended and all its output is in,
-- the file is cut to the ring's window (outputBytes at most) and the ring
-- is freed: a finished job's output is only on disk, and memory is the
-- running rings plus a constant, whatever the history.
--
-- A store that fails (locked by another bgproc, corrupt, read-only, disk
-- full) never costs a job: the engine goes on in memory, keeps a finished
-- job's ring when its file cannot be written, and says why in
-- store_status() and in create's `warning`.
local clock = require "bgproc.lib.clock"
local core = require "bgproc.core"
local db = require "bgproc.store.db"
local json = require "bgproc.lib.json"
local outfiles = require "bgproc.store.outfiles"
local states = require "bgproc.engine.states"
local tags = require "bgproc.engine.tags"
local text = require "bgproc.lib.text"

local history = {}
local methods = {}
history.methods = methods

history.FLUSH_MS = 1000
history.FLUSH_BYTES = 64 * 1024
history.FLUSH_GAP_MS = 100
local CACHE_BYTES = 8 * 1024 * 1024 -- finished jobs' outputs kept loaded for the next read

local FINAL = states.FINAL

-- A record's fields saved as they are (what its public form and a rerun
-- need). The inherited environment (rec.base_env) is never saved.
local SAVED = { "id", "seq", "name", "command", "argv", "cwd", "env", "no_inherit", "sessionId", "global", "tags",
                "stdin", "pty", "ring", "timeoutMs", "readyPattern", "notifyPattern", "readyPort", "readyUrl",
                "memoryMax", "status", "base", "restarts", "startedMs", "endedMs", "exitCode", "signal", "error",
                "ready", "readyLine", "notes", "pid", "ll" }

-- The ids' prefix and the highest seq given, so ids stay unique for the
-- database's whole life.
local META_PREFIX, META_SEQ = "id_prefix", "seq"

-- Why history is not (all) being saved, or nil: the database file gone
-- (kind "gone", for good), its failure ("db"), else the output
-- directory's ("dir"), else a job's file's.
local function failure(h)
  return h.failures.gone or h.failures.db or h.failures.dir or select(2, next(h.file_failures))
end

-- A failure of `kind` ("db", "dir"), or of rec's output file. Logged
-- when history goes from saved to not.
local function failed(h, kind, what, err, rec)
  local msg = what and ("%s: %s"):format(what, tostring(err)) or tostring(err)
  if not failure(h) then h.log("warn", msg .. " (jobs run on; history is kept in memory)") end
  if rec then h.file_failures[rec] = msg else h.failures[kind] = msg end
  return nil, msg
end

-- The database (or rec's file) works again.
local function recovered(h, kind, rec)
  local before = failure(h)
  if rec then h.file_failures[rec] = nil else h.failures[kind] = nil end
  if before and not failure(h) then h.log("info", "history is saved again (" .. before .. " is over)") end
end

-- ---- the journal ------------------------------------------------------------------------

-- (exact: a command, cwd or env that is not UTF-8 runs again as it was)
local function encode(d)
  local ok, s = pcall(json.encode_exact, d)
  if ok then return s end
  d.notes = nil -- a plugin's note JSON cannot say
  return json.encode(d)
end

local function row_of(rec)
  history.warm(rec)
  local d = {}
  for _, k in ipairs(SAVED) do d[k] = rec[k] end
  local stop = rec.stop
  if stop then d.stop = { reason = stop.reason, detail = stop.detail, text = stop.text } end
  local m = rec.m
  if m then d.cpuMs, d.memoryPeakBytes = m.cpuMs, m.memoryPeakBytes end
  local disk = rec.disk
  if disk then d.disk = { start = disk.start, size = disk.size } end
  return { id = rec.id, seq = rec.seq, status = rec.status, session = rec.sessionId, ended_ms = rec.endedMs,
           out_bytes = disk and disk.size or 0, out_start = disk and disk.start or rec.base, data = encode(d),
           name = rec.name, tags = table.concat(rec.tags, "\n"), global = rec.global }
end

-- Journal rec's state. Returns true, or nil and why: the record lives on
-- in memory, and is saved again once the database works (h.dirty). The
-- journal never raises into the engine.
function history.save(self, rec)
  local h = self.history
  if not (h and h.db) or rec.removed then return true end
  -- a new id is inserted at once; one whose old row waits to be deleted
  -- (a unique replace took it) overwrites that row instead
  local fresh = not rec.saved and not h.undeleted[rec.id]
  h.undeleted[rec.id] = nil
  local called, ok, err = pcall(function() return h.db:put(row_of(rec), fresh) end)
  if not called then ok, err = nil, ok end -- (what it raised)
  if not ok then
    h.dirty[rec] = true
    return failed(h, "db", "saving " .. rec.id, err)
  end
  h.dirty[rec], rec.saved = nil, true
  recovered(h, "db")
  return true
end

-- The rows of removed records, deleted in one transaction (each flush
-- tick: a removal costs a job's end no commit of its own), and what
-- failed to be saved, tried again.
local function retry(self, h)
  local ids = {}
  for id in pairs(h.undeleted) do ids[#ids + 1] = id end
  if #ids > 0 then
    local ok, err = h.db:delete_many(ids)
    if ok then h.undeleted = {} else failed(h, "db", "removing " .. #ids .. " records", err) end
  end
  for rec in pairs(h.dirty) do
    if rec.removed then h.dirty[rec] = nil elseif not history.save(self, rec) then return end
  end
end

-- ---- output on disk ---------------------------------------------------------------------

-- The cache of loaded outputs: rec -> Output, oldest first in h.loaded.
local function unload(h, rec)
  local entry = h.loaded[rec]
  if not entry then return end
  h.loaded[rec] = nil
  h.loaded_bytes = h.loaded_bytes - entry.size
  for i, r in ipairs(h.loaded_order) do
    if r == rec then table.remove(h.loaded_order, i) break end
  end
  entry.out:close()
end

local function load(self, rec)
  local h = self.history
  local entry = h.loaded[rec]
  if entry then return entry.out end
  local disk = rec.disk
  local from, to = disk.start, disk.start + disk.size
  local out, err = core.output_load(h.files:log_path(rec.id), from, h.files:runs(rec.id, from, to))
  if not out then
    self:log("warn", ("output of %s: %s"):format(rec.id, err))
    return nil
  end
  while #h.loaded_order > 0 and h.loaded_bytes + disk.size > CACHE_BYTES do unload(h, h.loaded_order[1]) end
  h.loaded[rec] = { out = out, size = disk.size }
  h.loaded_bytes = h.loaded_bytes + disk.size
  h.loaded_order[#h.loaded_order + 1] = rec
  return out
end

-- What rec's output is read from, and the cursor of that source's offset
-- 0: its ring while it has one, else its file. nil: no output kept.
function history.source(self, rec)
  if rec.job and not rec.moved then return rec.job, rec.base end
  local disk = rec.disk
  if disk and disk.size > 0 and self.history and self.history.files then return load(self, rec), 0 end
end

-- The window of output kept, in cursor space: first, just-after-last.
function history.window(rec)
  if rec.job and not rec.moved then
    local tail, head = rec.job:offsets()
    return rec.base + tail, rec.base + head
  end
  local disk = rec.disk
  if disk and rec.moved then return disk.start, disk.start + disk.size end
  return rec.base, rec.base
end

-- The stderr runs of the ring in [from, to) (ring offsets), as cursors.
local function stderr_runs(rec, from, to)
  local out = {}
  for _, run in ipairs(rec.job:runs(from, to)) do
    if run[3] == "stderr" then out[#out + 1] = { rec.base + run[1], rec.base + run[2] } end
  end
  return out
end

-- rec's file is now `size` bytes. Finished jobs' bytes (h.done_bytes)
-- are what retention's maxDiskBytes bounds: running jobs' files are not
-- theirs to delete.
local function account(h, rec, size)
  local delta = size - rec.disk.size
  h.disk_bytes = h.disk_bytes + delta
  if rec.moved then h.done_bytes = h.done_bytes + delta end
  rec.disk.size = size
end

-- Write what the ring holds past the file's end. The file is rewritten
-- from the ring when the ring overwrote bytes not yet flushed, when it
-- would pass twice the ring's size, or (final) to cut it to the ring's
-- window. Returns true, or nil and why.
local function flush(self, rec, final)
  local h = self.history
  local tail, head = rec.job:offsets()
  local first, last = rec.base + tail, rec.base + head
  local disk = rec.disk
  if not disk then
    disk = { start = first, size = 0 }
    rec.disk = disk
  end
  local flushed = disk.start + disk.size
  local after = disk.size + (last - flushed) -- the file's size after an append
  local cut = final and after > head - tail   -- more than the ring's window: cut it to that
  if flushed == last and not cut then return true end
  local ok, err
  if flushed < first or after > 2 * rec.ring or cut then
    ok, err = h.files:replace(rec.id, (rec.job:read(tail, head - tail)), stderr_runs(rec, tail, head))
    if ok then
      unload(h, rec)
      disk.start = first
      account(h, rec, last - first)
    end
  else
    local from = flushed - rec.base
    ok, err = h.files:append(rec.id, (rec.job:read(from, head - from)), stderr_runs(rec, from, head), disk.size)
    if ok then
      unload(h, rec) -- (loaded before a restart)
      account(h, rec, last - disk.start)
    end
  end
  if not ok then return failed(h, "files", "output of " .. rec.id, err, rec) end
  disk.file = true
  recovered(h, "files", rec)
  return history.save(self, rec)
end

-- Flush a running job's output once FLUSH_BYTES wait (after its output),
-- at most every FLUSH_GAP_MS: a job that floods is flushed ten times a
-- second, and once its ring has overwritten what was not flushed, the
-- timer's flush (which rewrites the file from the ring) does it.
function history.output(self, rec)
  local h = self.history
  if not (h and h.files) or rec.moved or not rec.job then return end
  h.live[rec] = true
  local tail, head = rec.job:offsets()
  local disk = rec.disk
  local flushed = disk and disk.start + disk.size or rec.base
  if rec.base + head - flushed < history.FLUSH_BYTES or flushed < rec.base + tail then return end
  local now = self.sched.now()
  if rec.flushed_at and now - rec.flushed_at < history.FLUSH_GAP_MS then return end
  rec.flushed_at = now
  flush(self, rec)
end

local function flush_live(self)
  local h = self.history
  for rec in pairs(h.live) do
    if rec.moved or rec.removed or not rec.job then h.live[rec] = nil else flush(self, rec) end
  end
  if next(h.dirty) or next(h.undeleted) then retry(self, h) end
  if not h.failures.gone and h.db:gone() then
    failed(h, "gone", nil, ("database %s was deleted or replaced while in use: history is not being saved "
      .. "until the daemon restarts"):format(h.path))
  end
end

-- The job has ended and all its output is in: its output goes to disk
-- and its ring is freed (kept, shrunk, when the file cannot be written).
function history.settle(self, rec, last_line)
  local h = self.history
  if rec.moved then return true end -- (settled already)
  if not (h and h.files) then
    rec.job:shrink()
    return history.save(self, rec)
  end
  h.live[rec] = nil
  local _, head = rec.job:offsets()
  if head == 0 and not rec.disk then
    rec.disk = { start = rec.base, size = 0 }
  elseif not flush(self, rec, true) then
    rec.job:shrink() -- (its row says what its file holds: the end is journaled all the same)
    return history.save(self, rec)
  end
  rec.ll = last_line(rec)
  rec.job:drop_output()
  rec.moved = true
  h.done_bytes = h.done_bytes + rec.disk.size
  h.file_failures[rec] = nil
  return history.save(self, rec)
end

-- A finished record runs again (a restart): its output goes on in a new
-- ring, and on to the end of its file.
function history.revive(self, rec)
  local h = self.history
  if rec.moved and rec.disk and h then h.done_bytes = h.done_bytes - rec.disk.size end
  rec.moved = nil
end

-- The record is gone for good: its row and its output files too.
function history.forget(self, rec)
  local h = self.history
  if not (h and h.db) then return end
  h.live[rec], h.dirty[rec], h.file_failures[rec] = nil, nil, nil
  unload(h, rec)
  if rec.disk then
    local written = rec.disk.size > 0 or rec.disk.file
    account(h, rec, 0)
    if written then h.files:remove(rec.id) end -- (most jobs that print nothing never had one)
  end
  h.undeleted[rec.id] = true -- (its row goes with the next tick's, or at close)
  if rec.seq > h.seq_kept then -- its seq may be the highest given: kept, so ids never come back
    h.seq_kept = self.seq
    h.db:set_meta(META_SEQ, tostring(self.seq))
  end
end

-- Bytes of finished jobs' output on disk (what maxDiskBytes bounds).
function history.disk_bytes(self)
  return self.history and self.history.done_bytes or 0
end

-- ---- opening: the records of earlier runs -------------------------------------------------

-- Tags from their column (one per line). (gmatch costs 5 µs a row here.)
local function split_tags(s)
  local out, pos = {}, 1
  while pos <= #s do
    local nl = s:find("\n", pos, true) or #s + 1
    out[#out + 1] = s:sub(pos, nl - 1)
    pos = nl + 1
  end
  return out
end

-- A record of an earlier run, cold: only what finds it (its rosters,
-- selectors, retention) and reads its output, from the row's columns; the
-- rest stays JSON text (rec.cold) until warm() (a history of 10,000
-- records opens in a few milliseconds, and costs little memory).
local function cold_record(row)
  local tag_list = split_tags(row.tags)
  return { id = row.id, seq = row.seq, name = row.name, lname = row.name:lower(), status = row.status,
           sessionId = row.session, global = row.global, tags = tag_list, tagset = tags.set(tag_list),
           endedMs = row.ended_ms, disk = { start = row.out_start, size = row.out_bytes },
           moved = true, restored = true, finished = true, saved = true, cold = row.data }
end

-- Fill in a cold record from its JSON. The columns it was found by win
-- (a rename of the job after its row was written: never lost).
function history.warm(rec)
  local text = rec.cold
  if not text then return rec end
  rec.cold = nil
  local d = json.decode(text)
  if type(d) ~= "table" then -- (a row another program damaged: what its columns say, and that)
    d = { command = "?", error = "its stored record could not be read" }
  end
  d = json.normalize(d)
  if d.command == nil and d.argv == nil then d.command = "?" end
  for _, k in ipairs(SAVED) do
    if rec[k] == nil then rec[k] = d[k] end
  end
  rec.base, rec.restarts, rec.ring = rec.base or 0, rec.restarts or 0, rec.ring or 1024 * 1024
  rec.stdin = rec.stdin or "null"
  if d.stop then rec.stop = { reason = d.stop.reason, detail = d.stop.detail, text = d.stop.text } end
  if d.cpuMs or d.memoryPeakBytes then rec.m = { cpuMs = d.cpuMs, memoryPeakBytes = d.memoryPeakBytes } end
  return rec
end

-- A job that was running when its daemon died: ended by that, with its
-- output up to the last flush.
local function died(self, rec)
  local h = self.history
  history.warm(rec)
  rec.status = "failed"
  rec.stop = { reason = "daemon-died" }
  rec.error = states.FAILING_STOP["daemon-died"](rec)
  if h.files then account(h, rec, h.files:size(rec.id)) end -- (what was flushed after its last row)
  -- it ended at its last sign of life: its file's last write, else now
  rec.endedMs = rec.endedMs or (h.files and h.files:mtime_ms(rec.id)) or clock.wall_ms()
  local out = history.source(self, rec)
  if out then rec.ll = history.last_line_of(out) end
end

local function restore(self, h, register)
  local dead = {}
  local ok, err = h.db:load(function(row)
    local rec = cold_record(row)
    h.disk_bytes, h.done_bytes = h.disk_bytes + rec.disk.size, h.done_bytes + rec.disk.size
    if not FINAL[rec.status] then dead[#dead + 1] = rec end
    if rec.seq > self.seq then self.seq = rec.seq end
    register(rec)
  end)
  if not ok then return failed(h, "db", "loading history", err) end
  if h.files then -- files no record owns (a record whose delete did not reach the database)
    for _, id in ipairs(h.files:ids()) do
      if not self.jobs[id] then h.files:remove(id) end
    end
  end
  for _, rec in ipairs(dead) do died(self, rec) end
  if #dead > 0 then h.db:batch(function() for _, rec in ipairs(dead) do history.save(self, rec) end end) end
  return true
end

-- Open the store at cfg.store (a database path; its output files go in
-- "output" beside it) and bring back its records: register(rec) adds one
-- to the engine. Sets self.prefix and self.seq from it.
function history.open(self, path, register)
  local h = { path = path, live = {}, loaded = {}, loaded_order = {}, loaded_bytes = 0, disk_bytes = 0,
              done_bytes = 0, failures = {}, file_failures = {}, dirty = {}, undeleted = {},
              log = function(level, msg) self:log(level, "history: " .. msg) end }
  self.history = h
  local handle, err = db.open(path)
  if not handle then return failed(h, "db", nil, err) end
  local dir = path == ":memory:" and nil or (path:match("^(.*)/[^/]*$") or ".")
  local files, ferr
  if dir then files, ferr = outfiles.new(dir .. "/output") end
  if dir and not files then failed(h, "dir", "output stays in memory", ferr) end
  h.db, h.files = handle, files
  local prefix = handle:meta(META_PREFIX)
  if prefix then self.prefix = prefix else handle:set_meta(META_PREFIX, self.prefix) end
  h.seq_kept = math.tointeger(tonumber(handle:meta(META_SEQ))) or 0
  self.seq = math.max(self.seq, h.seq_kept)
  restore(self, h, register)
  h.timer = self.sched:every(history.FLUSH_MS, function() flush_live(self) end)
end

-- Flush what is left and close the database (at shutdown).
function history.close(self)
  local h = self.history
  if not (h and h.db) then return end
  if h.timer then h.timer:cancel() end
  flush_live(self)
  for rec in pairs(h.loaded) do unload(h, rec) end
  h.db:set_meta(META_SEQ, tostring(self.seq))
  h.db:close()
  h.db = nil
end

-- The last line (cleaned, cut at 200) of a job's ring or a loaded file.
function history.last_line_of(out)
  return text.last_line(text.clean((out:tail(64, "both", 4096)), true), 200)
end

-- ---- what the engine answers ------------------------------------------------------------

-- The store as `daemon status` shows it: { path, records, bytes,
-- outputBytes, failure } (failure: why history is not being saved), or
-- nil without one.
function methods:store_status()
  local h = self.history
  if not h then return nil end
  local st = h.db and h.db:stats() or {}
  return { path = h.path, records = st.records, bytes = st.bytes, outputBytes = h.disk_bytes,
           failure = failure(h) }
end

local function copy(t)
  if not t then return nil end
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

-- The create arguments that start rec's command again (a rerun): as its
-- caller gave them, the inherited environment aside.
function methods:spec_of(rec)
  history.warm(rec)
  local ring = rec.ring ~= self.cfg.ringBytes and rec.ring or nil -- (the default: today's)
  local s = { command = rec.command, argv = copy(rec.argv), name = rec.name, tags = copy(rec.tags), cwd = rec.cwd,
              env = copy(rec.env), global = rec.global or nil, timeoutMs = rec.timeoutMs, outputBytes = ring,
              readyPattern = rec.readyPattern, readyPort = rec.readyPort, readyUrl = rec.readyUrl,
              memoryMax = rec.memoryMax, notifyPattern = rec.notifyPattern }
  if rec.pty then s.pty = true elseif rec.stdin == "pipe" then s.stdin = "pipe" end
  if rec.no_inherit then s.inheritEnv = false end
  return s
end

-- Why history is not being saved, or nil.
function methods:store_failure()
  return self.history and failure(self.history)
end

-- The path of rec's output file, its first cursor and its line count
-- base, when its output is on disk (the search reads files directly).
function methods:output_file(rec)
  local h = self.history
  if not (h and h.files and rec.moved and rec.disk and rec.disk.size > 0) then return nil end
  return h.files:log_path(rec.id), rec.disk.start
end

return history
