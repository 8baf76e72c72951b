-- Timers and tasks, independent of any event loop. The engine's driver
-- (luv, or a blocking step for hosts without a loop) asks how long until
-- the next timer, runs what is due, and pokes waiting tasks after events.
--
-- A task is a coroutine. Inside one, sched:await(pred, timeout_ms, poll_ms)
-- suspends until pred() holds, the timeout passes, or the task is
-- cancelled, so a tool can wait for a group to die without blocking the
-- host.
local clock = require "bgproc.lib.clock"

local sched = {}
local Sched = {}
Sched.__index = Sched

function sched.new(on_error)
  return setmetatable({
    heap = {},          -- timers ordered by `at`
    waiters = {},       -- suspended tasks: { task, pred, ... }
    ncancelled = 0,     -- cancelled timers still in the heap
    by_co = setmetatable({}, { __mode = "k" }), -- coroutine -> task
    on_error = on_error or function(msg) io.stderr:write(msg, "\n") end,
    now = clock.now,
  }, Sched)
end

-- ---- timers -------------------------------------------------------------

local function heap_push(h, t)
  h[#h + 1] = t
  local i = #h
  while i > 1 do
    local p = i // 2
    if h[p].at <= h[i].at then break end
    h[p], h[i] = h[i], h[p]
    i = p
  end
end

local function heap_pop(h)
  local top = h[1]
  local last = table.remove(h)
  if #h > 0 then
    h[1] = last
    local i, n = 1, #h
    while true do
      local l, r, m = 2 * i, 2 * i + 1, i
      if l <= n and h[l].at < h[m].at then m = l end
      if r <= n and h[r].at < h[m].at then m = r end
      if m == i then break end
      h[m], h[i] = h[i], h[m]
      i = m
    end
  end
  return top
end

local Timer = {}
Timer.__index = Timer
function Timer:cancel()
  if self.cancelled then return end
  self.cancelled = true
  if self.fired then return end -- a one-shot that ran is out of the heap already
  local s = self.sched
  s.ncancelled = s.ncancelled + 1
  -- a cancelled timer holds its closure until its deadline: sweep them out
  -- once they are most of the heap
  if s.ncancelled > 64 and s.ncancelled * 2 > #s.heap then
    local live = {}
    for _, t in ipairs(s.heap) do if not t.cancelled then live[#live + 1] = t end end
    s.heap = {}
    for _, t in ipairs(live) do heap_push(s.heap, t) end
    s.ncancelled = 0
  end
end

-- Run fn after ms milliseconds (once, or every ms if `repeating`; a
-- period is at least 1 ms).
function Sched:after(ms, fn, repeating)
  if repeating and ms < 1 then ms = 1 end
  local t = setmetatable({ at = self.now() + ms, fn = fn, every = repeating and ms, sched = self }, Timer)
  heap_push(self.heap, t)
  return t
end

function Sched:every(ms, fn)
  return self:after(ms, fn, true)
end

-- Milliseconds until the next timer is due (0 if overdue), or nil.
function Sched:next_in()
  local h = self.heap
  while h[1] and h[1].cancelled do
    heap_pop(h)
    self.ncancelled = math.max(0, self.ncancelled - 1)
  end
  if not h[1] then return nil end
  return math.max(0, h[1].at - self.now())
end

-- Run every timer due now (a repeating one runs once per call). Returns
-- the number run.
function Sched:run_due()
  local now = self.now()
  local due = {}
  while self.heap[1] and self.heap[1].at <= now do
    local t = heap_pop(self.heap)
    if t.cancelled then
      self.ncancelled = math.max(0, self.ncancelled - 1)
    else
      due[#due + 1] = t
    end
  end
  for _, t in ipairs(due) do
    if t.every then
      t.at = now + t.every
      heap_push(self.heap, t)
    else
      t.fired = true
    end
  end
  for _, t in ipairs(due) do
    if not t.cancelled then -- an earlier one of this batch may have cancelled it
      local ok, err = pcall(t.fn)
      if not ok then self.on_error("timer: " .. tostring(err)) end
    end
  end
  return #due
end

-- ---- tasks ----------------------------------------------------------------

local Task = {}
Task.__index = Task

local function finish(task, ok, ...)
  task.done = true
  if ok then
    task.results = table.pack(...)
  else
    task.error = ...
  end
  for _, cb in ipairs(task.callbacks) do
    local cok, err = pcall(cb, task)
    if not cok then task.sched.on_error("task callback: " .. tostring(err)) end
  end
end

local function step(task, ...)
  local co = task.co
  local res = table.pack(coroutine.resume(co, ...))
  if coroutine.status(co) == "dead" then
    if not res[1] then
      res[2] = debug.traceback(co, tostring(res[2]))
    end
    finish(task, table.unpack(res, 1, res.n))
  end
end

-- Start fn(...) as a task; it runs at once until it first awaits.
function Sched:task(fn, ...)
  local task = setmetatable({ sched = self, callbacks = {}, done = false }, Task)
  task.co = coroutine.create(fn)
  self.by_co[task.co] = task
  step(task, ...)
  return task
end

-- Call cb(task) when the task is done (at once if it already is).
function Task:on_done(cb)
  if self.done then cb(self) else self.callbacks[#self.callbacks + 1] = cb end
end

-- The task's return values (or raises its error).
function Task:result()
  if self.error then error(self.error, 0) end
  return table.unpack(self.results, 1, self.results.n)
end

local function wake(self, w, ...)
  if w.woken then return end
  w.woken = true
  for i, x in ipairs(self.waiters) do
    if x == w then table.remove(self.waiters, i) break end
  end
  if w.deadline_timer then w.deadline_timer:cancel() end
  if w.poll_timer then w.poll_timer:cancel() end
  w.task.waiter = nil
  step(w.task, ...)
end

-- Cancel a waiting task: its await returns false, "cancelled".
function Task:cancel()
  self.cancelled = true
  if self.waiter then wake(self.sched, self.waiter, false, "cancelled") end
end

-- Inside a task: wait until pred() is true. Returns true, or false and
-- "timeout", "cancelled" or "error: ..." (pred raised). poll_ms re-checks
-- pred on a timer, for conditions no event announces (a group dying).
function Sched:await(pred, timeout_ms, poll_ms)
  local co, main = coroutine.running()
  assert(not main, "await outside a task")
  local ok, v = pcall(pred)
  if not ok then return false, "error: " .. tostring(v) end
  if v then return true end
  local task = assert(self.by_co[co], "await outside a task of this scheduler")
  if task.cancelled then return false, "cancelled" end
  local w = { task = task, pred = pred }
  task.waiter = w
  self.waiters[#self.waiters + 1] = w
  if timeout_ms then
    w.deadline_timer = self:after(timeout_ms, function() wake(self, w, false, "timeout") end)
  end
  if poll_ms then
    w.poll_timer = self:every(poll_ms, function()
      local pok, pv = pcall(w.pred)
      if not pok then wake(self, w, false, "error: " .. tostring(pv)) elseif pv then wake(self, w, true) end
    end)
  end
  return coroutine.yield()
end

-- Re-check every waiting task (after events), again while a pass woke
-- one: a task that ran may have made another's condition true.
function Sched:poke()
  for _ = 1, 100 do
    if #self.waiters == 0 then return end
    local list = table.move(self.waiters, 1, #self.waiters, 1, {})
    local woke = false
    for _, w in ipairs(list) do
      if not w.woken then
        local ok, v = pcall(w.pred)
        if not ok then
          wake(self, w, false, "error: " .. tostring(v))
          woke = true
        elseif v then
          wake(self, w, true)
          woke = true
        end
      end
    end
    if not woke then return end
  end
end

function Sched:idle()
  return #self.waiters == 0
end

return sched
