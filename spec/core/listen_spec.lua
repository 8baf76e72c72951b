-- bgproc.core's listener (core.listen), what the daemon accepts clients
-- on: real Unix sockets, connected to with luv.
local core = require "bgproc.core"
local uv = require "luv"
local h = require "helpers"

describe("core.listen", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  it("accepts a waiting client, and says EAGAIN when none waits", function()
    local pipe = uv.new_pipe(false) -- luv's first stream opens an fd it keeps
    local base = h.open_fds()
    local l = assert(core.listen(dir .. "/s.sock", 8))
    local fd, msg, name = l:accept()
    assert.is_nil(fd)
    assert.equal("EAGAIN", name)
    assert.matches("^EAGAIN: accept: ", msg)
    local connected = false
    pipe:connect(dir .. "/s.sock", function(err) connected = not err end)
    local before = h.open_fds()
    fd = h.wait_until(function()
      uv.run("nowait")
      return connected and l:accept()
    end, 5000)
    assert.is_number(fd)
    assert.equal(before + 1, h.open_fds())
    local _, uid = core.peercred(fd)
    assert.equal(core.getuid(), uid)
    uv.fs_close(fd)
    pipe:close()
    uv.run("nowait")
    l:close()
    l:close() -- twice is fine
    assert.equal(base, h.open_fds())
    assert.has_error(function() l:fd() end, "attempt to use a closed bgproc.core.Listener")
  end)

  it("refuses a taken path and one too long for a socket, naming them", function()
    local l = assert(core.listen(dir .. "/s.sock"))
    local none, msg, name = core.listen(dir .. "/s.sock")
    assert.is_nil(none)
    assert.equal("EADDRINUSE", name)
    assert.matches("^EADDRINUSE: bind '.*/s%.sock': Address already in use$", msg)
    l:close()
    none, msg, name = core.listen(dir .. "/" .. ("x"):rep(120))
    assert.is_nil(none)
    assert.equal("ENAMETOOLONG", name)
    assert.matches("^ENAMETOOLONG: bind '.*' %(at most 107 bytes%)", msg)
  end)
end)
