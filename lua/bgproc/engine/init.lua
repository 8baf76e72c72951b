-- The engine: a registry of jobs over one bgproc.core loop. It owns ids,
-- the state machine (states.lua), sessions, the kill protocol (stop.lua),
-- timeouts, retention and the plugin hooks. This file builds an engine
-- and drives it; its methods live by concern beside it:
--   index.lua      rosters by tag and session; get, each, select
--   records.lua    public records and their cache; note, add_tags, retain
--   output.lua     reads and the cursor rules; scanners for patterns
--   events.lua     the core's events; on_event listeners (notices)
--   lifecycle.lua  create, respawn
--   stop.lua       stop
--   sessions.lua   session_open/_end/_close, shutdown
-- The engine knows no tool: bgproc.new gives it the toolset that `call`
-- dispatches to (tools/init.lua).
local config = require "bgproc.engine.config"
local paths = require "bgproc.lib.paths"
local core = require "bgproc.core"
local errors = require "bgproc.lib.errors"
local events = require "bgproc.engine.events"
local history = require "bgproc.engine.history"
local index = require "bgproc.engine.index"
local plugin_api = require "bgproc.plugins.api"
local plugins = require "bgproc.plugins.host"
local sched = require "bgproc.engine.sched"
local tags = require "bgproc.engine.tags"
local uv = require "luv"

local engine = {}
local Engine = {}
Engine.__index = Engine

for _, part in ipairs { "index", "records", "output", "events", "lifecycle", "stop", "sessions", "metrics",
                         "probes", "history" } do
  for name, fn in pairs(require("bgproc.engine." .. part).methods) do
    assert(not Engine[name], "engine method defined twice: " .. name)
    Engine[name] = fn
  end
end

local ID_CHARS = "abcdefghijkmnpqrstuvwxyz23456789"

-- Two random characters that start every id of this engine, so ids of
-- two engines (a daemon restarted) do not collide.
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

