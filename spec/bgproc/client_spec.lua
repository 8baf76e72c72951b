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

  -- Regression: the MCP server learned a request's id only once request()
  -- returned; a send that failed answered the callback before that, which
  -- then raised on the nil id and the MCP request was never answered.
  it("answers a request whose send fails at once, its id and progress handler known before", function()
    local out, status = script([[
      local uv = require "luv"
      local client = require "bgproc.client"
      local paths = require "bgproc.lib.paths"
      local pipe, done = uv.new_pipe(false), false
      pipe:connect(paths.socket(), function(err) assert(not err, err) done = true end)
      client.pump(function() return done end, 5000)
      local c = client.wrap(pipe, paths.socket())
      -- our side of the socket shut for writing: the next send fails at once
      local shut = false
      pipe:shutdown(function() shut = true end)
      client.pump(function() return shut end, 5000)
      local got, id = {}, nil
      id = assert(c:request("tools/call", { name = "waitForBackgroundProcess", arguments = {} },
        function(r, err)
          got[#got + 1] = ("id=%s r=%s code=%s"):format(tostring(id), tostring(r), tostring(err and err.code))
        end, function() got[#got + 1] = "progress" end))
      print(#got, got[1], c.closed, next(c.pending), next(c.progress))
      c:close()
    ]])
    assert.equal(0, status, out)
    -- answered once, inside request() (id not yet returned), as a lost connection
    assert.equal("1\tid=nil r=nil code=-32099\ttrue\tnil\tnil\n", out)
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
