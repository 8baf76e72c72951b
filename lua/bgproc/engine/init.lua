-- The engine: a registry of jobs over one bgproc.core loop. It owns ids,
-- the state machine, sessions, the kill protocol (signal the group, wait,
-- KILL what is left, confirm it is gone), timeouts, retention and the
-- plugin hooks. Tools (tools.lua) are thin layers over the methods here.
--
-- States: pending -> running -> completed | failed | cancelled
--   pending    the record exists, exec not yet confirmed
--   completed  exit code 0
--   failed     non-zero exit, a signal we did not send, a spawn error, a timeout
--   cancelled  we stopped it, and its whole group is confirmed gone
local core = require "bgproc.core"
local uv = require "luv"
local config = require "bgproc.engine.config"
local errors = require "bgproc.lib.errors"
local filter = require "bgproc.engine.select"
local json = require "bgproc.lib.json"
local plugins = require "bgproc.plugins.host"
local sched = require "bgproc.engine.sched"
local tags = require "bgproc.engine.tags"
local text = require "bgproc.lib.text"
local tools = require "bgproc.tools"

local manager = {}
local M = {}
M.__index = M

local FINAL = filter.FINAL

-- ---- small helpers ---------------------------------------------------------

local function wall_ms()
  local sec, usec = uv.gettimeofday()
  return sec * 1000 + usec // 1000
end

-- ISO 8601 UTC time of ms (wall clock milliseconds; default: now).
local function iso(ms)
  ms = math.floor(ms or wall_ms())
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. (".%03dZ"):format(ms % 1000)
end
manager.iso = iso

local ID_CHARS = "abcdefghijkmnpqrstuvwxyz23456789"

local function random_prefix()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(2) or tostring(os.time()):sub(-2)
  if f then f:close() end
  local out = {}
  for i = 1, 2 do
    local b = bytes:byte(i) % #ID_CHARS + 1
    out[i] = ID_CHARS:sub(b, b)
  end
  return table.concat(out)
end

