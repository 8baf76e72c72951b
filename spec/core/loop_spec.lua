-- bgproc.core: the loop. One pollable fd, coalesced events, a blocking
-- wait for hosts without a loop, luv driving the core, and luv's own
-- children untouched by bgproc's reaping.
local core = require "bgproc.core"
local uv = require "luv"
local h = require "helpers"

describe("core loop", function()
  local loop
  before_each(function() loop = core.new() end)
  after_each(function() loop:close() end)

  it("has one pollable fd", function()
    local fd = loop:fd()
    assert.is_true(math.type(fd) == "integer" and fd > 2)
    local f = io.open(("/proc/self/fdinfo/%d"):format(fd))
    assert.truthy(f)
    f:close()
    local _, link = h.sh(("readlink /proc/%d/fd/%d"):format(h.self_pid(), fd))
    assert.equal("anon_inode:[eventpoll]\n", link)
  end)

  it("waits with a timeout and returns no events when nothing happens", function()
    local t0 = h.now_ms()
    local events = loop:wait(150)
    local took = h.now_ms() - t0
    assert.same({}, events)
    assert.is_true(took >= 140 and took < 1000, "waited " .. took .. " ms")
  end)

  it("wakes a blocking wait as soon as a job exits", function()
    local job = assert(loop:spawn { command = "sleep 0.1" })
    local t0 = h.now_ms()
    local events = loop:wait(5000)
    while #events == 0 or not events[1].exit do events = loop:wait(5000) end
    assert.is_true(h.now_ms() - t0 < 2000)
    assert.equal(job, events[1].job)
    assert.is_true(events[1].exit)
  end)

  it("coalesces output: one event per job per dispatch, not per chunk", function()
    local job = assert(loop:spawn { command = "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; exec sleep 0.2" })
    -- it has written everything (the shell became the sleep) while nobody dispatched
    assert.is_true(h.wait_until(function()
      local st = h.stat(job:pid())
      return st and st.comm == "sleep"
    end, 5000), "the job never got to its sleep")
    local events = loop:dispatch()
    assert.equal(1, #events)
    assert.equal(job, events[1].job)
    assert.is_true(events[1].output)
    local data = job:read(0)
    local lines = select(2, data:gsub("\n", ""))
    assert.equal(2000, lines)
    h.finish(loop, job)
  end)

  it("reports exit and eof in one record when they coincide", function()
    local job = assert(loop:spawn { command = "echo bye" })
    -- exited (a zombie until the dispatch reaps it): its output and EOF are there too
    assert.is_true(h.wait_until(function() return not h.alive(job:pid()) end, 5000), "the job never exited")
    local events = loop:dispatch()
    assert.equal(1, #events)
    assert.same({ job = job, output = true, exit = true, eof = true }, events[1])
    assert.equal(0, loop:count())
  end)

  it("keeps a job watched until a grandchild holding stdout closes it", function()
    local job = assert(loop:spawn { command = "(sleep 0.3; echo late) & echo early" })
    assert.is_true(h.pump(loop, function() return not job:alive() end, 3000))
    assert.equal(1, loop:count())
    assert.is_false(job:info().eof)
    assert.is_true(h.pump(loop, function() return job:info().eof end, 3000))
    assert.equal("early\nlate\n", (job:read(0)))
    assert.equal(0, loop:count())
  end)

  it("is driven from luv through uv.new_poll(loop:fd())", function()
    local poll = uv.new_poll(loop:fd())
    local timer = uv.new_timer()
    local exits, outputs = {}, 0
    poll:start("r", function(err)
      assert.is_nil(err)
      for _, ev in ipairs(loop:dispatch()) do
        if ev.output then outputs = outputs + 1 end
        if ev.exit then exits[#exits + 1] = ev.job end
      end
      if #exits == 3 then poll:stop(); timer:stop() end
    end)
    local jobs = {
      assert(loop:spawn { command = "echo one" }),
      assert(loop:spawn { command = "sleep 0.05; echo two" }),
      assert(loop:spawn { command = "sleep 0.1; exit 9" }),
    }
    uv.update_time() -- the loop's cached time may be long stale: timers count from now
    timer:start(5000, 0, function() poll:stop() end)
    uv.run()
    timer:close()
    poll:close()
    uv.run("nowait")
    assert.equal(3, #exits)
    assert.is_true(outputs >= 2)
    assert.equal("one\n", (jobs[1]:read(0)))
    assert.equal("two\n", (jobs[2]:read(0)))
    assert.equal(9, (jobs[3]:exit()))
  end)

  it("leaves luv's children to luv: they are reaped and get their exit callbacks", function()
    local luv_exits = {}
    local handles = {}
    for i = 1, 5 do
      local handle
      handle = uv.spawn("sh", { args = { "-c", "sleep 0.0" .. i .. "; exit " .. (10 + i) } },
        function(code) luv_exits[i] = code; handle:close() end)
      assert.truthy(handle)
      handles[i] = handle
    end
    local jobs = {}
    for i = 1, 5 do jobs[i] = assert(loop:spawn { command = "sleep 0.0" .. i .. "; exit " .. (20 + i) }) end
    local poll = uv.new_poll(loop:fd())
    local bg_exits = 0
    poll:start("r", function()
      for _, ev in ipairs(loop:dispatch()) do
        if ev.exit then bg_exits = bg_exits + 1 end
      end
    end)
    local timer, guard = uv.new_timer(), uv.new_timer()
    uv.update_time()
    timer:start(10, 10, function()
      local n = 0
      for i = 1, 5 do if luv_exits[i] then n = n + 1 end end
      if n == 5 and bg_exits == 5 then timer:stop(); poll:stop(); guard:stop() end
    end)
    guard:start(5000, 0, function() timer:stop(); poll:stop() end)
    uv.run()
    for _, hd in ipairs { timer, guard, poll } do hd:close() end
    uv.run("nowait")
    for i = 1, 5 do
      assert.equal(10 + i, luv_exits[i])
      assert.equal(20 + i, (jobs[i]:exit()))
    end
    assert.same({}, h.zombies_of(h.self_pid()))
  end)

  it("counts the jobs it still watches", function()
    assert.equal(0, loop:count())
    local a = assert(loop:spawn { argv = { "sleep", "10" } })
    local b = assert(loop:spawn { argv = { "sleep", "10" } })
    assert.equal(2, loop:count())
    a:kill("KILL")
    assert.is_true(h.pump(loop, function() return loop:count() == 1 end))
    b:close()
    assert.equal(0, loop:count())
  end)
end)

describe("core loop with subreaper = true", function()
  it("collects the orphans of its own groups: no zombie, no survivor", function()
    local loop = core.new()
    local job = assert(loop:spawn { argv = { h.lua, h.fixture("subreaper.lua") }, env = h.lua_env() })
    local out = h.finish(loop, job, 10000)
    loop:close()
    assert.matches("adopted=true\n", out)
    assert.matches("other=7\n", out)
    assert.matches("members=0\n", out)
    assert.matches("children=0\n", out)
  end)

  it("rejects a non-boolean", function()
    assert.has_error(function() core.new { subreaper = 1 } end,
      "new: option 'subreaper' must be a boolean, got number")
  end)
end)
