-- bgproc.sys's HTTP probe (sys.http_probe): real servers
-- (spec/fixtures/http_server.py) answering, refusing, keeping silent,
-- hanging up and talking nonsense.
local sys = require "bgproc.sys"
local h = require "helpers"
local spawned = require "support.spawned"

-- Poll until the probe knows; what poll() then returns.
local function settle(p, timeout_ms)
  local r
  assert(h.wait_until(function()
    r = table.pack(p:poll())
    return r[1] ~= "pending"
  end, timeout_ms or 10000, 5), "the probe stayed pending")
  return table.unpack(r, 1, r.n)
end

describe("sys.http_probe", function()
  -- the servers, started once for the block: ports by name
  local s, port
  setup(function()
    s = spawned.new()
    port = {}
    local function serve(host, names)
      local job = s:start { "python3", h.fixture("http_server.py"), host, table.unpack(names) }
      local i = 0
      for p in s:line(job, "([%d ]+)\n"):gmatch("%d+") do
        i = i + 1
        port[names[i] .. (host == "::1" and "6" or "4")] = math.tointeger(tonumber(p))
      end
    end
    serve("127.0.0.1", { "http", "silent", "close", "reset" })
    serve("::1", { "http", "garbage" })
  end)
  teardown(function() s:stop() end)

  it("reads the status of answers 200, 404 and 500, over IPv4 and IPv6", function()
    local base = h.open_fds()
    for host, to in pairs { ["127.0.0.1"] = port.http4, ["::1"] = port.http6 } do
      for path, status in pairs { ["/ok"] = 200, ["/missing"] = 404, ["/boom"] = 500 } do
        local p = assert(sys.http_probe(host, to, path, 5000))
        assert.equal(status, settle(p), host .. path)
        assert.equal(status, p:poll(), "the answer stays")
        assert.equal(base, h.open_fds(), "its socket is closed once the answer is known")
        p:close()
      end
    end
  end)

  it("says ECONNREFUSED where nothing listens", function()
    -- a port bound (so nobody else takes it) and not listening
    local holder = s:lua("listen.lua", "bound")
    local closed = math.tointeger(tonumber(s:line(holder, "(%d+)\n")))
    local p = sys.http_probe("127.0.0.1", closed, "/", 5000)
    local r, msg, name = settle(p)
    assert.is_nil(r)
    assert.equal("ECONNREFUSED", name)
    assert.equal(("ECONNREFUSED: connect to 127.0.0.1:%d: Connection refused"):format(closed), msg)
  end)

  it("times out against a listener that never answers, without blocking", function()
    local t0 = h.now_ms()
    local p = sys.http_probe("127.0.0.1", port.silent4, "/", 1500)
    assert.equal("pending", p:poll())
    -- a poll that blocked would take the whole 1.5 s; a loaded machine's
    -- scheduler may take a slice or two of it
    assert.is_true(h.now_ms() - t0 < 750, "poll() blocked")
    local r, msg, name = settle(p)
    -- (the probe's clock counts whole milliseconds: up to one less)
    assert.is_true(h.now_ms() - t0 >= 1499, "timed out early: " .. (h.now_ms() - t0) .. " ms")
    assert.is_nil(r)
    assert.equal("ETIMEDOUT", name)
    assert.matches("^ETIMEDOUT: no answer in 1500 ms from 127%.0%.0%.1:%d+:", msg)
    assert.equal("ETIMEDOUT", select(3, p:poll()))
  end)

  it("says EPROTO when the peer closes early or answers what is not HTTP, ECONNRESET on a reset", function()
    local _, msg, name = settle(sys.http_probe("127.0.0.1", port.close4, "/", 5000))
    assert.equal("EPROTO", name)
    assert.matches("^EPROTO: connection closed without an answer by 127%.0%.0%.1:%d+", msg)
    _, msg, name = settle(sys.http_probe("::1", port.garbage6, "/", 5000))
    assert.equal("EPROTO", name)
    assert.matches("^EPROTO: not an HTTP/1%.x status line from %[::1%]:%d+", msg)
    -- closed with our request unread: the kernel resets the connection
    _, msg, name = settle(sys.http_probe("127.0.0.1", port.reset4, "/", 5000))
    assert.equal("ECONNRESET", name)
    assert.matches("^ECONNRESET: receive from 127%.0%.0%.1:%d+", msg)
  end)

  it("raises on misuse: a name for an address, a bad port, path or timeout, a closed probe", function()
    assert.has_error(function() sys.http_probe("localhost", 80, "/", 1000) end)
    assert.has_error(function() sys.http_probe("127.0.0.1", 0, "/", 1000) end)
    assert.has_error(function() sys.http_probe("127.0.0.1", 80, "x", 1000) end)
    assert.has_error(function() sys.http_probe("127.0.0.1", 80, "/a b", 1000) end)
    assert.has_error(function() sys.http_probe("127.0.0.1", 80, "/\r\n", 1000) end)
    assert.has_error(function() sys.http_probe("127.0.0.1", 80, "/", 0) end)
    local base = h.open_fds()
    local p = sys.http_probe("127.0.0.1", 9, "/", 1000)
    p:close()
    p:close() -- twice is fine
    assert.equal(base, h.open_fds())
    assert.has_error(function() p:poll() end, "attempt to use a closed bgproc.sys.HttpProbe")
    do
      local _ <close> = sys.http_probe("127.0.0.1", 9, "/", 1000)
    end
    sys.http_probe("127.0.0.1", 9, "/", 1000) -- left to __gc
    collectgarbage()
    collectgarbage()
    assert.equal(base, h.open_fds())
  end)
end)
