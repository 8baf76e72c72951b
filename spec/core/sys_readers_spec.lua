-- bgproc.sys's readers of /proc (sys.proc_scan, sys.socket_inodes,
-- sys.inet_listeners): this process and real children, nothing mocked.
local sys = require "bgproc.sys"
local h = require "helpers"
local spawned = require "support.spawned"

local GONE = 2 ^ 22 + 1 -- above the kernel's pid_max: never a process

-- proc_scan's row of pid: { pgid, ticks, rss }, or nil.
local function scanned(pid)
  local pids, pgids, ticks, rss = assert(sys.proc_scan())
  assert.is_true(#pids == #pgids and #pids == #ticks and #pids == #rss)
  for i = 1, #pids do
    if pids[i] == pid then return { pgid = pgids[i], ticks = ticks[i], rss = rss[i] } end
  end
end

describe("sys.proc_scan", function()
  local s
  before_each(function() s = spawned.new() end)
  after_each(function() s:stop() end)

  it("lists this process with its group, CPU ticks and RSS pages, and leaks no fd", function()
    local base = h.open_fds()
    local before = h.stat(h.self_pid())
    local me = scanned(h.self_pid())
    local after = h.stat(h.self_pid())
    assert.equal(before.pgrp, me.pgid)
    assert.is_true(before.cpu <= me.ticks and me.ticks <= after.cpu)
    local rss_kib = h.vm_kib("VmRSS")
    assert.is_true(math.abs(me.rss * sys.page_size() / 1024 - rss_kib) < rss_kib / 2, "RSS near VmRSS")
    assert.equal(base, h.open_fds())
    assert.is_nil(scanned(GONE))
  end)

  it("leaves out zombies", function()
    local job = s:sh [[true & exec "$0" -e 'print("up") io.stdout:flush() io.read("a")']]
    s:line(job, "up\n")
    assert.is_true(h.wait_until(function() return #h.zombies_of(job:pid()) == 1 end, 5000))
    assert.is_nil(scanned(h.zombies_of(job:pid())[1]))
    assert.equal(job:pid(), scanned(job:pid()).pgid)
  end)

  it("gives /proc's units", function()
    assert.is_true(sys.clock_ticks() > 0)
    local page = sys.page_size()
    assert.is_true(page >= 4096 and page & (page - 1) == 0)
  end)
end)

describe("sys.socket_inodes and sys.inet_listeners", function()
  local s
  before_each(function() s = spawned.new() end)
  after_each(function() s:stop() end)

  -- A listen.lua job holding kinds: its pid, its ports.
  local function listener(...)
    local job = s:lua("listen.lua", ...)
    local ports = {}
    for p in s:line(job, "([%d ]+)\n"):gmatch("%d+") do ports[#ports + 1] = math.tointeger(tonumber(p)) end
    return job:pid(), ports
  end

  it("find a process's listener by its socket's inode", function()
    local pid, ports = listener("tcp6")
    local base = h.open_fds()
    local held = {}
    for _, inode in ipairs(assert(sys.socket_inodes(pid))) do held[inode] = true end
    local found
    for _, l in ipairs(assert(sys.inet_listeners())) do
      if l.port == ports[1] and held[l.inode] then found = l end
    end
    assert.same({ protocol = "tcp", family = 6, address = "::1", port = ports[1], inode = found and found.inode }, found)
    assert.equal(base, h.open_fds())
  end)

  it("read the same listeners through sock_diag as from /proc/net", function()
    -- one of each kind, and a connected UDP socket (no listener)
    local _, ports = listener("tcp4", "tcp6any", "udp4any", "udp6", "udpc")
    local function mine(how)
      local wanted, out = {}, {}
      for _, p in ipairs(ports) do wanted[p] = true end
      for _, l in ipairs(assert(sys.inet_listeners(how))) do
        if wanted[l.port] then out[#out + 1] = ("%s%d [%s]:%d %d"):format(l.protocol, l.family, l.address, l.port, l.inode) end
      end
      table.sort(out)
      return out
    end
    local diag = mine()
    assert.equal(4, #diag, table.concat(diag, "\n"))
    assert.same(diag, mine("proc"))
    assert.same(diag, mine("diag"))
    assert.has_error(function() sys.inet_listeners("ss") end)
  end)

  it("say ENOENT for a process that is gone, EACCES for one not ours; raise on a bad pid", function()
    local none, msg, name = sys.socket_inodes(GONE)
    assert.is_nil(none)
    assert.equal("ENOENT", name)
    assert.equal(("ENOENT: open /proc/%d/fd: No such file or directory"):format(GONE), msg)
    -- as root, the same question asked by nobody (setpriv, util-linux)
    local ask = "local sys = require 'bgproc.sys' print(select(3, sys.socket_inodes(1)))"
    if sys.getuid() ~= 0 then
      assert.equal("EACCES", select(3, sys.socket_inodes(1)))
    else
      local job = s:start { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", h.lua, "-e", ask }
      assert.equal("EACCES", s:line(job, "(%u+)\n"))
    end
    assert.has_error(function() sys.socket_inodes(0) end)
    assert.has_error(function() sys.socket_inodes("x") end)
  end)
end)
