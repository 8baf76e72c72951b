-- Starting jobs: a record from checked arguments, its process spawned
-- by the core, and a restart under the same id.
local errors = require "bgproc.lib.errors"
local events = require "bgproc.engine.events"
local history = require "bgproc.engine.history"
local index = require "bgproc.engine.index"
local probes = require "bgproc.engine.probes"
local records = require "bgproc.engine.records"
local regex = require "bgproc.regex"
local states = require "bgproc.engine.states"
local tags = require "bgproc.engine.tags"

local lifecycle = {}
local methods = {}
lifecycle.methods = methods

local FINAL = states.FINAL

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

-- The job's environment: the caller's (base_env: what a client sent as
-- its own) with the variables it set, or exactly those (no_inherit), or
-- the daemon's with them.
local function spawn_env(rec)
  if rec.no_inherit or not rec.base_env then return rec.env, rec.no_inherit end
  local env = {}
  for k, v in pairs(rec.base_env) do env[k] = v end
  for k, v in pairs(rec.env or {}) do env[k] = v end
  return env, true
end

local function spawn_options(rec)
  local env, clear_env = spawn_env(rec)
  local o = { cwd = rec.cwd, env = env, ring = rec.ring, clear_env = clear_env }
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

-- A job's timeout: stop it and all it started. An exit already in the
-- pipe is not a timeout; what its leader left running is stopped all the
-- same.
local function arm_timeout(self, rec)
  if rec.timeout_timer then rec.timeout_timer:cancel() end -- a previous run's
  rec.timeout_timer = nil
  if not rec.timeoutMs then return end
  rec.timeout_timer = self.sched:after(rec.timeoutMs, function()
    rec.timeout_timer = nil
    self:collect()
    if not states.over(rec) then
      self.sched:task(function()
        self:stop({ rec }, { reason = "timeout" })
      end)
    end
  end)
end

-- The record's scanners and counters start where this run's output does.
local function reset_run(rec)
  if rec.ready_re then rec.ready_scan = { rec = rec, cursor = rec.base, partial = "" } end
  if rec.notify_re then rec.notify_scan = { rec = rec, cursor = rec.base, partial = "" } end
  rec.ended_told = nil
  rec.fed = rec.base
  rec.ll_head = nil
  rec.m, rec.oom_check = nil, nil -- ports, CPU, memory, a memory.max: the new run's
end

-- Start (or restart) the record's process. Returns true or nil, err.
local function launch(self, rec)
  local ok, job, msg, ename = pcall(self.core.spawn, self.core, spawn_options(rec))
  if not ok then job, msg = nil, "spawn: " .. tostring(job) end -- arguments the core refused
  if not job then
    msg = explain_spawn_error(msg, ename)
    events.fail_start(self, rec, msg)
    return errors.fail("spawn_failed", "%s", msg)
  end
  rec.job = job
  rec.pid = job:pid()
  rec.startedMs = rec.startedMs or job:info().started
  rec.started_mono = self.sched.now() -- (CPU % of the first sample)
  rec.status = "running"
  rec.finished = false
  rec.exitCode, rec.signal, rec.error, rec.endedMs = nil, nil, nil, nil
  self.running = self.running + 1
  self.by_job[job] = rec
  reset_run(rec)
  arm_timeout(self, rec)
  probes.arm(self, rec)
  if self.plugins:has("on_start") then self.plugins:call("on_start", records.public(rec)) end
  self:after_activity()
  return true
end

-- Room for one more running job: children that already exited are
-- collected first (a host that never turns its loop still has them
-- counted as running until then).
local function room(self)
  if self.running < self.cfg.maxRunning then return true end
  self:collect()
  if self.running < self.cfg.maxRunning then return true end
  return errors.fail("limit", "%d jobs are running, the most allowed (maxRunning)", self.running)
end

