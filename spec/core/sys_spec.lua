-- bgproc.sys: the daemon's OS helpers. Its listener (sys.listen), what the
-- daemon accepts clients on: real Unix sockets, connected to with luv.
local sys = require "bgproc.sys"
local uv = require "luv"
local h = require "helpers"

describe("sys.listen", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  it("accepts a waiting client, and says EAGAIN when none waits", function()
    local pipe = uv.new_pipe(false) -- luv's first stream opens an fd it keeps
    local base = h.open_fds()
    local l = assert(sys.listen(dir .. "/s.sock", 8))
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
    local _, uid = sys.peercred(fd)
    assert.equal(sys.getuid(), uid)
    uv.fs_close(fd)
    pipe:close()
    uv.run("nowait")
    l:close()
    l:close() -- twice is fine
    assert.equal(base, h.open_fds())
    assert.has_error(function() l:fd() end, "attempt to use a closed bgproc.sys.Listener")
  end)

  it("refuses a taken path and one too long for a socket, naming them", function()
    local l = assert(sys.listen(dir .. "/s.sock"))
    local none, msg, name = sys.listen(dir .. "/s.sock")
    assert.is_nil(none)
    assert.equal("EADDRINUSE", name)
    assert.matches("^EADDRINUSE: bind '.*/s%.sock': Address already in use$", msg)
    l:close()
    none, msg, name = sys.listen(dir .. "/" .. ("x"):rep(120))
    assert.is_nil(none)
    assert.equal("ENAMETOOLONG", name)
    assert.matches("^ENAMETOOLONG: bind '.*' %(at most 107 bytes%)", msg)
  end)
end)

describe("bgproc.sys", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  it("holds a lock until it is closed, and says EAGAIN while it is held", function()
    local base = h.open_fds()
    local lock = assert(sys.lock(dir .. "/l.lock"))
    local none, msg, name = sys.lock(dir .. "/l.lock")
    assert.is_nil(none)
    assert.equal("EAGAIN", name)
    assert.matches("^EAGAIN: lock '.*/l%.lock': ", msg)
    lock:close()
    lock = assert(sys.lock(dir .. "/l.lock"))
    lock:close()
    assert.equal(base, h.open_fds())
  end)

  it("watches a process through a pidfd", function()
    local p, msg, name = sys.pidfd(h.self_pid())
    if name == "ENOSYS" then return end -- valgrind knows no pidfd_open
    assert(p, msg)
    assert.is_true(p:alive())
    assert.is_number(p:fd())
    p:close()
    assert.has_error(function() p:fd() end, "attempt to use a closed bgproc.sys.Pidfd")
    local none, _, gone = sys.pidfd(0x7fffffff)
    assert.is_nil(none)
    assert.equal("ESRCH", gone)
  end)

  it("is where the OS helpers live: bgproc.core keeps only jobs", function()
    local core = require "bgproc.core"
    for _, f in ipairs { "peercred", "pidfd", "lock", "listen", "getuid" } do
      assert.is_function(sys[f], f)
      assert.is_nil(core[f], f)
    end
    assert.is_function(core.leave_job_cgroup)
    assert.equal(io.popen("id -u"):read("n"), sys.getuid())
  end)
end)
