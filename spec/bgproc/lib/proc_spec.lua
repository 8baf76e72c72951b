-- bgproc.lib.proc: /proc read for the Lua side, against real processes.
local h = require "helpers"
local core = require "bgproc.core"
local proc = require "bgproc.lib.proc"
local uv = require "luv"

describe("bgproc.lib.proc", function()
  it("reads this process's stat and argv", function()
    local me = assert(proc.stat("self"))
    assert.equal(uv.os_getpid(), me.pid)
    assert.equal(uv.os_getpid(), proc.self_pid())
    assert.equal(uv.os_getppid(), me.ppid)
    assert.equal("R", me.state)
    assert.is_number(me.cpu)
    assert.truthy(proc.argv("self")[1]:find("lua", 1, true))
  end)

  it("tells a running child from a zombie and from a reaped one", function()
    local loop = core.new()
    local job = assert(loop:spawn { argv = { "sh", "-c", "read x" }, stdin = "pipe" })
    local pid = job:pid()
    assert.is_true(proc.alive(pid))
    local st = proc.stat(pid)
    assert.equal(uv.os_getpid(), st.ppid)
    assert.equal(pid, proc.stat(pid + 0.0).pid, "a pid as JSON decodes it (a float) names the same process")
    assert.is_true(proc.alive(pid + 0.0))
    assert.equal(pid, st.pgrp, "a job leads its own group")
    -- its argv once it has exec'd (the spawn may return before)
    assert.is_true(h.wait_until(function() return #(proc.argv(pid) or {}) > 0 end, 10000))
    assert.same({ "sh", "-c", "read x" }, proc.argv(pid))
    job:close_stdin()
    h.finish(loop, job, 10000)
    assert.is_false(proc.alive(pid))
    assert.is_nil(proc.stat(pid))
    assert.is_nil(proc.argv(pid))
    job:close()
    loop:close()
  end)

  it("answers nil for a pid that never existed", function()
    assert.is_nil(proc.stat(2 ^ 22 + 1))
    assert.is_false(proc.alive(2 ^ 22 + 1))
  end)
end)
