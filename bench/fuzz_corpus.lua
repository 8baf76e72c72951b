-- The fuzzer's lines: a seeded generator of JSON-RPC traffic for the MCP
-- server or the daemon (every method, every tool with good and bad
-- arguments), byte- and structure-level mutators, a safety gate that keeps
-- mutated lines from running anything but harmless commands, and the
-- oracle that says how many answers each line is owed (JSON-RPC 2.0).
--
-- Everything here depends on the seed only (math.random after
-- math.randomseed), never on the server's answers: process ids a tool call
-- needs are written as placeholders "@P<d>@", filled in by the driver at
-- send time from the ids the server has returned so far.
local cjson = require "cjson"
local text = require "bgproc.lib.text"

local corpus = {}

corpus.MAX_LINE = 24 * 1024 * 1024 -- the servers' line limit (docs/protocol.md)

-- ---- a byte-transparent encoder with ordered (and repeatable) keys -----------

local OBJ, ARR, RAW = { __name = "obj" }, { __name = "arr" }, { __name = "raw" }
local NULL = setmetatable({}, { __name = "null" })

-- obj{ "k1", v1, "k2", v2, ... }: key order kept, duplicates allowed
local function obj(kv) return setmetatable(kv or {}, OBJ) end
local function arr(list) return setmetatable(list or {}, ARR) end
local function raw(s) return setmetatable({ s }, RAW) end
corpus.obj, corpus.arr, corpus.raw, corpus.NULL = obj, arr, raw, NULL

