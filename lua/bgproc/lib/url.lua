-- URLs a job is waited on ("ready when this answers"). Only loopback
-- addresses: the probe must reach the job on this machine, never send a
-- request elsewhere on a caller's say-so.
local url = {}

local EXPECTED = "expected an http(s) URL on a loopback address (localhost, 127.x.x.x or [::1])"
local DEFAULT_PORT = { http = 80, https = 443 }

local function refuse(s, why)
  local shown = #s > 200 and s:sub(1, 200) .. "..." or s
  return nil, ("%s, got %q (%s)"):format(EXPECTED, shown, why)
end

-- "127.a.b.c" with each part a decimal byte, no leading zero (which some
-- parsers read as octal); else nil, why.
local function ipv4_loopback(host)
  local parts = { host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
  if #parts ~= 4 or parts[1] ~= "127" then return nil, "host " .. host .. " is not loopback" end
  for _, p in ipairs(parts) do
    if #p > 3 or tonumber(p) > 255 or (#p > 1 and p:sub(1, 1) == "0") then
      return nil, "host " .. host .. ": each part 0..255, without leading zeros"
    end
  end
  return host
end

-- The address of a host that names loopback, else nil, why.
local function loopback(host)
  local lower = host:lower()
  if lower == "localhost" then return "127.0.0.1" end
  if lower == "[::1]" then return "::1" end
  if host == "" then return nil, "no host" end
  return ipv4_loopback(host)
end

-- "host[:port]" into host, port; or nil, why.
local function split_authority(authority, scheme)
  if authority:find("@", 1, true) then return nil, "user info is not allowed" end
  local host, port = authority:match("^(%[[^%]]*%]):?(%d*)$")
  if not host then host, port = authority:match("^([^:]*):?(%d*)$") end
  if not host then return nil, "a malformed host or port" end
  if port == "" then return host, DEFAULT_PORT[scheme] end
  local n = #port <= 5 and tonumber(port)
  if not n or n < 1 or n > 65535 then return nil, "port must be 1..65535" end
  return host, n
end

-- s: a URL. Returns { scheme = "http"|"https", host = "127.0.0.1"|"::1"|...,
-- hosts = the addresses to try (localhost: both families), port = int,
-- path = "/..." (with its query, without a fragment) }, or
-- nil, a message saying what was expected.
function url.parse_loopback(s)
  if type(s) ~= "string" then error("url.parse_loopback: a string expected, got " .. type(s), 2) end
  -- nothing that would end or split a request line; no raw non-ASCII
  if s:find("[%c%s\128-\255]") then return refuse(s, "spaces, control characters or raw non-ASCII bytes") end
  local scheme, authority, rest = s:match("^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return refuse(s, "not scheme://host") end
  scheme = scheme:lower()
  if not DEFAULT_PORT[scheme] then return refuse(s, "scheme " .. scheme .. " is not http or https") end
  local host, port = split_authority(authority, scheme)
  if not host then return refuse(s, port) end
  local addr, why = loopback(host)
  if not addr then return refuse(s, why) end
  local path = rest:gsub("#.*$", "")
  if path:sub(1, 1) ~= "/" then path = "/" .. path end
  -- localhost is either family: a server may listen on ::1 only (Node's)
  local hosts = host:lower() == "localhost" and { "127.0.0.1", "::1" } or { addr }
  return { scheme = scheme, host = addr, hosts = hosts, port = port, path = path }
end

return url
