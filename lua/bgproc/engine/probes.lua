-- Probes: what is watched while a job runs, on one timer for all jobs:
-- its readiness by port (readyPort) or URL (readyUrl), and its memory
-- against memoryMax where no cgroup enforces it. Also the checks the wait
-- tool makes for until = "port" / "url".
local events = require "bgproc.engine.events"
local files = require "bgproc.lib.files"
local metrics = require "bgproc.engine.metrics"
local states = require "bgproc.engine.states"
local sys = require "bgproc.sys"
local url = require "bgproc.lib.url"

local probes = {}
local methods = {}
probes.methods = methods

local TICK_MS = 100           -- the timer's period: the first looks at readiness
local SLOWEST_MS = 1000       -- looks slow down to one a second
local MEMORY_EVERY_MS = 1000  -- the memory watchdog's period
local HTTP_TIMEOUT_MS = 2000  -- one GET's bound

local FINAL = states.FINAL

-- The first of ports on `port` (0 or nil: any), or nil.
function probes.port_match(ports, port)
  for _, p in ipairs(ports or {}) do
    if not port or port == 0 or p.port == port then return p end
  end
end

local function port_text(p)
  return ("listening on %s %s:%d"):format(p.protocol, p.family == 6 and ("[" .. p.address .. "]") or p.address,
    p.port)
end

-- GETs of u (a parsed loopback http URL), one at a time, over and over,
-- each address of u.hosts in turn: poll() returns the status of an
-- answer, or nil while none came; close() ends a GET under way.
local function http_poller(u)
  local probe, turn = nil, 0
  local function poll()
    if not probe then
      turn = turn % #u.hosts + 1
      probe = sys.http_probe(u.hosts[turn], u.port, u.path, HTTP_TIMEOUT_MS)
      if not probe then return nil end
    end
    local status = probe:poll()
    if status == "pending" then return nil end
    probe:close()
    probe = nil
    return status
  end
  local function close()
    if probe then probe:close() end
    probe = nil
  end
  return poll, close
end

