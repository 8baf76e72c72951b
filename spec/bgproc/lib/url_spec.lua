-- bgproc.lib.url: the URLs a job may be waited on (loopback only).
local url = require "bgproc.lib.url"

local EXPECTED = "expected an http(s) URL on a loopback address (localhost, 127.x.x.x or [::1]), got "

describe("bgproc.lib.url.parse_loopback", function()
  it("reads loopback URLs, with their default ports and a path always", function()
    local cases = {
      ["http://localhost:3000/health?ready=1#top"] = { "http", "127.0.0.1", 3000, "/health?ready=1" },
      ["https://127.1.2.3"] = { "https", "127.1.2.3", 443, "/" },
      ["http://127.0.0.1"] = { "http", "127.0.0.1", 80, "/" },
      ["http://[::1]:8080/x/y"] = { "http", "::1", 8080, "/x/y" },
      ["HTTP://LocalHost:/a"] = { "http", "127.0.0.1", 80, "/a" },
      ["http://localhost?q=1"] = { "http", "127.0.0.1", 80, "/?q=1" },
      ["http://127.255.255.254:65535/%20x"] = { "http", "127.255.255.254", 65535, "/%20x" },
    }
    for s, want in pairs(cases) do
      -- localhost is tried on both families; an address is itself
      local hosts = s:lower():find("localhost", 1, true) and { "127.0.0.1", "::1" } or { want[2] }
      assert.same({ scheme = want[1], host = want[2], hosts = hosts, port = want[3], path = want[4] },
        url.parse_loopback(s), s)
    end
  end)

  it("refuses other hosts, schemes, user info, bad ports and unsafe characters, saying what it expected", function()
    local cases = {
      ["http://example.com/"] = "host example.com is not loopback",
      ["http://10.0.0.1:80/"] = "host 10.0.0.1 is not loopback",
      ["http://[::2]/"] = "host [::2] is not loopback",
      ["http://127.0.0.01/"] = "each part 0..255, without leading zeros",
      ["http://127.0.0.256/"] = "each part 0..255",
      ["http://:80/"] = "no host",
      ["http://user:pw@localhost/"] = "user info is not allowed",
      ["http://localhost:0/"] = "port must be 1..65535",
      ["http://localhost:65536/"] = "port must be 1..65535",
      ["http://localhost:123456789012/"] = "port must be 1..65535",
      ["http://localhost:80a/"] = "a malformed host or port",
      ["http://::1/"] = "a malformed host or port",
      ["ftp://localhost/"] = "scheme ftp is not http or https",
      ["localhost:3000"] = "not scheme://host",
      [""] = "not scheme://host",
      ["http://localhost/a b"] = "spaces, control characters",
      ["http://localhost/\r\nX: y"] = "spaces, control characters",
      [" http://localhost/"] = "spaces, control characters",
      ["http://localhost/caf\195\169"] = "raw non-ASCII",
    }
    for s, why in pairs(cases) do
      local r, msg = url.parse_loopback(s)
      assert.is_nil(r, s)
      assert.equal(EXPECTED, msg:sub(1, #EXPECTED), s)
      assert.truthy(msg:find(("%q"):format(s), 1, true), "the message quotes " .. s)
      assert.truthy(msg:find(why, 1, true), msg)
    end
  end)

  it("raises on what is not a string", function()
    assert.has_error(function() url.parse_loopback(nil) end, "url.parse_loopback: a string expected, got nil")
    assert.has_error(function() url.parse_loopback(80) end)
  end)
end)
