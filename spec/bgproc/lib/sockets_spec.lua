-- bgproc.lib.sockets: the listening sockets of processes, against real
-- listeners (spec/fixtures/listen.lua) in their own process groups.
local h = require "helpers"
local spawned = require "support.spawned"
local sockets = require "bgproc.lib.sockets"

local GONE = 2 ^ 22 + 1 -- above the kernel's pid_max: never a process

-- The ports a listen.lua job printed, as integers.
local function ports_of(s, job)
  local out = {}
  for p in s:line(job, "([%d ]+)\n"):gmatch("%d+") do out[#out + 1] = math.tointeger(tonumber(p)) end
  return out
end

local function by_port(list)
  table.sort(list, function(a, b) return a.port < b.port end)
  return list
end

describe("bgproc.lib.sockets", function()
  local s
  before_each(function() s = spawned.new() end)
  after_each(function() s:stop() end)

  it("finds a process's TCP and UDP listeners, IPv4 and IPv6, and not a connected UDP socket", function()
    local job = s:lua("listen.lua", "tcp4", "tcp6", "udp4", "udp6", "tcp4any", "tcp6any", "udpc")
    local p = ports_of(s, job)
    local pid = job:pid()
    local want = by_port {
      { protocol = "tcp", address = "127.0.0.1", port = p[1], family = 4, pid = pid },
      { protocol = "tcp", address = "::1", port = p[2], family = 6, pid = pid },
      { protocol = "udp", address = "127.0.0.1", port = p[3], family = 4, pid = pid },
      { protocol = "udp", address = "::1", port = p[4], family = 6, pid = pid },
      { protocol = "tcp", address = "0.0.0.0", port = p[5], family = 4, pid = pid },
      { protocol = "tcp", address = "::", port = p[6], family = 6, pid = pid },
    }
    assert.same({ want }, sockets.listening { { pid } })
    -- the same pid twice, or as JSON gives it (a float), is the same listeners
    assert.same({ want }, sockets.listening { { pid, pid + 0.0 } })
  end)

  it("finds a listener that is a child of the group's leader", function()
    -- sh leads the group; its background child listens (fd 3: its stdin)
    local job = s:sh([[exec 3<&0; "$0" "$1" tcp4 <&3 & wait]], h.fixture("listen.lua"))
    local port = ports_of(s, job)[1]
    local group = h.group(job:pid())
    assert.equal(2, #group)
    local r = sockets.listening { group }[1]
    assert.equal(1, #r)
    assert.equal(port, r[1].port)
    assert.not_equal(job:pid(), r[1].pid)
    assert.equal(job:pid(), h.stat(r[1].pid).pgrp)
  end)

  it("answers each list in order, and nothing for a pid that is gone", function()
    local a = s:lua("listen.lua", "tcp4")
    local b = s:lua("listen.lua", "udp4")
    local pa, pb = ports_of(s, a)[1], ports_of(s, b)[1]
    local r = sockets.listening { { b:pid() }, { GONE }, {}, { GONE, a:pid() } }
    assert.equal(4, #r)
    assert.equal(pb, r[1][1].port)
    assert.equal("udp", r[1][1].protocol)
    assert.same({}, r[2])
    assert.same({}, r[3])
    assert.equal(pa, r[4][1].port)
    assert.equal(a:pid(), r[4][1].pid)
    -- once the listener has exited, its port is nobody's
    a:close()
    assert.same({ {} }, sockets.listening { { a:pid() } })
  end)
end)