-- A check for url (a string the create or wait tool checked):
-- { check(ports) -> whether it answered and a line saying how,
--   by_port = true for https (no TLS here: it counts once the job
--   listens on the URL's port, as ports tells), close() }.
function probes.url_check(s)
  local u = assert(url.parse_loopback(s))
  if u.scheme == "https" then
    return { by_port = true, close = function() end, check = function(ports)
      local p = probes.port_match(ports, u.port)
      return p ~= nil, p and (port_text(p) .. " (" .. s .. ")")
    end }
  end
  local poll, close = http_poller(u)
  return { by_port = false, close = close, check = function()
    local status = poll()
    if status and status < 500 then return true, ("GET %s answered %d"):format(s, status) end
    return false
  end }
end

-- ---- memory -----------------------------------------------------------------

-- memoryMax through the job's cgroup, where it has one with the memory
-- controller: the kernel ends the whole group (memory.oom.group) and
-- memory.events says so. Returns whether the cgroup enforces it.
local function cgroup_limit(rec)
  local dir = rec.job:cgroup()
  if not dir or not files.write(dir .. "/memory.max", tostring(rec.memoryMax)) then return false end
  files.write(dir .. "/memory.oom.group", "1")
  rec.oom_check = function()
    local ev = files.read(dir .. "/memory.events")
    local n = ev and tonumber(ev:match("oom_kill (%d+)"))
    return n ~= nil and n > 0
  end
  return true
end

-- The watchdog's stop: the job used more than memoryMax.
local function over_memory(self, rec)
  self.sched:task(function()
    if not rec.stop and not FINAL[rec.status] then self:stop({ rec }, { reason = "memory" }) end
  end)
end

-- A pace for a look that costs (a walk of /proc, a GET the job will log):
-- returns a function saying whether to look now. Every 100 ms at first,
-- half as often again each time, then once a second.
local function pace(now_fn)
  local next_at, every = 0, TICK_MS
  return function()
    local now = now_fn()
    if now < next_at then return false end
    next_at, every = now + every, math.min(SLOWEST_MS, every * 3 // 2)
    return true
  end
end

-- ---- the timer -----------------------------------------------------------------

-- A job still worth watching: it runs, and no one is stopping it.
local function watchable(rec)
  return not rec.removed and rec.job ~= nil and not FINAL[rec.status] and not rec.stop
end

-- Stop watching rec; a GET under way is closed.
local function unwatch(self, rec)
  local w = self.watched and self.watched[rec]
  if not w then return end
  self.watched[rec] = nil
  if w.url then w.url.close() end
end

-- What of rec is still to be watched.
local function pending(rec, w)
  return (rec.ready == false and (w.port or w.url)) or w.memory
end

-- Look at every watched job: sample those due, then judge each.
local function tick(self)
  local now = self.sched.now()
  local due, ports_too = {}, false
  for rec, w in pairs(self.watched) do
    if not watchable(rec) or not pending(rec, w) then
      unwatch(self, rec)
    else
      local mem_due = w.memory and now >= w.next_memory
      if mem_due then w.next_memory = now + MEMORY_EVERY_MS end
      w.look = rec.ready == false and w.ready_due()
      if mem_due or (w.look and (w.port or (w.url and w.url.by_port))) then
        due[#due + 1] = rec
        ports_too = ports_too or w.look
      end
      w.mem_due = mem_due
    end
  end
  metrics.sample(self, due, ports_too)
  for rec, w in pairs(self.watched) do
    local m = rec.m
    if w.look then
      local ok, line
      if w.port then
        local p = m and probes.port_match(m.ports, rec.readyPort)
        ok, line = p ~= nil, p and port_text(p)
      elseif w.url then
        ok, line = w.url.check(m and m.ports)
      end
      if ok then events.ready(self, rec, line) end
    end
    if w.mem_due and m and m.memoryBytes > rec.memoryMax then
      unwatch(self, rec)
      over_memory(self, rec)
    end
  end
  if next(self.watched) == nil then
    self.watch_timer:cancel()
    self.watch_timer = nil
  end
end

-- A job was launched: watch what it asks for.
function probes.arm(self, rec)
  unwatch(self, rec) -- a past run's
  if not (rec.readyPort or rec.readyUrl or rec.memoryMax) then return end
  local w = { ready_due = pace(self.sched.now) }
  if rec.readyPort then w.port = true end
  if rec.readyUrl then w.url = probes.url_check(rec.readyUrl) end
  if rec.memoryMax and not cgroup_limit(rec) then w.memory, w.next_memory = true, 0 end
  if not pending(rec, w) then return end
  self.watched = self.watched or {}
  self.watched[rec] = w
  if not self.watch_timer then self.watch_timer = self.sched:every(TICK_MS, function() tick(self) end) end
end

-- Stop watching every job (the engine shuts down).
function methods:unwatch_all()
  for rec in pairs(self.watched or {}) do unwatch(self, rec) end
  if self.watch_timer then self.watch_timer:cancel() end
  self.watch_timer = nil
end

-- ---- for the wait tool ----------------------------------------------------------

-- A condition for a wait until rec listens on port (nil or 0: any):
-- returns whether it does, and the port seen.
function methods:port_condition(rec, port)
  local due, seen = pace(self.sched.now), nil
  return function()
    if due() then seen = probes.port_match(self:ports(rec, 0), port) end
    return seen ~= nil, seen
  end
end

-- A condition for a wait until url answers: returns whether it did, and
-- the line saying how.
function methods:url_condition(rec, s)
  local u = probes.url_check(s)
  local due = pace(self.sched.now)
  return function()
    if not due() then return false end
    return u.check(u.by_port and self:ports(rec, 0))
  end
end

return probes