local function quote(s)
  -- bytes >= 0x80 go out as they are: invalid UTF-8 is part of the fuzzing
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function encode(v, out)
  local t, mt = type(v), getmetatable(v)
  if t == "string" then out[#out + 1] = quote(v)
  elseif t == "number" then
    out[#out + 1] = math.type(v) == "integer" and tostring(v) or ("%.17g"):format(v)
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif mt == RAW then out[#out + 1] = v[1]
  elseif mt == OBJ then
    out[#out + 1] = "{"
    for i = 1, #v, 2 do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = quote(v[i])
      out[#out + 1] = ":"
      encode(v[i + 1], out)
    end
    out[#out + 1] = "}"
  elseif mt == ARR then
    out[#out + 1] = "["
    for i = 1, #v do
      if i > 1 then out[#out + 1] = "," end
      encode(v[i], out)
    end
    out[#out + 1] = "]"
  else out[#out + 1] = "null" end
end

function corpus.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

local function get(o, key)
  for i = 1, #o, 2 do if o[i] == key then return o[i + 1], i end end
end

local function set(o, key, value)
  local _, i = get(o, key)
  if i then o[i + 1] = value else o[#o + 1], o[#o + 2] = key, value end
end

local function remove(o, key)
  local _, i = get(o, key)
  if i then table.remove(o, i) table.remove(o, i) end
end

local function copy(v)
  local mt = getmetatable(v)
  if mt ~= OBJ and mt ~= ARR then return v end
  local out = {}
  for i, x in ipairs(v) do out[i] = copy(x) end
  return setmetatable(out, mt)
end

-- ---- random helpers ------------------------------------------------------------

local random = math.random
local function pick(list) return list[random(#list)] end
local function chance(p) return random() < p end

local function random_bytes(n, alphabet)
  local out = {}
  for i = 1, n do
    if alphabet then
      local k = random(#alphabet)
      out[i] = alphabet:sub(k, k)
    else
      out[i] = string.char(random(0, 255))
    end
  end
  return table.concat(out)
end

-- ---- what may run ------------------------------------------------------------------

-- The only commands a fuzzed createBackgroundProcess may start: short,
-- quiet, harmless. A line that would run anything else is replaced.
corpus.SAFE_COMMANDS = {
  "true", "echo fuzz", "sleep 0.01", "sleep 0.2", "sleep 1", "printf 'a\\nb\\n'",
  "echo ready; sleep 0.3", "exit 3", "echo err >&2", "printf '\\033[31mred\\033[0m\\r50%%\\r100%%\\n'",
}
corpus.SAFE_ARGVS = { { "true" }, { "echo", "x" }, { "sleep", "0.05" }, { "printf", "%s\\n", "hi" } }

local safe_command = {}
for _, c in ipairs(corpus.SAFE_COMMANDS) do safe_command[c] = true end
local safe_argv = {}
for _, a in ipairs(corpus.SAFE_ARGVS) do safe_argv[table.concat(a, "\0")] = true end

local lenient = cjson.new() -- a superset of what the servers accept
lenient.decode_max_depth(64)

local function strings_only(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  if n ~= #t or n == 0 then return false end
  for _, x in ipairs(t) do if type(x) ~= "string" then return false end end
  return true
end

-- Whether a line may be sent: it starts no command outside the safe lists,
-- stops no daemon, and waits for nothing long (a kill's grace, a wait's
-- timeout). Conservative: any object anywhere in the line counts.
local function unsafe_in(v, depth)
  if type(v) ~= "table" or depth > 70 then return nil end
  if v.method == "daemon/stop" then return "daemon/stop" end
  local c = v.command
  if type(c) == "string" and not safe_command[c] then return "command" end
  local a = v.argv
  if type(a) == "table" and strings_only(a) and not safe_argv[table.concat(a, "\0")] then return "argv" end
  for _, key in ipairs { "graceMs", "timeoutMs" } do
    local n = v[key]
    if type(n) == "number" and n > 5000 then return key end
  end
  for _, x in pairs(v) do
    local why = unsafe_in(x, depth + 1)
    if why then return why end
  end
end

-- The reason a line (text that may hold several) is unsafe, or nil.
function corpus.unsafe(text_)
  for line in (text_ .. "\n"):gmatch("([^\n]*)\n") do
    local ok, v = pcall(lenient.decode, line)
    local why = ok and unsafe_in(v, 0)
    if why then return why end
  end
end

-- ---- the oracle: answers a line is owed ----------------------------------------------

local strict = cjson.new() -- JSON as RFC 8259 has it, as the servers decode it
strict.decode_invalid_numbers(false)
strict.decode_max_depth(64)
corpus.strict = strict

-- A table key for an id as it comes back: numbers by value (1 and 1.0
-- are one id), strings as the server writes them (valid UTF-8).
function corpus.id_key(id)
  if id == nil or id == cjson.null then return "null" end
  if type(id) == "number" then
    if id == 0 then id = 0 end -- -0
    local i = math.tointeger(id)
    return i and ("n:%d"):format(i) or ("n:%.17g"):format(id)
  end
  return "s:" .. text.utf8(id)
end

local function finite_number(x)
  return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge
end

-- What JSON-RPC 2.0 says a server owes for one line:
--   { answers = 0 | 1, key = id key, msg = the decoded object or nil,
--     request = true for a valid request, code = the expected error code }
-- Blank lines (whitespace only) are ignored. A line over MAX_LINE, one that
-- is not JSON (-32700), not an object, a batch (not supported: -32600), or
-- an object that is not a valid request or notification gets one error,
-- with the request's id when it has a usable one, else null. A valid
-- request (an "id" that is a string, a finite number or null) gets one
-- answer with its id; a notification (no "id") and a response none.
function corpus.owed(line)
  if line:find("^%s*$") then return { answers = 0 } end
  if #line > corpus.MAX_LINE then return { answers = 1, key = "null", code = -32600 } end
  local ok, v = pcall(strict.decode, line)
  if not ok then return { answers = 1, key = "null", code = -32700 } end
  if type(v) ~= "table" or line:find("^%s*%[") then return { answers = 1, key = "null", code = -32600 } end
  local id = v.id
  local id_ok = id == nil or id == cjson.null or type(id) == "string" or finite_number(id)
  if not id_ok then return { answers = 1, key = "null", code = -32600 } end
  local key = corpus.id_key(id)
  if v.jsonrpc ~= "2.0" then return { answers = 1, key = key, code = -32600 } end
  if v.method == nil and (v.result ~= nil or v.error ~= nil) then return { answers = 0 } end
  if type(v.method) ~= "string" then return { answers = 1, key = key, code = -32600 } end
  local p = v.params
  if p ~= nil and p ~= cjson.null and type(p) ~= "table" then return { answers = 1, key = key, code = -32600 } end
  if id == nil then return { answers = 0, msg = v, notification = true } end
  return { answers = 1, key = key, msg = v, request = true }
end

-- ---- the generator -----------------------------------------------------------------

local TOOLS = { "createBackgroundProcess", "listBackgroundProcesses", "getBackgroundProcess",
  "killProcesses", "waitForBackgroundProcess", "sendBackgroundProcessInput" }
corpus.TOOLS = TOOLS

local SESSIONS = { "fz-a", "fz-b", "fz-c" }
local STATUSES = { "running", "exited", "failed", "killed", "starting", "timeout", "sleeping" }
local UNICODE = { "héllo wörld", "日本語のテキスト", "emoji 🎉🚀", "\u{FFFD}", "عربى", "e\u{301}",
                  "\u{200B}zw", "\u{10FFFF}" }
local BAD_UTF8 = { "\xff\xfe", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "a\x80b", "\xf4\x90\x80\x80" }

local function pid_ref() return "@P" .. random(0, 9) .. "@" end

local function long_string(n)
  return random_bytes(math.min(n, 64), "abcdefghij"):rep(n // 64 + 1):sub(1, n)
end

local function tagged_string()
  local r = random(10)
  if r <= 4 then return pick(UNICODE) end
  if r <= 6 then return pick(BAD_UTF8) end
  if r == 7 then return "a\0b" end
  if r == 8 then return "\1\2\27[31m\t\r" end
  if r == 9 then return "" end
  return long_string(pick { 100, 201, 1001, 4097, 65537 })
end

local function deep(n, leaf)
  local v = leaf or 1
  for _ = 1, n do v = chance(0.5) and arr { v } or obj { "d", v } end
  return v
end

-- A value of any kind, mostly wrong for wherever it goes.
local function wild_value()
  local r = random(24)
  if r == 1 then return 0 elseif r == 2 then return -1 elseif r == 3 then return 1.5
  elseif r == 4 then return raw("-0") elseif r == 5 then return raw("1e300")
  elseif r == 6 then return raw("1e999") elseif r == 7 then return raw("9007199254740993")
  elseif r == 8 then return raw("-9223372036854775809") elseif r == 9 then return true
  elseif r == 10 then return false elseif r == 11 then return NULL
  elseif r == 12 then return obj {} elseif r == 13 then return arr {}
  elseif r == 14 then return arr { 1, "x", NULL } elseif r == 15 then return obj { "a", 1 }
  elseif r == 16 then return deep(random(5, 80))
  elseif r == 17 then return raw(pick { "NaN", "Infinity", "-Infinity", "0x10", "1e-400", "1E+2", "01" })
  elseif r == 18 then return 2 ^ 31 elseif r == 19 then return -(2 ^ 53)
  elseif r == 20 then return random(-5, 100000) end
  return tagged_string()
end
corpus.wild_value = wild_value

-- Good arguments for each tool, some with every option.
local GOOD = {
  createBackgroundProcess = function()
    local a = obj {}
    if chance(0.75) then set(a, "command", pick(corpus.SAFE_COMMANDS))
    else set(a, "argv", arr(copy(pick(corpus.SAFE_ARGVS)))) end
    if chance(0.5) then set(a, "name", "fz-" .. random(100)) end
    if chance(0.4) then set(a, "tags", arr { pick { "a", "b", "web" }, pick { "c", "x" } }) end
    if chance(0.1) then set(a, "global", true) end
    if chance(0.2) then set(a, "env", obj { "FUZZ_VAR", pick(UNICODE) }) end
    if chance(0.05) then set(a, "inheritEnv", false) end
    if chance(0.1) then set(a, "stdin", "pipe")
    elseif chance(0.08) then set(a, "pty", true) end
    if chance(0.1) then set(a, "timeoutMs", random(50, 2000)) end
    if chance(0.1) then set(a, "outputBytes", random(1024, 65536)) end
    if chance(0.2) then set(a, "readyPattern", pick { "ready", "^a$", "(x|y)+", "fuzz" }) end
    return a
  end,
  listBackgroundProcesses = function()
    local a = obj {}
    if chance(0.3) then set(a, "status", chance(0.5) and pick(STATUSES) or arr { "running", "exited" }) end
    if chance(0.2) then set(a, "tags", arr { "a" }) end
    if chance(0.1) then set(a, "allTags", arr { "a", "c" }) end
    if chance(0.2) then set(a, "name", "fz") end
    if chance(0.2) then set(a, "limit", random(1, 20)) end
    if chance(0.1) then set(a, "sessionId", pick(SESSIONS)) end
    if chance(0.1) then set(a, "global", chance(0.5)) end
    return a
  end,
  getBackgroundProcess = function()
    local a = obj { chance(0.9) and "processId" or "taskId", pid_ref() }
    if chance(0.3) then set(a, "lines", random(0, 50)) end
    if chance(0.3) then set(a, "since", random(0, 20)) end
    if chance(0.2) then set(a, "maxBytes", random(1, 200)) end
    if chance(0.2) then set(a, "filter", pick { "a", "^b", "/RED/i", "fuzz|x" }) end
    if chance(0.2) then set(a, "stream", pick { "both", "stdout", "stderr" }) end
    if chance(0.2) then set(a, "stripAnsi", chance(0.5)) end
    return a
  end,
  killProcesses = function()
    local a = obj {}
    local r = random(5)
    if r <= 2 then set(a, "processId", pid_ref())
    elseif r == 3 then set(a, "tags", arr { "a" })
    elseif r == 4 then set(a, "status", "running")
    else set(a, "all", true) end
    if chance(0.4) then set(a, "signal", pick { "TERM", "KILL", "INT", 9, "HUP", "USR1", "STOP", "CHLD" }) end
    if chance(0.6) then set(a, "graceMs", random(0, 300)) end
    return a
  end,
  waitForBackgroundProcess = function()
    local a = obj { "processId", pid_ref(), "timeoutMs", random(0, 500) }
    local r = random(4)
    if r == 2 then set(a, "until", "output") set(a, "pattern", pick { "fuzz", "b", "ready" })
    elseif r == 3 then set(a, "until", "ready")
    elseif r == 4 then set(a, "until", "exit") end
    if chance(0.2) then set(a, "since", random(0, 10)) end
    return a
  end,
  sendBackgroundProcessInput = function()
    local a = obj { "processId", pid_ref() }
    local r = random(3)
    if r <= 2 then set(a, "input", pick { "hello\n", "x", pick(UNICODE), "" }) end
    if r >= 2 then set(a, "eof", true) end
    return a
  end,
}

-- Bad arguments: good ones with one thing wrong.
local function bad_args(tool)
  local a = GOOD[tool]()
  local r = random(9)
  if r == 1 and #a > 0 then -- a field of the wrong type or value
    local i = random(#a // 2) * 2
    a[i] = wild_value()
  elseif r == 2 and #a > 0 then -- a required field missing
    local i = random(#a // 2) * 2 - 1
    table.remove(a, i) table.remove(a, i)
  elseif r == 3 then -- an unknown field
    set(a, pick { "unknown", "Command", "process_id", "", "\xff", "__proto__" }, wild_value())
  elseif r == 4 then -- a huge string
    set(a, pick { "name", "filter", "pattern", "input", "cwd", "processId" }, long_string(pick { 1001, 70000, 300000 }))
  elseif r == 5 then -- deep nesting
    set(a, pick { "tags", "env", "status", "argv" }, deep(random(10, 70), "x"))
  elseif r == 6 then -- numbers out of range
    set(a, pick { "timeoutMs", "graceMs", "lines", "since", "maxBytes", "limit", "outputBytes" },
      pick { -1, -0.5, 0, 1.5, raw("1e300"), raw("-1e999"), 2 ^ 62, raw("1e-320") })
  elseif r == 7 then -- strings that are odd
    set(a, pick { "name", "command", "processId", "signal", "stream", "status", "until", "filter" }, tagged_string())
  elseif r == 8 then -- the arguments themselves wrong
    return pick { NULL, "x", 5, arr { 1 }, true, arr {} }
  elseif #a > 0 then -- the same key twice
    a[#a + 1], a[#a + 2] = a[1], wild_value()
  else
    set(a, "x", wild_value())
  end
  return a
end

-- The envelope: { jsonrpc, id, method, params } in a random key order.
local function message(id, method, params)
  local m = obj { "jsonrpc", "2.0" }
  if id ~= nil then set(m, "id", id) end
  set(m, "method", method)
  if params ~= nil then set(m, "params", params) end
  if chance(0.1) then -- key order must not matter
    local pairs_ = {}
    for i = 1, #m, 2 do pairs_[#pairs_ + 1] = { m[i], m[i + 1] } end
    for i = #pairs_, 2, -1 do
      local j = random(i)
      pairs_[i], pairs_[j] = pairs_[j], pairs_[i]
    end
    m = obj {}
    for _, p in ipairs(pairs_) do m[#m + 1], m[#m + 2] = p[1], p[2] end
  end
  return m
end

local function odd_id(n)
  local r = random(16)
  if r == 1 then return -n elseif r == 2 then return n + 0.5 elseif r == 3 then return raw("1e300")
  elseif r == 4 then return raw("123456789012345678901234567890") elseif r == 5 then return ""
  elseif r == 6 then return long_string(random(1000, 20000)) elseif r == 7 then return "ïd-日本-" .. n
  elseif r == 8 then return "\xff\xfe" .. n elseif r == 9 then return "a\0b" .. n
  elseif r == 10 then return NULL elseif r == 11 then return obj { "id", n }
  elseif r == 12 then return arr { n } elseif r == 13 then return true
  elseif r == 14 then return raw("1e999") elseif r == 15 then return raw("-0") end
  return '"quoted\\' .. n
end
corpus.odd_id = odd_id

-- ---- byte-level mutators ------------------------------------------------------------

local TOKENS = { '"', "{", "}", "[", "]", ",", ":", "\\", "null", "1e999", "-", "\\u0000", "\\ud800", "\0",
  "\n", "\r", "\xff", "true", '"id":', '"method":"ping"', "\\u00e9", "\t", "0", "9999999999999999999" }

local mutators = {
  function(s) -- flip bits
    local b = { s:byte(1, -1) }
    for _ = 1, random(1, 4) do
      local i = random(#b)
      b[i] = b[i] ~ (1 << random(0, 7))
    end
    return string.char(table.unpack(b))
  end,
  function(s) -- set a byte
    local i = random(#s)
    return s:sub(1, i - 1) .. string.char(random(0, 255)) .. s:sub(i + 1)
  end,
  function(s) -- insert a token
    local i = random(#s + 1)
    return s:sub(1, i - 1) .. pick(TOKENS) .. s:sub(i)
  end,
  function(s) -- delete a range
    local i = random(#s)
    return s:sub(1, i - 1) .. s:sub(i + random(1, 8))
  end,
  function(s) return s:sub(1, random(0, #s - 1)) end, -- truncate
  function(s, prev) -- splice with an earlier line
    return s:sub(1, random(#s)) .. prev:sub(random(#prev))
  end,
  function(s) -- repeat a piece
    local i = random(#s)
    local j = math.min(#s, i + random(0, 40))
    return s:sub(1, j) .. s:sub(i, j) .. s:sub(j + 1)
  end,
  function(s) return s .. "\r" end,
  function(s) return s .. "\n" .. s end, -- the same request twice
}

-- ---- the stream ----------------------------------------------------------------------

local Gen = {}
Gen.__index = Gen

-- corpus.new{ target = "mcp" | "daemon", seed = n, huge = n lines over MAX_LINE, lines = n }
function corpus.new(o)
  math.randomseed(o.seed)
  local self = setmetatable({ target = o.target, n = 0, prev = { "{}" }, huge_left = o.huge or 0,
                              lines = o.lines or 1, unsafe = 0 }, Gen)
  self.huge_every = self.huge_left > 0 and math.max(1, self.lines // (self.huge_left + 1)) or math.huge
  return self
end

function Gen:tool_call(id)
  local tool = chance(0.97) and pick(TOOLS) or pick { "noSuchTool", "", "createbackgroundprocess", "rm -rf /" }
  local args = (chance(0.55) or not GOOD[tool]) and (GOOD[tool] and GOOD[tool]() or obj {}) or bad_args(tool)
  local p = obj { "name", tool }
  if args ~= nil and not chance(0.03) then set(p, "arguments", args) end
  if self.target == "mcp" and chance(0.05) then
    set(p, "_meta", obj { "progressToken", chance(0.5) and id or wild_value() })
  end
  if self.target == "daemon" then
    if chance(0.15) then set(p, "sessionId", chance(0.8) and pick(SESSIONS) or wild_value()) end
    if chance(0.05) then set(p, "progress", chance(0.7) or wild_value()) end
  end
  if chance(0.05) then set(p, "extra", wild_value()) end
  return message(id, "tools/call", p)
end

-- One valid-looking message (good or bad params) for request number n.
function Gen:base(n)
  local id = chance(0.8) and n or ("s-" .. n)
  if chance(0.08) then id = odd_id(n) end
  local r = random(100)
  if r <= 55 then return self:tool_call(id) end
  if r <= 62 then return message(id, "ping", chance(0.8) and nil or wild_value()) end
  if r <= 67 then return message(id, "tools/list", chance(0.9) and obj {} or wild_value()) end
  if r <= 72 then -- a cancel of a recent request, mostly as a notification
    return message(chance(0.9) and nil or id, "notifications/cancelled",
      obj { "requestId", chance(0.8) and (n - random(1, 5)) or wild_value(), "reason", "fuzz" })
  end
  if r <= 76 then
    return message(id, pick { "no/such", "", "PING", "tools/call/x", "notifications/x", "rpc.discover" })
  end
  if r <= 78 then return message(nil, pick { "ping", "no/such", "notifications/x", "tools/call" }, obj {}) end
  if self.target == "mcp" then
    if r <= 88 then
      return message(id, "initialize", obj { "protocolVersion", chance(0.7) and pick { "2025-11-25", "2025-06-18",
        "2025-03-26", "1999-01-01" } or wild_value(), "capabilities", obj {}, "clientInfo",
        obj { "name", "fuzz", "version", "1" } })
    end
    return message(chance(0.9) and nil or id, "notifications/initialized")
  end
  if r <= 82 then return message(id, "hello", obj { "client", chance(0.7) and "fuzz" or wild_value() }) end
  if r <= 86 then return message(id, "daemon/status") end
  if r <= 95 then
    local bind = chance(0.8) and pick { "connection", "none", "pid" } or wild_value()
    local p = obj { "sessionId", chance(0.8) and pick(SESSIONS) or wild_value(), "bind", bind }
    if bind == "pid" or chance(0.1) then set(p, "pid", chance(0.7) and pick { 1, self.my_pid or 1 } or wild_value()) end
    return message(id, "session/open", p)
  end
  return message(id, "session/close", obj { "sessionId", chance(0.8) and pick(SESSIONS) or wild_value() })
end

-- Structure-level damage to a message: the envelope or params.
local function damage(m)
  local r = random(8)
  if r == 1 then set(m, "id", odd_id(random(1000)))
  elseif r == 2 then set(m, "jsonrpc", pick { "1.0", 2, NULL, "2.0 ", "" }) if chance(0.3) then remove(m, "jsonrpc") end
  elseif r == 3 then set(m, "method", wild_value())
  elseif r == 4 then set(m, "params", pick { arr { 1, 2 }, "x", 7, NULL, true, arr {} })
  elseif r == 5 then remove(m, pick { "id", "method", "params" })
  elseif r == 6 then set(m, "result", obj {}) if chance(0.5) then remove(m, "method") end
  elseif r == 7 then m[#m + 1], m[#m + 2] = "id", odd_id(random(1000)) -- a duplicate key
  else m[#m + 1], m[#m + 2] = "method", pick { "ping", "no/such" } end
  return m
end

function Gen:raw_line(n)
  local r = random(100)
  if r <= 55 then return corpus.encode(self:base(n)) end
  if r <= 75 then return corpus.encode(damage(self:base(n))) end
  if r <= 80 then -- a batch
    local items = {}
    for i = 1, random(0, 4) do items[i] = self:base(n * 10 + i) end
    return corpus.encode(arr(items))
  end
  if r <= 83 then return pick { "", " ", "\t", "\r", "   \t  " } end
  if r <= 87 then return random_bytes(random(1, 300)) end -- garbage
  if r <= 89 then return pick { "42", "null", "true", '"ping"', "[]", "{}", "1.5", "-0" } end
  if r <= 91 then -- a long line: a valid ping with a big pad, or garbage
    local size = pick { 4096, 65536, 300000, 1048576 }
    if chance(0.5) then
      return corpus.encode(message(n, "ping", obj { "pad", long_string(size) }))
    end
    return long_string(size)
  end
  return nil -- a mutated one
end

-- The next line to send (it may hold newlines: one line of text per
-- request, as the server will split it), and its number.
function Gen:next()
  self.n = self.n + 1
  local n = self.n
  if self.huge_left > 0 and n % self.huge_every == 0 then
    self.huge_left = self.huge_left - 1
    return ("z"):rep(corpus.MAX_LINE + 1 + random(0, 1000)), n
  end
  local line
  repeat
    line = self:raw_line(n)
    if not line then
      line = corpus.encode(chance(0.7) and self:base(n) or damage(self:base(n)))
      for _ = 1, random(1, 3) do
        if #line == 0 then break end
        line = mutators[random(#mutators)](line, pick(self.prev))
      end
    end
    local unsafe = corpus.unsafe(line)
    if unsafe then self.unsafe = self.unsafe + 1 end
  until not unsafe
  if #line < 4096 then -- splicing material: the last 16 short lines
    self.prev[(#self.prev < 16) and #self.prev + 1 or (n % 16) + 1] = line
  end
  return line, n
end

return corpus
