-- bgproc.client from a plain script: connect, call, close, exit normally.
local h = require "helpers"
local core = require "bgproc.core"

describe("bgproc.client", function()
  local d
  setup(function() d = h.private_daemon() end)
  teardown(function() d.stop() end)

  local function script(code)
    local loop = core.new()
    local job = assert(loop:spawn { argv = { h.lua, "-e", code }, env = d.env })
    local out = h.finish(loop, job, 15000)
    local status, sig = job:exit()
    loop:close()
    return out, status or sig
  end

  it("lets a script connect, call and exit normally (no crash at exit)", function()
    local out, status = script([[
      local client = require "bgproc.client"
      local c = assert(client.connect {})
      local r = assert(c:call("tools/call", { name = "listBackgroundProcesses", arguments = {} }))
      c:close()
      print("listed", r.count)
    ]])
    assert.equal(0, status, out)
    assert.equal("listed\t0\n", out)
  end)

  it("reports a daemon it cannot reach, without starting one when asked not to", function()
    local out, status = script([[
      local client = require "bgproc.client"
      local c, err = client.connect { socket = "/nonexistent/d.sock", autostart = false }
      print(c, err)
    ]])
    assert.equal(0, status)
    assert.matches("^nil\tcannot reach the bgproc daemon at /nonexistent/d.sock", out)
  end)
end)