-- One table for each environment clients send (a shell sends the same
-- one with every start): records share it rather than each keep a copy.
local function shared_env(self, env)
  local names = {}
  for k in pairs(env) do names[#names + 1] = k end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do parts[i] = k .. "=" .. env[k] end
  local key = table.concat(parts, "\0")
  local envs = self.envs
  if not envs then
    envs = setmetatable({}, { __mode = "v" })
    self.envs = envs
  end
  local shared = envs[key]
  if not shared then
    shared = env
    envs[key] = shared
  end
  return shared
end

-- A record for checked args. `old`: the record it replaces, whose id it
-- takes, and whose output cursor it goes on from.
local function new_record(self, args, sid, old)
  local tag_list = assert(tags.normalize(args.tags, self.tag_policy)) -- checked before
  local seq = old and old.seq
  if not seq then
    self.seq = self.seq + 1
    seq = self.seq
  end
  local rec = {
    id = old and old.id or ("%s-%d"):format(self.prefix, seq), seq = seq,
    name = args.name or default_name(args),
    command = args.command, argv = args.argv,
    cwd = args.cwd, env = args.env, no_inherit = args.inheritEnv == false or nil,
    base_env = args.baseEnv and shared_env(self, args.baseEnv),
    sessionId = sid, global = args.global == true,
    tags = tag_list, tagset = tags.set(tag_list),
    stdin = args.pty and "pty" or args.stdin or "null",
    pty = args.pty == true, ring = args.outputBytes or self.cfg.ringBytes,
    timeoutMs = args.timeoutMs,
    readyPattern = args.readyPattern, ready_re = args.readyPattern and assert(regex.new(args.readyPattern)),
    notifyPattern = args.notifyPattern, notify_re = args.notifyPattern and assert(regex.new(args.notifyPattern)),
    readyPort = args.readyPort, readyUrl = args.readyUrl, memoryMax = args.memoryMax,
    status = "pending", base = old and records.output_end(old) or 0, restarts = old and old.restarts + 1 or 0,
  }
  rec.lname = rec.name:lower() -- for name filters
  if rec.ready_re or rec.readyPort or rec.readyUrl then rec.ready = false end
  return rec
end

-- The job a unique start finds: running (not being stopped) under the
-- same name and working directory, in the caller's view (its session's,
-- or global: another session's job is not its to reuse or replace).
local function twin(self, args, sid)
  local roster = self.by_name[args.name] or {}
  for i = #roster, 1, -1 do
    local r = roster[i]
    if not r.removed and not FINAL[r.status] and not r.stop and r.cwd == args.cwd
        and (r.sessionId == sid or r.global) then
      return r
    end
  end
end

-- Inside a task: stop rec (a restart, a replace) unless it is over; a
-- stop already under way is waited for, not started twice. Returns true,
-- or nil and a conflict when its group would not die.
local function stop_for(self, rec, reason, opts)
  local under_way = rec.stop and rec.stop.task
  if under_way and not under_way.done then self.sched:await(function() return under_way.done end) end
  if states.over(rec) then return true end
  local _, _, errs = self:stop({ rec }, { reason = reason, signal = opts.signal, graceMs = opts.graceMs,
                                          by = opts.sessionId })
  if #errs > 0 then return errors.fail("conflict", "%s: %s", rec.id, errs[1].message) end
  return true
end

-- Start a job of checked args in session sid; old: the record it
-- replaces (its id goes on). Returns the public record, or nil and an error.
local function start_job(self, args, sid, old)
  local ok, err = room(self)
  if not ok then return nil, err end
  if not self.sessions[sid] then self:session_open(sid) end
  local rec = new_record(self, args, sid, old)
  if old then self:remove(old) end
  self.jobs[rec.id] = rec
  index.insert(self, rec)
  local launched, lerr = launch(self, rec)
  if not launched then
    lerr.processId = rec.id
    return nil, lerr
  end
  history.save(self, rec)
  return records.public(rec)
end

-- Inside a task: a unique start (args.unique): its twin reused as it is,
-- or stopped and replaced, or a new job when it has none.
local function unique_start(self, args, sid, ctx)
  local old = twin(self, args, sid)
  if not old then return start_job(self, args, sid) end
  if args.unique == "reuse" then
    local r = records.public(old)
    r.reused = true
    return r
  end
  local _, err = stop_for(self, old, "replace", ctx) -- first: it no longer counts against maxRunning
  if err then return nil, err end
  if self.closed or self.closing then return errors.fail("conflict", "the manager is shut down") end
  if sid ~= "default" and not self.sessions[sid] then
    return errors.fail("conflict", "session %s ended while its replace of %s stopped", sid, old.id)
  end
  return start_job(self, args, sid, old)
end

-- Create a job. args were checked by check(args) -> args or nil, err
-- (the create tool's one validation); plugins' on_create may rewrite
-- them, so what they return is checked again. Returns the public
-- record, or nil and an error.
function methods:create(args, ctx, check)
  assert(type(check) == "function", "create needs the create tool's check")
  if self.closed then return errors.fail("conflict", "the manager is shut down") end
  ctx = ctx or {}
  if self.plugins:has("on_create") then
    local refused
    args, refused = self.plugins:create(args, ctx)
    if not args then return errors.fail("refused", "%s", refused) end
    local err
    args, err = check(args)
    if not args then -- what a plugin made of the caller's arguments
      return errors.fail(err.code, "after the plugins' on_create: %s", err.message)
    end
  end
  local sid = ctx.sessionId or "default"
  if not args.unique then return start_job(self, args, sid) end
  if not self.sched.by_co[coroutine.running()] then -- (a plugin's on_create added it: create.waits did not see it)
    return errors.fail("conflict", "'unique' was added by a plugin; it needs the caller to ask for it")
  end
  -- unique starts of one name and cwd go one at a time: two at once never make two jobs
  local key, busy = args.name .. "\0" .. (args.cwd or ""), self.unique_busy
  while busy[key] do self.sched:await(function() return not busy[key] end) end
  busy[key] = true
  local ok, r, err = pcall(unique_start, self, args, sid, ctx)
  busy[key] = nil
  if not ok then error(r, 0) end
  return r, err
end

-- Why a record cannot be restarted now, or nil. asked: a caller asked
-- for it (a stop before does not forbid it, as it does a plugin's).
local function why_not_respawn(self, rec, asked)
  if not FINAL[rec.status] then return errors.fail("conflict", "job %s is still %s", rec.id, rec.status) end
  if rec.removed then return errors.fail("not_found", "job %s was removed", rec.id) end
  if rec.restored then
    return errors.fail("conflict", "job %s ran under an earlier daemon: start it again as a new job with rerun "
      .. "(createBackgroundProcess { rerun = \"%s\" }, or bgproc rerun %s)", rec.id, rec.id, rec.id)
  end
  if self.closed or self.closing then return errors.fail("conflict", "the manager is shut down") end
  if not asked and (rec.no_restart or rec.stop) then
    return errors.fail("conflict", "job %s was stopped (killed, or its session ended)", rec.id)
  end
  if not rec.global and not self.sessions[rec.sessionId] then
    return errors.fail("conflict", "the session of job %s has ended", rec.id)
  end
  if not states.gone(rec) then
    return errors.fail("conflict", "processes of job %s are still running", rec.id)
  end
  local ok, err = room(self)
  if not ok then return nil, err end
end

-- Start a finished record again under the same id (the restart plugin;
-- asked: a caller's restart). Its output cursor continues where the
-- previous run's ended.
function methods:respawn(rec, asked)
  local _, err = why_not_respawn(self, rec, asked)
  if err then return nil, err end
  events.flush_ended(self, rec) -- a restart within the notice wait: tell the last run's end now
  if rec.job then
    rec.base = records.output_end(rec)
    records.drop_job(self, rec)
  end
  history.revive(self, rec) -- (its output goes on in a new ring, and on to its file)
  rec.stop, rec.no_restart = nil, nil
  records.unsettle(rec)
  if rec.finished then
    rec.finished = false
    self.nfinished = self.nfinished - 1
  end
  rec.restarts = rec.restarts + 1
  rec.startedMs = nil
  if rec.ready ~= nil then rec.ready, rec.readyLine = false, nil end
  rec.status = "pending"
  local ok, lerr = launch(self, rec)
  if ok then history.save(self, rec) end
  return ok, lerr
end

-- Inside a task: stop the job (opts: signal, graceMs, sessionId: who
-- asks) unless it is over, and start it again under the same id. Returns
-- the public record, or nil and an error.
function methods:restart(rec, opts)
  local _, err = stop_for(self, rec, "restart", opts or {})
  if err then return nil, err end
  local ok
  ok, err = self:respawn(rec, true)
  if not ok then return nil, err end
  return records.public(rec)
end

-- Write to a job's stdin, then close it when eof. Returns the bytes
-- written, or nil and a conflict saying why nothing could be.
function methods:write_input(rec, input, eof)
  if rec.stdin == "null" then
    return errors.fail("conflict", "stdin of %s is not a pipe (start it with stdin: \"pipe\" or pty: true)", rec.id)
  end
  if FINAL[rec.status] or not rec.job then
    return errors.fail("conflict", "%s has %s", rec.id, rec.status)
  end
  if not rec.job:info().stdin_open then
    return errors.fail("conflict", "stdin of %s is already closed", rec.id)
  end
  local bytes = 0
  if input and #input > 0 then
    local n, msg = rec.job:write(input)
    if not n then return errors.fail("conflict", "%s", msg) end
    bytes = n
  end
  if eof then
    local ok, msg = rec.job:close_stdin()
    if not ok then return errors.fail("conflict", "%s", msg) end
  end
  return bytes
end

-- Whether the job has a readiness test (readyPattern, readyPort,
-- readyUrl), whether it passed, and the line that says how.
function methods:readiness(rec)
  return rec.ready ~= nil, rec.ready == true, rec.readyLine
end

return lifecycle
