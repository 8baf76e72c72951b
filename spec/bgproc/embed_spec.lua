-- Embedding: bgproc inside a C program that links liblua5.4 (built by make
-- as build/lua-host from spec/support/lua-host.c).
local h = require "helpers"
local core = require "bgproc.core"

describe("embedded in a C host", function()
  local loop
  before_each(function() loop = core.new() end)
  after_each(function() loop:close() end)

  local function host(script)
    local job = assert(loop:spawn {
      argv = { h.root .. "/build/lua-host", "-e", script },
      env = h.lua_env(),
    })
    local out = h.finish(loop, job, 10000)
    return out, job:exit()
  end

  it("requires bgproc, runs a job and reads its output", function()
    local out, code = host [[
      local bgproc = require "bgproc"
      local m = bgproc.new { config = {}, plugins = {}, luv = false }
      local r = assert(m:call("createBackgroundProcess", { argv = { "echo", "hello from a job" } }))
      m:call("waitForBackgroundProcess", { processId = r.id })
      io.write(m:call("getBackgroundProcess", { processId = r.id }).output)
      m:shutdown()
    ]]
    assert.equal(0, code)
    assert.equal("hello from a job\n", out)
  end)

  it("ends its jobs when the host exits without calling shutdown", function()
    local out = host [[
      local bgproc = require "bgproc"
      local m = bgproc.new { config = {}, plugins = {}, luv = false }
      local r = assert(m:call("createBackgroundProcess", { command = "sleep 1000 & sleep 1000 & wait" }))
      local h = require "helpers" -- (spec/ is on the path)
      m:run_until(function() return #h.group(r.pid) == 3 end, 5000)
      print(r.pid, #h.group(r.pid))
    ]]
    local pgid, members = out:match("^(%d+)%s+(%d+)")
    pgid = tonumber(pgid)
    assert.truthy(pgid, out)
    assert.equal("3", members, "the job's group was not whole when the host exited")
    assert.is_true(h.wait_until(function() return #h.group(pgid) == 0 end, 2000))
  end)
end)
