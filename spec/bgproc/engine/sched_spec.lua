-- bgproc.engine.sched: timers and tasks, on the real monotonic clock.
local sched = require "bgproc.engine.sched"

describe("bgproc.engine.sched", function()
  -- Regression: cancelling a one-shot timer after it ran (a job's timeout
  -- timer at its exit, an await's deadline) counted it as a cancelled
  -- timer still in the heap, so the count drifted and the heap was swept
  -- for nothing.
  it("does not count a timer that already ran as cancelled", function()
    local s = sched.new()
    local ran = 0
    local timers = {}
    for i = 1, 100 do timers[i] = s:after(0, function() ran = ran + 1 end) end
    assert.equal(100, s:run_due())
    assert.equal(100, ran)
    for _, t in ipairs(timers) do t:cancel() end
    assert.equal(0, s.ncancelled)
    -- a live timer cancelled afterwards is counted, and still never runs
    local live = s:after(0, function() ran = ran + 1 end)
    live:cancel()
    assert.equal(1, s.ncancelled)
    s:run_due()
    assert.equal(100, ran)
    assert.equal(0, s.ncancelled)
  end)

  it("counts a repeating timer cancelled after it ran: it is still in the heap", function()
    local s = sched.new()
    local ran = 0
    local t = s:every(1, function() ran = ran + 1 end)
    local deadline = s.now() + 1000
    while ran == 0 and s.now() < deadline do s:run_due() end
    assert.equal(1, ran)
    t:cancel()
    assert.equal(1, s.ncancelled)
    assert.is_nil(s:next_in()) -- swept out when looked at
    assert.equal(0, s.ncancelled)
  end)

  it("wakes an awaiting task on its deadline without counting the fired deadline", function()
    local s = sched.new()
    local why
    local task = s:task(function() why = select(2, s:await(function() return false end, 0)) end)
    s:run_due()
    assert.is_true(task.done)
    assert.equal("timeout", why)
    assert.equal(0, s.ncancelled)
  end)
end)