local function load_plugins(self, cfg)
  local dirs = {}
  local user = paths.config_dir()
  if user then dirs[#dirs + 1] = user .. "/plugins" end
  for _, d in ipairs(cfg.pluginDirs) do dirs[#dirs + 1] = d end
  self.plugins = plugins.new(plugin_api.new(self), function(level, msg) self:log(level, msg) end, dirs)
  for _, spec in ipairs(cfg.plugins) do self.plugins:add(spec, cfg) end
end

-- engine.new(opts): see bgproc/init.lua for the options; opts.tools is
-- the toolset `call` dispatches to ({ check, definitions }).
function engine.new(opts)
  opts = opts or {}
  local cfg = config.load(opts)
  local self = setmetatable({
    cfg = cfg,
    toolset = opts.tools,
    jobs = {},            -- id -> record
    order = {},           -- records in creation order (a roster, see index.lua)
    by_tag = {},          -- tag -> roster of the records with that tag
    by_session = {},      -- session id -> roster of its records
    by_name = {},         -- name -> roster of the records with that name
    seq = 0,
    prefix = random_prefix(),
    sessions = {},        -- id -> { id, openedAt }
    by_job = setmetatable({}, { __mode = "k" }), -- core job -> record
    running = 0,
    nfinished = 0,
    done_q = { first = 1, last = 0 }, -- finished records, oldest first
    closed = false,
    log_fn = opts.log,
    listeners = {},       -- on_event functions (see events.lua)
    unique_busy = {},     -- name .. "\0" .. cwd -> true while a unique start of it stops a job
  }, Engine)
  self.tag_policy = setmetatable(cfg.tags or {}, { __index = tags.policy })
  self.sched = sched.new(function(msg) self:log("error", msg) end)
  self.core = assert(core.new { ring = cfg.ringBytes, subreaper = opts.subreaper or false,
                                cgroup = cfg.cgroup ~= false })
  if cfg.store then
    history.open(self, cfg.store, function(rec)
      self.jobs[rec.id] = rec
      index.insert(self, rec)
      events.queue_done(self, rec)
    end)
  end
  load_plugins(self, cfg)
  self.retention_timer = self.sched:every(60000, function() self:retain() end)
  if opts.luv ~= false then self:attach_luv() end
  return self
end

function Engine:log(level, msg)
  if self.log_fn then
    self.log_fn(level, msg)
  elseif level == "error" or level == "warn" then
    io.stderr:write("bgproc: ", level, ": ", msg, "\n")
  end
end

-- ---- what tools and plugins may ask of the engine -----------------------------

-- The settings in force (config file, then bgproc.new's options).
function Engine:settings()
  return self.cfg
end

-- Monotonic milliseconds (the timers' clock).
function Engine:now()
  return self.sched.now()
end

function Engine:after(ms, fn) return self.sched:after(ms, fn) end
function Engine:every(ms, fn) return self.sched:every(ms, fn) end

-- Inside a task: wait until pred() holds, at most timeout_ms. progress,
-- if given, is called every progressMs with (elapsed ms, timeout_ms).
-- poll_ms: look at pred that often too (it is otherwise looked at after
-- events). Returns true, or false and "timeout" / "cancelled" / a message.
function Engine:await(pred, timeout_ms, progress, poll_ms)
  local ticker
  if progress then
    local started = self.sched.now()
    ticker = self.sched:every(self.cfg.progressMs, function()
      pcall(progress, math.floor(self.sched.now() - started), timeout_ms)
    end)
  end
  local ok, why = self.sched:await(pred, timeout_ms, poll_ms)
  if ticker then ticker:cancel() end
  return ok, why
end

-- ---- driving: luv, or blocking steps --------------------------------------

-- Watch the core's fd and the next timer on luv's default loop, so a host
-- running uv.run() needs nothing else. The handles keep the loop alive
-- only while there is work (running jobs, waiting tasks).
function Engine:attach_luv()
  if self.poll then return end
  self.poll = uv.new_poll(self.core:fd())
  self.poll:start("r", function() self:guarded(self.dispatch) end)
  self.timer = uv.new_timer()
  self:after_activity()
end

-- Stop watching. The handles are stopped and unreferenced, not closed:
-- closing needs a turn of the loop to finish, which the host may never
-- run; luv closes stopped handles safely when the Lua state closes.
function Engine:detach_luv()
  if self.poll then
    self.poll:stop()
    self.poll:unref()
    self.timer:stop()
    self.timer:unref()
  end
  self.poll, self.timer = nil, nil
end

function Engine:after_activity()
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
function Engine:guarded(method)
  local ok, err = xpcall(method, debug.traceback, self)
  if not ok then self:log("error", "engine: " .. tostring(err)) end
end

-- Run due timers.
function Engine:tick()
  if self.closed then return end
  self.sched:run_due()
  self:after_activity()
end

-- Drain the core without blocking and handle its events.
function Engine:dispatch()
  if self.closed then return end
  self:collect()
  self.sched:run_due()
  self:after_activity()
end

-- Block up to ms for events or timers, then handle them (hosts with no loop).
function Engine:step(ms)
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
function Engine:run_until(pred, timeout_ms)
  local deadline = self.sched.now() + (timeout_ms or math.huge)
  while not pred() do
    local left = deadline - self.sched.now()
    if left <= 0 or self.closed then return pred() and true or false end
    self:step(math.min(left, 100))
  end
  return true
end

-- Drive the engine until the task is done or the engine closes
-- (blocking). Returns whether it is done.
local function drive(self, task)
  while not task.done and not self.closed do self:step(50) end
  return task.done
end

-- Run fn as a task and drive the engine until it is done (blocking).
function Engine:sync(fn, ...)
  local task = self.sched:task(fn, ...)
  if not drive(self, task) then return nil end
  return task:result()
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
  assert(self.toolset, "this engine was built without tools (bgproc.new gives it them)")
  local def, norm = self.toolset.check(name, args, self)
  if not def then return done_task(nil, norm) end
  if self.closed then return done_task(errors.fail("conflict", "the manager is shut down")) end
  -- only tools that wait need a task of their own (some only for some arguments)
  local waits = def.waits
  if type(waits) == "function" then waits = waits(norm) end
  if not waits then return done_task(run_handler(self, def, name, norm, ctx)) end
  return self.sched:task(run_handler, self, def, name, norm, ctx)
end

-- Call a tool and return its result: a plain table, or nil and
-- { code = ..., message = ... }. Tools that wait (kill, wait, session
-- ends) drive the engine until they are done, blocking the caller.
function Engine:call(name, args, ctx)
  local task = start_call(self, name, args, ctx)
  if not drive(self, task) then return errors.fail("conflict", "the manager is shut down") end
  self:after_activity()
  return task:result()
end

-- Call a tool without blocking: cb(result, err) runs when it is done (the
-- engine must be driven: luv's loop, or run_until). Returns a handle with
-- :cancel() (an interrupted wait answers code "cancelled").
function Engine:call_async(name, args, ctx, cb)
  ctx = ctx or {}
  local task = start_call(self, name, args, ctx)
  task:on_done(function(t)
    if cb then cb(t:result()) end
  end)
  self:after_activity()
  return task
end

-- The tool definitions: { name, description, inputSchema } each.
function Engine:tools()
  return self.toolset.definitions()
end

return engine