-- sh builtins and keywords: a command starting with one needs the shell
local SHELL_WORDS = {}
for w in ([[. : [ alias bg break cd command continue echo eval exec exit export false
  fc fg getopts hash jobs kill local printf pwd read readonly return set shift test
  times trap true type ulimit umask unalias unset wait case do done elif else esac fi
  for function if in then until while !]]):gmatch("%S+") do SHELL_WORDS[w] = true end

-- A shell string that is just words (no quoting, expansion, redirection,
-- pipes, globs...) runs without a shell: exec errors then come back at
-- once, and a kill reaches the program itself. Returns argv or nil.
local function simple_argv(command)
  if not command:find("^[%w%._/:=,@%%+%-%s]+$") then return nil end
  local argv = {}
  for word in command:gmatch("%S+") do argv[#argv + 1] = word end
  if #argv == 0 or SHELL_WORDS[argv[1]] or argv[1]:find("=", 1, true) then return nil end
  return argv
end

local function default_name(args)
  local s = args.command or table.concat(args.argv, " ")
  s = s:gsub("%s+", " ")
  if #s > 60 then s = s:sub(1, 57) .. "..." end
  return s
end

-- ---- construction ------------------------------------------------------------

-- bgproc.new(opts): see init.lua for the options.
function manager.new(opts)
  opts = opts or {}
  local cfg = config.load(opts)
  local self = setmetatable({
    cfg = cfg,
    jobs = {},            -- id -> record
    order = {},           -- records in creation order (a roster, see below)
    by_tag = {},          -- tag -> roster of the records with that tag
    by_session = {},      -- session id -> roster of its records
    seq = 0,
    prefix = random_prefix(),
    sessions = {},        -- id -> { id, openedAt }
    by_job = setmetatable({}, { __mode = "k" }), -- core job -> record
    running = 0,
    nfinished = 0,
    done_q = { first = 1, last = 0 }, -- finished records, oldest first
    closed = false,
    log_fn = opts.log,
    listeners = {},       -- on_event functions (see "notices")
  }, M)
  self.tag_policy = setmetatable(cfg.tags or {}, { __index = tags.policy })
  self.sched = sched.new(function(msg) self:log("error", msg) end)
  self.core = assert(core.new { ring = cfg.ringBytes, subreaper = opts.subreaper or false,
                                cgroup = cfg.cgroup ~= false })
  local dirs = {}
  local user = config.dir()
  if user then dirs[#dirs + 1] = user .. "/plugins" end
  for _, d in ipairs(cfg.pluginDirs) do dirs[#dirs + 1] = d end
  self.plugins = plugins.new(self:plugin_api(), function(level, msg) self:log(level, msg) end, dirs)
  for _, spec in ipairs(cfg.plugins) do self.plugins:add(spec, cfg) end
  self.retention_timer = self.sched:every(60000, function() self:retain() end)
  if opts.luv ~= false then self:attach_luv() end
  return self
end

function M:log(level, msg)
  if self.log_fn then
    self.log_fn(level, msg)
  elseif level == "error" or level == "warn" then
    io.stderr:write("bgproc: ", level, ": ", msg, "\n")
  end
end

-- ---- driving: luv, or blocking steps --------------------------------------

-- Watch the core's fd and the next timer on luv's default loop, so a host
-- running uv.run() needs nothing else. The handles keep the loop alive
-- only while there is work (running jobs, waiting tasks).
function M:attach_luv()
  if self.poll then return end
  self.poll = uv.new_poll(self.core:fd())
  self.poll:start("r", function() self:guarded(self.dispatch) end)
  self.timer = uv.new_timer()
  self:after_activity()
end

-- Stop watching. The handles are stopped and unreferenced, not closed:
-- closing needs a turn of the loop to finish, which the host may never
-- run; luv closes stopped handles safely when the Lua state closes.
function M:detach_luv()
  if self.poll then
    self.poll:stop()
    self.poll:unref()
    self.timer:stop()
    self.timer:unref()
  end
  self.poll, self.timer = nil, nil
end

function M:after_activity()
  self.sched:poke()
  if not self.timer then return end
  local ms = self.sched:next_in()
  if ms then
    self.timer:start(math.max(1, math.ceil(ms)), 0, function() self:guarded(self.tick) end)
  else
    self.timer:stop()
  end
  local busy = self.running > 0 or not self.sched:idle() or self.core:count() > 0
  if busy then
    self.poll:ref()
    self.timer:ref()
  else
    self.poll:unref()
    self.timer:unref()
  end
end

-- Run method(self) from a loop callback: an engine error is logged, never
-- raised into luv (which would end the host).
function M:guarded(method)
  local ok, err = xpcall(method, debug.traceback, self)
  if not ok then self:log("error", "engine: " .. tostring(err)) end
end

-- Run due timers.
function M:tick()
  if self.closed then return end
  self.sched:run_due()
  self:after_activity()
end

-- Drain the core without blocking and handle its events.
function M:dispatch()
  if self.closed then return end
  self:handle(self.core:dispatch())
  self.sched:run_due()
  self:after_activity()
end

-- Block up to ms for events or timers, then handle them (hosts with no loop).
function M:step(ms)
  if self.closed then return end
  local next_in = self.sched:next_in()
  local wait = ms or 1000
  if next_in and next_in < wait then wait = next_in end
  self:handle(self.core:wait(math.max(0, math.floor(wait))))
  self.sched:run_due()
  self:after_activity()
end

-- Drive everything until pred() is true or timeout_ms passes. Returns
-- whether pred() held.
function M:run_until(pred, timeout_ms)
  local deadline = self.sched.now() + (timeout_ms or math.huge)
  while not pred() do
    local left = deadline - self.sched.now()
    if left <= 0 or self.closed then return pred() and true or false end
    self:step(math.min(left, 100))
  end
  return true
end

-- ---- rosters and indexes ---------------------------------------------------------

-- A roster is a list of records in creation order (by rec.seq). Removed
-- records stay in it as holes (callers skip rec.removed) until they are
-- many: removing one costs O(1) amortized.

-- Add rec to a roster. A record usually comes last (it is new); a tag a
-- plugin adds to an older record puts it in its place instead.
local function roster_add(list, rec)
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
local function roster_forget(list)
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

-- index: key -> roster (by_tag, by_session).
local function index_add(index, key, rec)
  local list = index[key]
  if not list then
    list = {}
    index[key] = list
  end
  roster_add(list, rec)
end

-- A record of `key` was removed: a roster of holes only is dropped, so
-- the tags and sessions of the past do not pile up.
local function index_forget(index, key)
  if roster_forget(index[key]) then index[key] = nil end
end

local function index(self, rec)
  for _, tag in ipairs(rec.tags) do index_add(self.by_tag, tag, rec) end
  index_add(self.by_session, rec.sessionId, rec)
end

local function unindex(self, rec)
  for _, tag in ipairs(rec.tags) do index_forget(self.by_tag, tag) end
  index_forget(self.by_session, rec.sessionId)
end

local NONE = {} -- the roster of a key no record has (never added to)

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
-- filter.selector) can match: that of its session, of one of its
-- allTags, of its tags, else all the records.
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

-- ---- records -------------------------------------------------------------------

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
    c[iso_key] = iso(ms)
  end
  return c[iso_key]
end

-- The last line of output, recomputed only when output was added.
local function last_line(rec, head)
  if rec.ll_head ~= head then
    rec.ll_head = head
    rec.ll = text.last_line(text.clean((rec.job:tail(64, "both", 4096)), true), 200)
  end
  return rec.ll
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

local function output_done(rec)
  return not rec.job or rec.job:info().eof
end

-- A settled record's public form is kept as a list: its values in the
-- order of KEPT, then a table of the rest (fields most records lack), if
-- any. Copying from a list is quicker than from a table of names.
local KEPT = { "id", "name", "status", "pid", "sessionId", "global", "tags", "stdin", "command", "argv",
               "startedAt", "endedAt", "durationMs", "exitCode", "outputBytes", "droppedBytes", "lastLine" }
local REST = #KEPT + 1
local KEPT_INDEX = {}
for i, k in ipairs(KEPT) do KEPT_INDEX[k] = i end

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
  kept[KEPT_INDEX.tags] = rec.tags
  kept[KEPT_INDEX.argv] = r.argv and rec.argv
  if rest then rest.notes = notes_copy(rest.notes) end
  kept[REST] = rest
  return kept
end

-- A new public record from a kept one: a fresh table, lists and notes
-- copied too, so the caller may change it freely. p[i] holds KEPT[i].
local function copy_public(p)
  local r = {
    id = p[1], name = p[2], status = p[3], pid = p[4], sessionId = p[5], global = p[6],
    tags = array_copy(p[7]), stdin = p[8], command = p[9], argv = p[10] and array_copy(p[10]),
    startedAt = p[11], endedAt = p[12], durationMs = p[13], exitCode = p[14],
    outputBytes = p[15], droppedBytes = p[16],
  }
  if p[17] then r.lastLine = p[17] end
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
  local job, started, command = rec.job, rec.startedMs, rec.command
  local tail, head = 0, 0
  if job then tail, head = job:offsets() end
  -- the fields most records have, in one constructor of 16 (a table of
  -- 16 slots: the rest, rarer, may grow it)
  local r = {
    id = rec.id, name = rec.name, status = rec.status, pid = rec.pid,
    sessionId = rec.sessionId, global = rec.global, tags = array_copy(rec.tags), stdin = rec.stdin,
    command = command, argv = not command and array_copy(rec.argv) or nil,
    startedAt = cached_iso(rec, "startedMs", "startedAt"), endedAt = cached_iso(rec, "endedMs", "endedAt"),
    durationMs = started and math.floor((rec.endedMs or now or wall_ms()) - started) or nil,
    exitCode = rec.exitCode, outputBytes = rec.base + head, droppedBytes = rec.base + tail,
  }
  if job then r.lastLine = last_line(rec, head) end
  if rec.cwd then r.cwd = rec.cwd end
  if rec.signal then r.signal = rec.signal end
  if rec.error then r.error = rec.error end
  if rec.restarts > 0 then r.restarts = rec.restarts end
  if rec.readyPattern then r.ready = rec.ready end
  local stop = rec.stop
  if stop then
    r.stopReason = stop.reason
    if not FINAL[rec.status] then r.stopping = true end
  end
  if FINAL[rec.status] then r.endReason = manager.end_reason(rec) end
  if rec.notifyPattern then r.notifyPattern = rec.notifyPattern end
  if rec.notes then r.notes = notes_copy(rec.notes) end
  return r
end

-- Whether a record's public form can no longer change by itself: it has
-- ended and all its output is in. What else changes it (notes, tags, a
-- stop, a restart) calls unsettle().
local function settled(rec)
  return rec.finished and FINAL[rec.status] and output_done(rec)
end

-- The record changed: its cached public form is stale.
local function unsettle(rec)
  rec.pub = nil
end

-- The record as tools and plugins see it. A settled record's public form
-- is built once and kept (rec.pub); callers get copies of it, which they
-- may change freely (a list of thousands of records costs half as much).
local function public_record(self, rec, now)
  local pub = rec.pub
  -- (pub[3], its status: a change of state that forgot unsettle() is seen)
  if pub and pub[3] == rec.status then return copy_public(pub) end
  local r = build_public(rec, now)
  if settled(rec) then rec.pub = keep_public(rec, r) end
  return r
end

function M:record(id)
  local rec = self.jobs[id]
  return rec and public_record(self, rec)
end

function M:get(id)
  return self.jobs[id]
end

-- The records for which pred(rec) holds, in creation order. `within`: a
-- roster to look in (default: all the records).
function M:each(pred, within)
  local out = {}
  for _, rec in ipairs(within or self.order) do
    if not rec.removed and pred(rec) then out[#out + 1] = rec end
  end
  return out
end

-- The records selector s (see filter.selector) matches, in creation
-- order; the indexes limit the records looked at.
function M:select(s)
  if s.processId then
    local rec = self.jobs[s.processId]
    return rec and s.match(rec) and { rec } or {}
  end
  return self:each(s.match, candidates(self, s))
end

function M:public(rec)
  return public_record(self, rec)
end

-- Public records of a list of records (a JSON array).
function M:publics(recs)
  local now = wall_ms()
  local out = json.array()
  for i, rec in ipairs(recs) do out[i] = public_record(self, rec, now) end
  return out
end

-- What on_output and api.jobs give plugins: who the job is and its
-- state, without a full record's costs (reading output, copying notes).
local function light_record(rec)
  return { id = rec.id, name = rec.name, status = rec.status, pid = rec.pid, sessionId = rec.sessionId,
           global = rec.global, stdin = rec.stdin, tags = table.move(rec.tags, 1, #rec.tags, 1, {}) }
end

-- Counts for the daemon's status.
function M:stats()
  local jobs, sessions = 0, 0
  for _ in pairs(self.jobs) do jobs = jobs + 1 end
  for _ in pairs(self.sessions) do sessions = sessions + 1 end
  return { jobs = jobs, running = self.running, sessions = sessions }
end

-- Let go of a record's core job: its ring, and anything left of its group.
local function drop_job(self, rec)
  if not rec.job then return end
  self.by_job[rec.job] = nil
  rec.job:close()
  rec.job = nil
  unsettle(rec) -- its output counts are now rec.base
end

-- Forget a finished record: free its ring, end anything left of its group.
function M:remove(rec)
  if rec.removed then return end
  rec.removed = true
  if rec.finished then self.nfinished = self.nfinished - 1 end
  self.jobs[rec.id] = nil
  drop_job(self, rec)
  roster_forget(self.order)
  unindex(self, rec)
end

-- Retention: keep at most maxFinished finished records, none older than
-- maxAgeMs (counted from when they ended). Finished records queue up in
-- the order they finished, so this costs O(records removed).
function M:retain()
  local r = self.cfg.retention
  local max_n, max_age = r.maxFinished, r.maxAgeMs
  local q = self.done_q
  local now = wall_ms()
  while q.first <= q.last do
    local rec = q[q.first]
    local valid = rec.qi == q.first and not rec.removed and FINAL[rec.status]
    local expired = valid and ((max_n and self.nfinished > max_n)
      or (max_age and rec.endedMs and now - rec.endedMs > max_age))
    if valid and not expired then break end
    q[q.first] = nil
    q.first = q.first + 1
    if valid then self:remove(rec) end
  end
end

-- ---- output --------------------------------------------------------------------

-- Read a record's output from `since` (record cursor space: it continues
-- across restarts). Returns data, next cursor, bytes dropped since `since`.
function M:read(rec, since, max, stream)
  local job = rec.job
  if not job then return "", rec.base, math.max(0, rec.base - (since or 0)) end
  since = since or 0
  local lost = 0
  local local_since = since - rec.base
  if local_since < 0 then
    lost = -local_since
    local_since = 0
  end
  local data, next, dropped = job:read(local_since, max, stream)
  return data, rec.base + next, lost + dropped
end

-- Complete lines of output after a cursor, cleaned, for pattern scanners.
-- A scanner is { rec, cursor, partial }; returns a list of
-- { line = ..., cursor = offset after the line }.
function M:scan(scanner)
  local rec = scanner.rec
  local out = {}
  while true do
    local data, next = self:read(rec, scanner.cursor, 256 * 1024)
    if #data == 0 then break end
    local buf = scanner.partial .. data
    local base = next - #buf -- cursor of buf's first byte
    local pos = 1
    while true do
      local nl = buf:find("\n", pos, true)
      if not nl then break end
      out[#out + 1] = { line = text.clean(buf:sub(pos, nl - 1), true), cursor = base + nl }
      pos = nl + 1
    end
    scanner.partial = buf:sub(pos)
    if #scanner.partial > 65536 then -- a line with no end: judge what we have
      out[#out + 1] = { line = text.clean(scanner.partial, true), cursor = next }
      scanner.partial = ""
    end
    scanner.cursor = next
  end
  return out
end

-- When the job has finished and its output is complete, the partial last
-- line counts as a line.
function M:scan_rest(scanner)
  if scanner.partial == "" then return nil end
  local line = { line = text.clean(scanner.partial, true), cursor = scanner.cursor }
  scanner.partial = ""
  return line
end

-- The first new line of a scanner that regex re matches ({ line, cursor }),
-- or nil. at_end: the output is complete, so the partial last line
-- counts too.
function M:scan_match(scanner, re, at_end)
  local lines = self:scan(scanner)
  if at_end then lines[#lines + 1] = self:scan_rest(scanner) end
  for _, l in ipairs(lines) do
    if re:test(l.line) then return l end
  end
end

local finalize_stopped -- forward: the stop protocol's

-- Nothing of the job is left in its cgroup (true without one): no
-- process that left its group (setsid) still runs there.
local function cgroup_empty(job)
  if not job:cgroup() then return true end
  local list = job:escaped()
  return list ~= nil and #list == 0
end

-- The job's whole process group is confirmed gone, and with a cgroup
-- whatever left the group too.
local function gone(rec)
  local job = rec.job
  return not job or (not job:alive() and job:members() == 0 and cgroup_empty(job))
end

-- All of the job's output is in (its pipes reached EOF).
function M:output_done(rec)
  return output_done(rec)
end

-- The job has reached a final state.
function M:final(rec)
  return FINAL[rec.status] == true
end

-- ---- why a job ended ------------------------------------------------------------

local STOPPED_BY = {
  kill = function() return "killed by killProcesses" end,
  session = function(stop) return "session ended" .. (stop.detail and (" (" .. stop.detail .. ")") or "") end,
  timeout = function(_, rec) return ("timeout after %d ms"):format(rec.timeoutMs or 0) end,
  shutdown = function(stop) return "daemon stopped" .. (stop.detail and (" (" .. stop.detail .. ")") or "") end,
}

-- One line saying why a finished job ended, for people and agents:
-- "exited with code 3", "killed by killProcesses", "session ended (shell
-- 4321 exited)", "timeout after 5000 ms". A stop given a detail uses it.
function manager.end_reason(rec)
  local stop = rec.stop
  local stopped = stop and (stop.text or (STOPPED_BY[stop.reason] or tostring)(stop, rec))
  if rec.status == "cancelled" or (rec.status == "failed" and stopped and stop.reason == "timeout") then
    return stopped or "cancelled"
  end
  local exited = rec.error or (rec.exitCode and ("exited with code %d"):format(rec.exitCode)) or rec.status
  if stopped then return exited .. "; what it left running was stopped: " .. stopped end
  return exited
end

-- ---- notices --------------------------------------------------------------------
-- Owners are told when a job ends, becomes ready, or prints a line
-- matching its notifyPattern: listeners get one event table each.

-- Add a listener fn(event); returns a function that removes it.
function M:on_event(fn)
  self.listeners[#self.listeners + 1] = fn
  return function()
    for i, f in ipairs(self.listeners) do
      if f == fn then table.remove(self.listeners, i) return end
    end
  end
end

local NOTICE_LINES = 5 -- the last lines an "ended" event carries

local function emit(self, rec, kind, fields)
  if #self.listeners == 0 then return end
  self.event_seq = (self.event_seq or 0) + 1
  local ev = { event = kind, processId = rec.id, name = rec.name, sessionId = rec.sessionId,
               global = rec.global, status = rec.status, at = iso(), seq = self.event_seq }
  for k, v in pairs(fields or {}) do ev[k] = v end
  for _, fn in ipairs(self.listeners) do
    local ok, err = pcall(fn, ev)
    if not ok then self:log("error", "event listener: " .. tostring(err)) end
  end
end

local function emit_ended(self, rec)
  if rec.ended_told then return end
  rec.ended_told = true
  local stop = rec.stop
  local last = rec.job and text.clean((rec.job:tail(NOTICE_LINES, "both", 4096)), true) or ""
  emit(self, rec, "ended", { exitCode = rec.exitCode, signal = rec.signal, stopReason = stop and stop.reason,
    endReason = manager.end_reason(rec), stoppedBy = stop and stop.by, lastLines = last })
end

-- The "ended" event waits for the output to be complete (its last lines),
-- or NOTICE_WAIT_MS at most when something the job left holds its pipes.
local NOTICE_WAIT_MS = 200

local function tell_ended(self, rec)
  -- a job that never started was its caller's error, answered at once
  if #self.listeners == 0 or rec.ended_told or not rec.job then return end
  if output_done(rec) then return emit_ended(self, rec) end
  if not rec.ended_timer then
    rec.ended_timer = self.sched:after(NOTICE_WAIT_MS, function()
      rec.ended_timer = nil
      emit_ended(self, rec)
    end)
  end
end

local NOTIFY_EVERY_MS = 1000 -- a notifyPattern tells at most once a second per job

local function check_notify(self, rec, at_end)
  if not rec.notify_re then return end
  local lines = self:scan(rec.notify_scan)
  if at_end then lines[#lines + 1] = self:scan_rest(rec.notify_scan) end
  local now = self.sched.now()
  for _, l in ipairs(lines) do
    if rec.notify_re:test(l.line) then
      if now >= (rec.notify_next or 0) then
        emit(self, rec, "matched", { line = l.line, pattern = rec.notifyPattern, cursor = l.cursor,
                                      skipped = rec.notify_skipped })
        rec.notify_next, rec.notify_skipped = now + NOTIFY_EVERY_MS, nil
      else
        rec.notify_skipped = (rec.notify_skipped or 0) + 1
      end
    end
  end
end

-- ---- events ---------------------------------------------------------------------

-- A job's timeout bounds its whole group: the timer stays while anything
-- of the group is left (a leader that exited at once may leave a child
-- holding its output) and goes once all of it is gone.
local function drop_timeout(rec)
  if rec.timeout_timer and gone(rec) then
    rec.timeout_timer:cancel()
    rec.timeout_timer = nil
  end
end

-- at_end: the job has ended, so a last line without "\n" counts too.
local function check_ready(self, rec, at_end)
  if not rec.ready_re or rec.ready then return end
  local l = self:scan_match(rec.ready_scan, rec.ready_re, at_end)
  if l then
    rec.ready, rec.readyLine = true, l.line
    emit(self, rec, "ready", { line = l.line })
  end
end

local function feed_plugins(self, rec)
  if not self.plugins:has("on_output") then return end
  local data, next, dropped = self:read(rec, rec.fed or 0)
  rec.fed = next
  if #data > 0 then self.plugins:call("on_output", light_record(rec), data, dropped) end
end

-- The final state is set: hooks, memory, retention.
function M:finish(rec)
  if rec.finished then return end
  rec.finished = true
  self.nfinished = self.nfinished + 1
  local q = self.done_q
  q.last = q.last + 1
  q[q.last] = rec
  rec.qi = q.last
  drop_timeout(rec)
  if rec.job then self.running = self.running - 1 end -- launched, so counted
  rec.endedMs = rec.endedMs or wall_ms()
  if rec.job then
    check_ready(self, rec, true)
    if rec.notify_re and output_done(rec) then check_notify(self, rec, true) end
  end
  tell_ended(self, rec)
  if self.plugins:has("on_exit") then self.plugins:call("on_exit", public_record(self, rec)) end
  if rec.job and output_done(rec) then rec.job:shrink() end
  local max_n = self.cfg.retention.maxFinished
  if max_n and self.nfinished > max_n and not self.retain_soon then
    -- next turn: whoever is waiting on this record gets to see it final
    self.retain_soon = self.sched:after(0, function()
      self.retain_soon = nil
      self:retain()
    end)
  end
end

local function on_exit(self, rec)
  local code, sig = rec.job:exit()
  rec.exitCode, rec.signal = code, sig
  rec.endedMs = wall_ms()
  if rec.stop then
    -- the stop protocol decides, once the group is gone; if it already
    -- gave up (a process stuck in the kernel), this late death settles it
    local task = rec.stop.task
    if (not task or task.done) and gone(rec) then finalize_stopped(self, rec) end
    return
  end
  if code == 0 then
    rec.status = "completed"
  else
    rec.status = "failed"
    rec.error = code and ("exited with code %d"):format(code)
      or sig and ("killed by signal %s"):format(sig)
      or "exit status unknown (reaped by another process)"
  end
  self:finish(rec)
end

function M:handle(events)
  for _, ev in ipairs(events) do
    local rec = self.by_job[ev.job]
    if rec then
      if ev.output then
        check_ready(self, rec)
        check_notify(self, rec)
        feed_plugins(self, rec)
      end
      if ev.exit then on_exit(self, rec) end
      if ev.eof and rec.finished and rec.job then
        check_notify(self, rec, true)
        if rec.ended_timer then
          rec.ended_timer:cancel()
          rec.ended_timer = nil
          emit_ended(self, rec)
        end
        rec.job:shrink()
      end
      if rec.finished then drop_timeout(rec) end
    end
  end
end

-- ---- starting jobs ----------------------------------------------------------------

local function spawn_options(self, rec)
  local o = { cwd = rec.cwd, env = rec.env, ring = rec.ring, clear_env = rec.clear_env }
  if rec.pty then o.pty = true elseif rec.stdin == "pipe" then o.stdin = "pipe" end
  if rec.command then
    local argv = simple_argv(rec.command)
    if argv then o.argv = argv else o.command = rec.command end
  else
    o.argv = rec.argv
  end
  return o
end

-- The core's "EAGAIN: spawn 'x' (clone): Resource temporarily unavailable"
-- does not say which resource: name the likely one.
local function explain_spawn_error(msg, ename)
  if ename == "EAGAIN" and msg:find("(clone)", 1, true) then
    return msg .. " (too many processes: the user's process limit, ulimit -u, or a pids limit)"
  end
  return msg
end

-- Start (or restart) the record's process. Returns true or nil, err.
function M:launch(rec)
  local ok, job, msg, ename = pcall(self.core.spawn, self.core, spawn_options(self, rec))
  if not ok then job, msg = nil, "spawn: " .. tostring(job) end -- arguments the core refused
  if not job then
    msg = explain_spawn_error(msg, ename)
    rec.status = "failed"
    rec.error = msg
    rec.endedMs = wall_ms()
    self:finish(rec)
    return errors.fail("spawn_failed", "%s", msg)
  end
  local info = job:info()
  rec.job = job
  rec.ll_head = nil
  rec.pid = job:pid()
  rec.startedMs = rec.startedMs or info.started
  rec.status = "running"
  rec.finished = false
  rec.exitCode, rec.signal, rec.error, rec.endedMs = nil, nil, nil, nil
  self.running = self.running + 1
  self.by_job[job] = rec
  if rec.ready_re then rec.ready_scan = { rec = rec, cursor = rec.base, partial = "" } end
  if rec.notify_re then rec.notify_scan = { rec = rec, cursor = rec.base, partial = "" } end
  rec.ended_told = nil
  rec.fed = rec.base
  if rec.timeout_timer then rec.timeout_timer:cancel() end -- a previous run's
  rec.timeout_timer = nil
  if rec.timeoutMs then
    rec.timeout_timer = self.sched:after(rec.timeoutMs, function()
      rec.timeout_timer = nil
      -- an exit already in the pipe is not a timeout; what its leader
      -- left running is stopped all the same
      self:handle(self.core:dispatch())
      if not FINAL[rec.status] or not gone(rec) then
        self.sched:task(function()
          self:stop({ rec }, { reason = "timeout" })
        end)
      end
    end)
  end
  if self.plugins:has("on_start") then self.plugins:call("on_start", public_record(self, rec)) end
  self:after_activity()
  return true
end

-- Create a job from validated arguments (see tools.lua). Returns the
-- public record, or nil and an error.
function M:create(args, ctx)
  if self.closed then return errors.fail("conflict", "the manager is shut down") end
  ctx = ctx or {}
  local refused
  args, refused = self.plugins:create(args, ctx)
  if not args then return errors.fail("refused", "%s", refused) end
  if (args.command == nil) == (args.argv == nil) then
    return errors.fail("invalid_argument", "give exactly one of 'command' (a shell string) or 'argv' (a list)")
  end
  local tag_list, err = tags.normalize(args.tags, self.tag_policy)
  if not tag_list then return errors.fail("invalid_argument", "'tags': %s", err) end
  local ring = args.outputBytes or self.cfg.ringBytes
  if ring > self.cfg.maxRingBytes then
    return errors.fail("invalid_argument", "'outputBytes' must be <= %d (maxRingBytes), got %d",
      self.cfg.maxRingBytes, ring)
  end
  local ready_re, notify_re
  if args.readyPattern then
    ready_re, err = tools.regex("readyPattern", args.readyPattern)
    if not ready_re then return nil, err end
  end
  if args.notifyPattern then
    notify_re, err = tools.regex("notifyPattern", args.notifyPattern)
    if not notify_re then return nil, err end
  end
  if self.running >= self.cfg.maxRunning then
    return errors.fail("limit", "%d jobs are running, the most allowed (maxRunning)", self.running)
  end
  local sid = ctx.sessionId or "default"
  if not self.sessions[sid] then self:session_open(sid) end
  self.seq = self.seq + 1
  local rec = {
    id = ("%s-%d"):format(self.prefix, self.seq), seq = self.seq,
    name = args.name or default_name(args),
    command = args.command, argv = args.argv,
    cwd = args.cwd, env = args.env, clear_env = args.inheritEnv == false,
    sessionId = sid, global = args.global == true,
    tags = tag_list, tagset = tags.set(tag_list),
    stdin = args.pty and "pty" or args.stdin or "null",
    pty = args.pty == true, ring = ring,
    timeoutMs = args.timeoutMs,
    readyPattern = args.readyPattern, ready_re = ready_re,
    notifyPattern = args.notifyPattern, notify_re = notify_re,
    status = "pending", base = 0, restarts = 0,
  }
  rec.lname = rec.name:lower() -- for name filters
  if ready_re then rec.ready = false end
  self.jobs[rec.id] = rec
  roster_add(self.order, rec)
  index(self, rec)
  local ok, lerr = self:launch(rec)
  if not ok then
    lerr.processId = rec.id
    return nil, lerr
  end
  return public_record(self, rec)
end

-- Start a finished record again under the same id (the restart plugin).
-- Its output cursor continues where the previous run's ended.
function M:respawn(rec)
  if not FINAL[rec.status] then return errors.fail("conflict", "job %s is still %s", rec.id, rec.status) end
  if rec.removed then return errors.fail("not_found", "job %s was removed", rec.id) end
  if self.closed or self.closing then return errors.fail("conflict", "the manager is shut down") end
  if rec.no_restart or rec.stop then
    return errors.fail("conflict", "job %s was stopped (killed, or its session ended)", rec.id)
  end
  if not rec.global and not self.sessions[rec.sessionId] then
    return errors.fail("conflict", "the session of job %s has ended", rec.id)
  end
  if not gone(rec) then
    return errors.fail("conflict", "processes of job %s are still running", rec.id)
  end
  if self.running >= self.cfg.maxRunning then
    return errors.fail("limit", "%d jobs are running, the most allowed (maxRunning)", self.running)
  end
  if rec.ended_timer then -- a restart within NOTICE_WAIT_MS: tell the last run's end now
    rec.ended_timer:cancel()
    rec.ended_timer = nil
    emit_ended(self, rec)
  end
  if rec.job then
    local _, head = rec.job:offsets()
    rec.base = rec.base + head
    drop_job(self, rec)
  end
  rec.stop = nil
  unsettle(rec)
  if rec.finished then
    rec.finished = false
    self.nfinished = self.nfinished - 1
  end
  rec.restarts = rec.restarts + 1
  rec.startedMs = nil
  if rec.ready_re then rec.ready, rec.readyLine = false, nil end
  rec.status = "pending"
  return self:launch(rec)
end

-- ---- stopping jobs ---------------------------------------------------------------


-- The final state of a record we stopped, once its group is gone.
function finalize_stopped(self, rec)
  if FINAL[rec.status] then return end
  if rec.stop.reason == "timeout" then
    rec.status = "failed"
    rec.error = ("timed out after %d ms"):format(rec.timeoutMs)
  else
    rec.status = "cancelled"
    rec.error = nil
  end
  rec.endedMs = rec.endedMs or wall_ms()
  self:finish(rec)
end

-- Processes of each job outside its group (setsid...) seen so far, by
-- pid: noted before the first signal (without a cgroup they are found
-- through their parents, which the kill ends) and again at the KILL step.
-- One /proc scan serves the whole batch.
local function note_escaped(recs)
  local jobs, owners = {}, {}
  for _, rec in ipairs(recs) do
    if rec.job then jobs[#jobs + 1], owners[#owners + 1] = rec.job, rec end
  end
  if #jobs == 0 then return end
  for i, list in ipairs(core.escaped(jobs) or {}) do
    local stop = owners[i].stop
    for _, p in ipairs(list) do
      if not stop.escaped[p.pid] then
        stop.escaped[p.pid] = p.command
        stop.escaped_order[#stop.escaped_order + 1] = p.pid
      end
    end
  end
end

local function alive(pid)
  local f = io.open(("/proc/%d/stat"):format(pid))
  if not f then return false end
  local st = f:read("a"):match("%) (%a)")
  f:close()
  return st ~= nil and st ~= "Z" and st ~= "X"
end

-- The escaped processes of stopped records, for the kill result:
-- { processId, pid, command, killed } (killed: ended through the job's
-- cgroup; false: left running, there was none).
local function escaped_report(recs)
  local out = json.array()
  for _, rec in ipairs(recs) do
    local esc = rec.stop and rec.stop.escaped
    for _, pid in ipairs(esc and rec.stop.escaped_order or {}) do
      out[#out + 1] = { processId = rec.id, pid = pid, command = esc[pid],
                        killed = rec.stop.cgroup and not alive(pid) or false }
    end
  end
  return out
end

-- The stop protocol for a batch, in a task of its own so that no caller
-- (a cancelled request, a closed connection) can cut it short: wait
-- graceMs, KILL what is left, wait for every job to be gone. With a
-- cgroup, processes that left their group got the signal too, are waited
-- for (gone() counts them), and die at the KILL step through the job's
-- cgroup.
local function stop_protocol(self, targets, grace)
  local function all_gone()
    for _, rec in ipairs(targets) do if not gone(rec) then return false end end
    return true
  end
  if not all_gone() and grace > 0 then self.sched:await(all_gone, grace, 20) end
  if not all_gone() then
    note_escaped(targets)
    for _, rec in ipairs(targets) do
      if not gone(rec) then
        rec.job:kill("KILL")
        if rec.job:cgroup() then rec.job:kill_cgroup() end
      end
    end
    self.sched:await(all_gone, 5000, 20)
  end
  for _, rec in ipairs(targets) do
    if gone(rec) then finalize_stopped(self, rec) end
  end
end

-- Inside a task: signal each record's group (TERM by default), wait
-- graceMs, KILL what is left, and wait until every group is confirmed
-- empty. opts: signal, graceMs, reason ("kill", "timeout", "session",
-- "shutdown"), detail (who or what: "shell 4321 exited"), by (the
-- session that asked, if any). Returns lists of ids: stopped, already finished, and
-- { processId, message } errors, and the processes that had left the
-- stopped jobs' groups (see escaped_report). Stopped jobs are never
-- restarted.
function M:stop(recs, opts)
  opts = opts or {}
  local sig = opts.signal or "TERM"
  local grace = opts.graceMs or self.cfg.graceMs
  local reason = opts.reason or "kill"
  local targets, finished = {}, json.array()
  for _, rec in ipairs(recs) do
    rec.no_restart = true
    if FINAL[rec.status] and gone(rec) then
      finished[#finished + 1] = rec.id
    else
      targets[#targets + 1] = rec
      if not rec.stop then
        rec.stop = { reason = reason, detail = opts.detail, by = opts.by, escaped = {}, escaped_order = {} }
      end
      unsettle(rec)
    end
  end
  note_escaped(targets)
  for _, rec in ipairs(targets) do
    local job = rec.job
    if job then
      job:kill(sig)
      if job:cgroup() then
        rec.stop.cgroup = true -- its escapees end with it
        job:signal_escaped(sig)
      end
    end
  end
  local cut_short = false
  if #targets > 0 then
    local task = self.sched:task(stop_protocol, self, targets, grace)
    for _, rec in ipairs(targets) do rec.stop.task = task end
    if not task.done then
      local ok, why = self.sched:await(function() return task.done end)
      cut_short = not ok and why == "cancelled"
    end
  end
  local stopped, errs = json.array(), json.array()
  for _, rec in ipairs(targets) do
    if gone(rec) then
      finalize_stopped(self, rec)
      stopped[#stopped + 1] = rec.id
    else
      errs[#errs + 1] = { processId = rec.id, message = cut_short
        and "still stopping: the request was cancelled, the stop goes on"
        or ("process group %d is still alive after SIGKILL"):format(rec.pid or -1) }
    end
  end
  return stopped, finished, errs, escaped_report(targets)
end

-- ---- sessions ---------------------------------------------------------------------

function M:session_open(id)
  assert(type(id) == "string" and id ~= "", "session id must be a non-empty string")
  if self.sessions[id] then return self.sessions[id] end
  local s = { id = id, openedAt = wall_ms() }
  self.sessions[id] = s
  self.plugins:call("on_session_start", id)
  return s
end

-- Whether a session is open, or has records.
function M:session_known(id)
  local roster = self.by_session[id]
  return self.sessions[id] ~= nil or (roster ~= nil and #roster > 0)
end

-- Inside a task: end a session: its non-global jobs are stopped, except
-- those a plugin's on_session_end keeps. detail says why the session
-- ended ("shell 4321 exited"). Returns what stop() returns.
function M:session_end(id, detail)
  local s = self.sessions[id]
  self.sessions[id] = nil
  local recs = self:each(function(r)
    if r.sessionId ~= id or r.global then return false end
    r.no_restart = true -- a job waiting to be restarted ends with its session too
    return not FINAL[r.status] or not gone(r) -- what its leader left running, too
  end)
  local keep = {}
  if #recs > 0 or s then
    for _, res in ipairs(self.plugins:call("on_session_end", id, self:publics(recs))) do
      for _, kid in ipairs(type(res[1]) == "table" and res[1] or {}) do keep[kid] = true end
    end
  end
  local doomed = {}
  for _, r in ipairs(recs) do if not keep[r.id] then doomed[#doomed + 1] = r end end
  return self:stop(doomed, { reason = "session", detail = detail })
end

-- Drive the engine until the task is done or the manager closes
-- (blocking). Returns whether it is done.
local function drive(self, task)
  while not task.done and not self.closed do self:step(50) end
  return task.done
end

-- Run fn as a task and drive the engine until it is done (blocking).
function M:sync(fn, ...)
  local task = self.sched:task(fn, ...)
  if not drive(self, task) then return nil end
  return task:result()
end

function M:session_close(id, detail)
  return self:sync(function() return self:session_end(id, detail) end)
end

function M:session_close_async(id, cb, detail)
  local task = self.sched:task(function() return self:session_end(id, detail) end)
  if cb then task:on_done(function(t) cb(t:result()) end) end
  self:after_activity()
  return task
end

-- End every job, reap all, close the core. Blocks until none is left.
-- detail: why ("SIGTERM", "asked by a client"), for the records.
function M:shutdown(detail)
  if self.closed or self.closing then return end
  self.closing = true
  local recs = self:each(function(r) return not FINAL[r.status] or not gone(r) end)
  self:sync(function() return self:stop(recs, { reason = "shutdown", detail = detail }) end)
  self.plugins:call("on_shutdown")
  self.retention_timer:cancel()
  self.closed = true
  self.core:close()
  self:detach_luv()
end

-- ---- tool calls -------------------------------------------------------------------

-- A finished pseudo-task carrying an immediate answer.
local function done_task(...)
  return { done = true, results = table.pack(...), on_done = function(t, cb) cb(t) end,
           result = function(t) return table.unpack(t.results, 1, t.results.n) end,
           cancel = function() end }
end

local function run_handler(self, def, name, args, ctx)
  local ok, res, err = xpcall(def.handler, debug.traceback, self, args, ctx or {})
  if not ok then
    self:log("error", ("%s: %s"):format(name, tostring(res)))
    return errors.fail("internal", "%s failed: %s", name, tostring(res):match("^[^\n]*"))
  end
  return res, err
end

local function start_call(self, name, args, ctx)
  local def, norm = tools.check(name, args)
  if not def then return done_task(nil, norm) end
  if self.closed then return done_task(errors.fail("conflict", "the manager is shut down")) end
  -- only tools that wait need a task of their own
  if not def.waits then return done_task(run_handler(self, def, name, norm, ctx)) end
  return self.sched:task(run_handler, self, def, name, norm, ctx)
end

-- Call a tool and return its result: a plain table, or nil and
-- { code = ..., message = ... }. Tools that wait (kill, wait, session
-- ends) drive the engine until they are done, blocking the caller.
function M:call(name, args, ctx)
  local task = start_call(self, name, args, ctx)
  if not drive(self, task) then return errors.fail("conflict", "the manager is shut down") end
  self:after_activity()
  return task:result()
end

-- Call a tool without blocking: cb(result, err) runs when it is done (the
-- engine must be driven: luv's loop, or run_until). Returns a handle with
-- :cancel() (an interrupted wait answers code "cancelled").
function M:call_async(name, args, ctx, cb)
  ctx = ctx or {}
  local task = start_call(self, name, args, ctx)
  task:on_done(function(t)
    if cb then cb(t:result()) end
  end)
  self:after_activity()
  return task
end

-- The tool definitions: { name, description, inputSchema } each.
function M:tools()
  return tools.definitions()
end

-- ---- the plugin API ------------------------------------------------------------------

-- What plugins get as `api`: a narrow view of the engine.
function M:plugin_api()
  local engine = self
  local api = {}
  function api.log(level, msg) engine:log(level, msg) end
  function api.after(ms, fn) return engine.sched:after(ms, fn) end
  function api.every(ms, fn) return engine.sched:every(ms, fn) end
  function api.record(id) return engine:record(id) end
  -- public records, those for which pred(record) holds
  function api.records(pred)
    local all = engine:publics(engine:each(function() return true end))
    if not pred then return all end
    local out = {}
    for _, r in ipairs(all) do if pred(r) then out[#out + 1] = r end end
    return out
  end
  -- light records (see light_record), those for which pred(light) holds:
  -- cheap enough for a plugin's timer
  function api.jobs(pred)
    local out = {}
    for _, rec in ipairs(engine.order) do
      if not rec.removed then
        local l = light_record(rec)
        if not pred or pred(l) then out[#out + 1] = l end
      end
    end
    return out
  end
  function api.respawn(id)
    local rec = engine.jobs[id]
    if not rec then return errors.fail("not_found", "no process '%s'", id) end
    return engine:respawn(rec)
  end
  -- notes: free-form facts a plugin adds to a record (shown as `notes`)
  function api.note(id, key, value)
    local rec = engine.jobs[id]
    if not rec then return false end
    rec.notes = rec.notes or {}
    rec.notes[key] = value
    unsettle(rec)
    return true
  end
  function api.add_tags(id, list)
    local rec = engine.jobs[id]
    if not rec then return false end
    local merged = table.move(rec.tags, 1, #rec.tags, 1, {})
    for _, t in ipairs(list) do merged[#merged + 1] = t end
    local norm, err = tags.normalize(merged, engine.tag_policy)
    if not norm then return nil, err end
    for _, tag in ipairs(norm) do
      if not rec.tagset[tag] then index_add(engine.by_tag, tag, rec) end
    end
    rec.tags, rec.tagset = norm, tags.set(norm)
    unsettle(rec)
    return true
  end
  -- the last lines of output (default 10), at most max_bytes (default 64 KiB)
  function api.output(id, lines, max_bytes)
    local rec = engine.jobs[id]
    if not rec or not rec.job then return "" end
    return text.clean((rec.job:tail(lines or 10, "both", max_bytes or 65536)), true)
  end
  function api.silent_ms(id)
    local rec = engine.jobs[id]
    if not rec then return nil end
    local head = 0
    if rec.job then head = select(2, rec.job:offsets()) end
    if head ~= rec.seen_head then
      rec.seen_head = head
      rec.seen_at = engine.sched.now()
    end
    return engine.sched.now() - (rec.seen_at or engine.sched.now())
  end
  api.state_dir = config.state_dir()
  api.config = self.cfg
  api.tag_policy = self.tag_policy -- max_length, max_count, charset (read only)
  return api
end

return manager
