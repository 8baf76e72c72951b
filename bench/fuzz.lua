-- Bad input at scale: send N fuzzed JSON-RPC lines to `bgproc mcp` and to
-- the daemon, and check that every request gets exactly one answer, in
-- time, as valid JSON, that the server never dies, and that it still
-- serves a valid call at the end.
--
--   lua5.4 bench/fuzz.lua [--lines 100000] [--seed N]
--                         [--target mcp|daemon|both|standalone|all]
--                         [--window 64] [--deadline-ms 20000] [--huge N] [--json] [--verbose]
--
-- Targets: mcp (`bgproc mcp`, through the daemon), daemon (its socket,
-- directly), both (those two, the default), standalone (`bgproc mcp
-- --standalone`, the engine in-process), all (the three). Each target
-- gets a private daemon (its own socket, HOME, XDG and TMP dirs in a
-- throwaway directory); this process is the subreaper of all it starts,
-- so whatever outlives the daemon comes back to it and is counted as a
-- stray (and killed). Lines come from bench/fuzz_corpus.lua, the same for
-- a seed; the seed is printed. --huge: lines over the 24 MiB limit
-- (default one per 50,000). Exit status 0 only when every check held.
--
-- "A request" is what JSON-RPC 2.0 says must be answered (corpus.owed):
-- a line that is not JSON, not an object, a batch, or an invalid request
-- gets one error (id null unless it had a usable id); a valid request one
-- answer with its id; a notification or a response none. The one
-- exception: an MCP tools/call cancelled by notifications/cancelled may
-- go unanswered (MCP says the server should not answer it).
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local uv = require "luv"
local ROOT = uv.fs_realpath(here .. "/..")
package.path = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. ROOT .. "/bench/?.lua;" .. package.path
package.cpath = ROOT .. "/lua/?.so;" .. package.cpath

local cjson = require "cjson"
local core = require "bgproc.core"
local corpus = require "fuzz_corpus"
local common = require "common"

local BIN = ROOT .. "/bin/bgproc"
local NULL = cjson.null

-- ---- options ---------------------------------------------------------------------------

local function usage(msg)
  io.stderr:write(msg, "\nusage: lua5.4 bench/fuzz.lua [--lines N] [--seed N]"
    .. " [--target mcp|daemon|both|standalone|all] [--window N] [--deadline-ms N] [--huge N] [--json] [--verbose]\n")
  os.exit(2)
end

local function options(argv)
  local o = { lines = 100000, seed = os.time(), target = "both", window = 64, deadline_ms = 20000,
              fence_every = 200 }
  local numeric = { ["--lines"] = "lines", ["--seed"] = "seed", ["--window"] = "window",
                    ["--deadline-ms"] = "deadline_ms", ["--huge"] = "huge" }
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if numeric[a] then
      o[numeric[a]] = math.tointeger(tonumber(argv[i + 1])) or usage(a .. " needs an integer")
      i = i + 2
    elseif a == "--target" then
      o.target = argv[i + 1]
      if not ({ mcp = true, daemon = true, both = true, standalone = true, all = true })[o.target] then
        usage("--target must be mcp, daemon, both, standalone or all")
      end
      i = i + 2
    elseif a == "--json" then o.json, i = true, i + 1
    elseif a == "--verbose" then o.verbose, i = true, i + 1
    else usage("unknown option " .. a) end
  end
  -- one line over the 24 MiB limit per 50,000 (they take a while)
  o.huge = o.huge or o.lines // 50000
  return o
end

-- ---- small helpers -----------------------------------------------------------------

local function now_ms() return uv.hrtime() / 1e6 end

local function count(t, k) t[k] = (t[k] or 0) + 1 end

-- Run the loop until pred() or timeout_ms (bgproc's own blocking pump).
local pump = require("bgproc.client").pump

-- Our children per /proc (we are their subreaper: strays land here).
local function children()
  local me, out = uv.os_getpid(), {}
  for name in uv.fs_scandir_next, assert(uv.fs_scandir("/proc")) do
    if name:match("^%d+$") then
      local f = io.open("/proc/" .. name .. "/stat")
      local s = f and f:read("a")
      if f then f:close() end
      local state, ppid = (s or ""):match("%) (%S) (%d+)")
      if tonumber(ppid) == me then
        out[#out + 1] = { pid = tonumber(name), state = state, cmd = (s:match("%((.*)%)")) }
      end
    end
  end
  return out
end

local function spawn(argv, env, cwd, with_stdin)
  local proc = { exited = false }
  local stdin = with_stdin and uv.new_pipe(false) or nil
  local stdout, stderr = uv.new_pipe(false), uv.new_pipe(false)
  local envlist = {}
  for k, v in pairs(env) do envlist[#envlist + 1] = k .. "=" .. v end
  table.sort(envlist)
  local args = table.move(argv, 2, #argv, 1, {})
  local handle, pid = uv.spawn(argv[1], { args = args, env = envlist, cwd = cwd, stdio = { stdin, stdout, stderr } },
    function(code, sig)
      proc.exited, proc.code, proc.signal = true, code, sig
    end)
  assert(handle, pid)
  proc.handle, proc.pid, proc.stdin, proc.stdout = handle, pid, stdin, stdout
  proc.err, proc.error_lines = {}, {}
  stderr:read_start(function(_, chunk)
    if chunk then
      -- `bgproc mcp` logs to stderr: "bgproc mcp: error: ..." is a bug
      for l in chunk:gmatch("[^\n]*: error: [^\n]*") do
        if #proc.error_lines < 20 then proc.error_lines[#proc.error_lines + 1] = l end
      end
      local e = proc.err
      e[#e + 1] = chunk
      if #e > 200 then table.remove(e, 1) end
    elseif not stderr:is_closing() then stderr:close() end
  end)
  function proc.stderr_tail() return table.concat(proc.err):sub(-2000) end
  return proc
end

-- ---- one run against one target ------------------------------------------------------

local Run = {}
Run.__index = Run

local function new_run(target, o)
  local dir = assert(uv.fs_mkdtemp("/tmp/bgproc-fuzz-XXXXXX"))
  for _, sub in ipairs { "home", "run", "tmp", "work", "state", "config" } do
    assert(uv.fs_mkdir(dir .. "/" .. sub, tonumber("700", 8)))
  end
  common.write_file(dir .. "/config.lua", "return { plugins = {}, graceMs = 500, progressMs = 200 }\n")
  local env = {
    PATH = os.getenv("PATH") or "/usr/bin:/bin", LANG = "C.UTF-8",
    HOME = dir .. "/home", XDG_RUNTIME_DIR = dir .. "/run", TMPDIR = dir .. "/tmp",
    XDG_STATE_HOME = dir .. "/state", XDG_CONFIG_HOME = dir .. "/config",
    BGPROC_CONFIG = dir .. "/config.lua", BGPROC_SOCKET = dir .. "/run/d.sock",
    LUA_PATH_5_4 = package.path, LUA_CPATH_5_4 = package.cpath,
  }
  local self = setmetatable({
    target = target, o = o, dir = dir, env = env,
    mcp = target ~= "daemon", -- an MCP server: through the daemon, or standalone
    pending = {},       -- id key -> list of { deadline, line_no, text, method, tool, optional }
    npending = 0,       -- required answers outstanding
    failures = {},      -- what went wrong, in words
    pool = {},          -- process ids the server returned, newest last
    shared = {},        -- id keys that were pending twice at once
    history = {},       -- --verbose: key -> what happened to it lately
    predicted = {},     -- protocol error code -> lines the oracle says get it
    stats = { items = 0, lines = 0, bytes = 0, owed = 0, answers = 0, notifications = 0, results = 0,
              errors = {}, tool_errors = {}, unanswered_cancelled = 0, unexpected = 0, bad_json = 0,
              unclear = 0, hangs = 0, crashes = 0, unsafe_replaced = 0, fences = 0 },
    buf = {},
  }, Run)
  return self
end

function Run:fail(msg)
  if #self.failures < 50 then self.failures[#self.failures + 1] = msg end
  if self.o.verbose then io.stderr:write("FAIL: ", msg, "\n") end
end

local function short(s, n)
  n = n or 160
  s = s:gsub("[%c\128-\255]", function(c) return ("\\x%02x"):format(c:byte()) end)
  return #s > n and s:sub(1, n) .. "..." or s
end

-- Expect `owed` answers for a line: register them with their deadlines.
function Run:expect(info, line_no, line)
  local msg = info.msg
  local method = msg and type(msg.method) == "string" and msg.method or nil
  local params = msg and type(msg.params) == "table" and msg.params or {}
  local tool = method == "tools/call" and type(params.name) == "string" and params.name or nil
  -- cancellation: an MCP tools/call it names may go unanswered
  if method == "notifications/cancelled" and self.mcp then
    local rid = params.requestId
    if type(rid) == "string" or type(rid) == "number" or rid == NULL then -- (null cancels an id null)
      for _, e in ipairs(self.pending[corpus.id_key(rid)] or {}) do
        if e.method == "tools/call" and not e.optional then
          e.optional = true
          if self.o.verbose then
            self:trace(corpus.id_key(rid), ("line %d: cancels line %d"):format(line_no, e.line_no))
          end
          self.npending = self.npending - 1
        end
      end
    end
  end
  if info.answers == 0 then return end
  local extra = 0
  if tool == "waitForBackgroundProcess" then
    local args = type(params.arguments) == "table" and params.arguments or {}
    extra = type(args.timeoutMs) == "number" and math.max(0, math.min(args.timeoutMs, 5000)) or 30000
  end
  local list = self.pending[info.key]
  if not list then
    list = {}
    self.pending[info.key] = list
  elseif #list > 0 then
    self.shared[info.key] = true -- two requests at once with one id: answers may be told apart wrongly
  end
  list[#list + 1] = { deadline = now_ms() + self.o.deadline_ms + extra, line_no = line_no, text = line,
                      method = method, tool = tool, code = info.code }
  if info.code then count(self.predicted, info.code) end
  if self.shared[info.key] and self.o.verbose then
    self:trace(info.key, ("line %d: %s code=%s tool=%s"):format(line_no, tostring(method), tostring(info.code),
      tostring(tool)))
  end
  self.npending = self.npending + 1
  self.stats.owed = self.stats.owed + 1
end

-- --verbose: what happened to ids used twice at once, shown on a hang
function Run:trace(key, what)
  local h = self.history[key] or {}
  self.history[key] = h
  h[#h + 1] = what
  if #h > 12 then table.remove(h, 1) end
end

-- An answer: match it to the pending entry of its id with the earliest
-- deadline (any matching is fine as long as each answer came in time).
-- Entries owed an answer come first (a cancelled call may never get one:
-- its entry must not take another's answer), then those expecting this
-- very error code (or a result), then requests; then the right kind (a
-- tool's result or not). With one id pending twice the pairing may still
-- be wrong, so codes are checked per line only for ids pending alone, and
-- in total (Run:check_codes) for all.
-- kind: for an MCP result, whether it is a tool's (true) or not (false).
function Run:answered(key, code, kind)
  local list = self.pending[key]
  if not list or #list == 0 then return nil end
  local best, best_score
  for i, e in ipairs(list) do
    local score = (e.optional and 0 or 8) + (e.code == code and 4 or e.code == nil and 2 or 0)
      + ((kind == nil or kind == (e.tool ~= nil)) and 1 or 0)
    if not best or score > best_score or (score == best_score and e.deadline < list[best].deadline) then
      best, best_score = i, score
    end
  end
  local ambiguous = self.shared[key]
  local e = table.remove(list, best)
  if ambiguous and self.o.verbose then
    self:trace(key, ("answer code=%s kind=%s -> line %d (of %d pending)"):format(tostring(code), tostring(kind),
      e.line_no, #list + 1))
  end
  if #list == 0 then self.pending[key] = nil end
  if not e.optional then self.npending = self.npending - 1 end
  return e, ambiguous
end

-- Error messages for bad params and bad arguments must name the field.
local function names_a_field(message)
  return type(message) == "string" and message:find("'[^']*'") ~= nil
end

function Run:on_line(line)
  local st = self.stats
  if not utf8.len(line) then
    st.bad_json = st.bad_json + 1
    return self:fail("an answer is not valid UTF-8: " .. short(line))
  end
  local ok, m = pcall(corpus.strict.decode, line)
  if not ok or type(m) ~= "table" or m.jsonrpc ~= "2.0" then
    st.bad_json = st.bad_json + 1
    return self:fail("an answer is not a JSON-RPC 2.0 object: " .. short(line))
  end
  if m.method ~= nil then
    st.notifications = st.notifications + 1
    if m.method ~= "notifications/progress" or m.id ~= nil then
      self:fail("unexpected message from the server: " .. short(line))
    end
    return
  end
  if (m.result == nil) == (m.error == nil) or m.id == nil then
    st.bad_json = st.bad_json + 1
    return self:fail("an answer without exactly one of result/error, or without an id: " .. short(line))
  end
  local key = corpus.id_key(m.id)
  if key == "s:fence" then
    st.fences = st.fences + 1
    self.fence_answered = true
    return
  end
  if key == "s:final" then self.final = m return end
  local kind
  if self.mcp and type(m.result) == "table" then kind = m.result.isError ~= nil end
  local e, ambiguous = self:answered(key, m.error and math.tointeger(m.error.code), kind)
  if not e then
    st.unexpected = st.unexpected + 1
    return self:fail("an answer nobody asked for (or a second one): " .. short(line))
  end
  st.answers = st.answers + 1
  if e.optional then st.answered_cancelled = (st.answered_cancelled or 0) + 1 end
  if m.error then
    local err = m.error
    if not math.tointeger(err.code) or type(err.message) ~= "string" or err.message == "" then
      st.bad_json = st.bad_json + 1
      return self:fail("a malformed error object: " .. short(line))
    end
    count(st.errors, math.tointeger(err.code))
    if err.code == -32603.0 then
      self:fail(("internal error (a handler bug) on line %d: %s\n    sent: %s"):format(e.line_no, short(line, 400),
        short(e.text, 400)))
    end
    if err.code == -32602 and not names_a_field(err.message) then
      st.unclear = st.unclear + 1
      self:fail("an invalid-params error that names no field: " .. short(err.message))
    end
    local data = type(err.data) == "table" and err.data.code
    if err.code == -32000 then
      count(st.tool_errors, tostring(data))
      if data == "invalid_argument" and not names_a_field(err.message) then
        st.unclear = st.unclear + 1
        self:fail("an invalid_argument error that names no field: " .. short(err.message))
      end
    end
    if e.code and err.code ~= e.code and not ambiguous then
      self:fail(("line %d: expected error %d, got %d (%s)\n    sent: %s"):format(e.line_no, e.code, err.code,
        short(err.message), short(e.text, 300)))
    end
    return
  end
  st.results = st.results + 1
  if e.code and not ambiguous then
    self:fail(("line %d: expected error %d, got a result\n    sent: %s"):format(e.line_no, e.code, short(e.text, 300)))
  end
  local r = m.result
  if ambiguous then return end -- the same id pending twice: which tool's it is, is not known
  if e.tool and self.mcp then
    if type(r) ~= "table" or type(r.isError) ~= "boolean" or type(r.content) ~= "table" then
      return self:fail("a tools/call result that is not an MCP tool result: " .. short(line) .. "\n    sent: "
        .. short(e.text, 300))
    end
    if r.isError then
      local terr = type(r.structuredContent) == "table" and r.structuredContent.error or {}
      count(st.tool_errors, tostring(terr.code))
      if terr.code == "invalid_argument" and not names_a_field(terr.message) then
        st.unclear = st.unclear + 1
        self:fail("an invalid_argument error that names no field: " .. short(tostring(terr.message)))
      end
      if terr.code == "internal" then self:fail("internal tool error: " .. short(line, 400)) end
      return
    end
    r = r.structuredContent
  end
  if e.tool == "createBackgroundProcess" and type(r) == "table" and type(r.id) == "string" then
    st.jobs_started = (st.jobs_started or 0) + 1
    local pool = self.pool
    pool[#pool + 1] = r.id
    if #pool > 32 then table.remove(pool, 1) end
  end
end

function Run:on_data(chunk)
  local pos = 1
  while true do
    local nl = chunk:find("\n", pos, true)
    if not nl then
      if pos <= #chunk then self.buf[#self.buf + 1] = chunk:sub(pos) end
      return
    end
    self.buf[#self.buf + 1] = chunk:sub(pos, nl - 1)
    local line = table.concat(self.buf)
    self.buf = {}
    self:on_line(line)
    pos = nl + 1
  end
end

-- Placeholders "@P<d>@" become process ids the server gave us.
function Run:fill(line)
  return (line:gsub("@P(%d)@", function(d)
    local pool = self.pool
    if #pool == 0 then return "fz-none" end
    return pool[#pool - (tonumber(d) % #pool)]
  end))
end

function Run:dead()
  if self.server.exited then
    return ("the %s exited (code %s, signal %s)"):format(self.mcp and "MCP server" or "daemon",
      tostring(self.server.code), tostring(self.server.signal))
  end
  if self.daemon.exited then return "the daemon exited (code " .. tostring(self.daemon.code) .. ")" end
  if self.eof then return "the server closed its output: " .. tostring(self.eof) end
end

-- Deadlines passed: hangs. Reported once each, then dropped.
function Run:check_deadlines()
  local t = now_ms()
  for key, list in pairs(self.pending) do
    for i = #list, 1, -1 do
      local e = list[i]
      if t > e.deadline then
        table.remove(list, i)
        if e.optional then
          self.stats.unanswered_cancelled = self.stats.unanswered_cancelled + 1
        else
          self.npending = self.npending - 1
          self.stats.hangs = self.stats.hangs + 1
          self:fail(("no answer in %d ms to line %d (id %s): %s"):format(self.o.deadline_ms, e.line_no, short(key, 60),
            short(e.text)) .. (self.history[key] and ("\n      " .. table.concat(self.history[key], "\n      ")) or ""))
        end
      end
    end
    if #list == 0 then self.pending[key] = nil end
  end
end

function Run:start_daemon()
  self.daemon = spawn({ "lua5.4", BIN, "daemon", "run" }, self.env, self.dir .. "/work", false)
  local ok = pump(function() return uv.fs_stat(self.env.BGPROC_SOCKET) ~= nil or self.daemon.exited end, 20000)
  assert(ok and not self.daemon.exited, "the daemon did not start: " .. self.daemon.stderr_tail())
end

-- A connection to the daemon's socket (the socket file appears at
-- bind(), a moment before listen(): refused connects are retried).
function Run:connect_socket()
  local pipe, err
  local deadline = now_ms() + 10000
  repeat
    if pipe then
      pipe:close()
      uv.sleep(20)
    end
    local done
    pipe = uv.new_pipe(false)
    pipe:connect(self.env.BGPROC_SOCKET, function(e) done, err = true, e end)
    pump(function() return done end, 10000)
  until not err or now_ms() > deadline
  assert(not err, "cannot connect: " .. tostring(err))
  return pipe
end

function Run:connect()
  if self.mcp then
    local argv = { "lua5.4", BIN, "mcp", self.target == "standalone" and "--standalone" or nil }
    self.server = spawn(argv, self.env, self.dir .. "/work", true)
    self.out, self.input = self.server.stdin, self.server.stdout
  else
    self.server = self.daemon
    local pipe = self:connect_socket()
    self.out, self.input = pipe, pipe
  end
  self.input:read_start(function(err, chunk)
    if err or not chunk then
      self.eof = err or "eof"
      return
    end
    self:on_data(chunk)
  end)
end

function Run:send(data)
  self.stats.bytes = self.stats.bytes + #data
  self.out:write(data)
end

-- A request of our own (not fuzz): id "fence" / "final"; waits for it.
function Run:control(id, method, params)
  local msg = { jsonrpc = "2.0", id = id, method = method, params = params or {} }
  self.fence_answered, self.final = false, nil
  self:send(cjson.encode(msg) .. "\n")
  local field = id == "fence" and "fence_answered" or "final"
  local ok = pump(function() return self[field] or self:dead() end, self.o.deadline_ms)
  return ok and not self:dead(), self[field]
end

function Run:fuzz()
  local o, st = self.o, self.stats
  local gen = corpus.new { target = self.mcp and "mcp" or "daemon", seed = o.seed, lines = o.lines, huge = o.huge }
  gen.my_pid = uv.os_getpid()
  local tick = uv.new_timer()
  tick:start(100, 100, function() self:check_deadlines() end)
  for _ = 1, o.lines do
    local line, n = gen:next()
    line = self:fill(line)
    st.items = st.items + 1
    for piece in (line .. "\n"):gmatch("([^\n]*)\n") do
      st.lines = st.lines + 1
      self:expect(corpus.owed(piece), n, piece)
    end
    self:send(line .. "\n")
    -- a window of answers owed, and a bound on bytes in flight
    if self.npending >= o.window or self.out:get_write_queue_size() > 4 * 1024 * 1024 then
      while (self.npending >= o.window // 2 or self.out:get_write_queue_size() > 1024 * 1024) and not self:dead() do
        uv.run("once")
      end
    end
    if n % o.fence_every == 0 then
      -- a ping behind everything sent: proves the server got through it
      if not self:control("fence", "ping") then
        st.hangs = st.hangs + (self:dead() and 0 or 1)
        self:fail("no answer to a fence ping after line " .. n)
        break
      end
    end
    if self:dead() then break end
    if o.verbose and n % 10000 == 0 then
      io.stderr:write(("  %s: %d lines, %d answers, server RSS %s KiB\n"):format(self.target, n, st.answers,
        tostring(common.status_kib("VmRSS", self.server.pid))))
    end
  end
  st.unsafe_replaced = gen.unsafe
  -- the rest of the answers: until each has come or its deadline passed
  pump(function() return self.npending <= 0 or self:dead() end, o.deadline_ms + 35000)
  self:check_deadlines()
  tick:close()
  -- what is left: cancelled calls that were (rightly) never answered,
  -- and, only if the server died, the answers it still owed
  for key, list in pairs(self.pending) do
    for _, e in ipairs(list) do
      if e.optional then st.unanswered_cancelled = st.unanswered_cancelled + 1
      else
        st.hangs = st.hangs + 1
        self:fail(("no answer to line %d (id %s): %s"):format(e.line_no, short(key, 60), short(e.text)))
      end
    end
  end
  self.pending = {}
end

-- Parse errors and invalid requests are all the oracle's to predict: as
-- many must come as it expects, whatever their ids.
function Run:check_codes()
  for _, code in ipairs { -32700, -32600 } do
    local want, got = self.predicted[code] or 0, self.stats.errors[code] or 0
    if want ~= got then self:fail(("%d lines should get error %d, %d did"):format(want, code, got)) end
  end
end

function Run:finish()
  self:check_codes()
  local st = self.stats
  -- a valid call still works
  local ok, m = self:control("final", "tools/call", { name = "listBackgroundProcesses", arguments = {} })
  local r = m and m.result
  if self.mcp then r = r and r.isError == false and r.structuredContent end
  st.final_call_ok = ok and type(r) == "table" and type(r.processes) == "table" and math.tointeger(r.count) ~= nil
  if not st.final_call_ok then
    self:fail("the final listBackgroundProcesses failed: " .. (m and cjson.encode(m) or "no answer"))
  end
  st.rss_after_kib = common.status_kib("VmRSS", self.server.pid)
  st.rss_peak_kib = common.status_kib("VmHWM", self.server.pid)
  if self.mcp then
    st.daemon_rss_after_kib = common.status_kib("VmRSS", self.daemon.pid)
    st.daemon_rss_peak_kib = common.status_kib("VmHWM", self.daemon.pid)
  end
  local dead = self:dead()
  if dead then
    st.crashes = 1
    self:fail(dead .. "\n    stderr: " .. short(self.server.stderr_tail(), 1500))
  end
end

-- Stop everything: the MCP server by EOF, the daemon by daemon/stop; both
-- must exit cleanly, and nothing they started may outlive them.
function Run:teardown()
  if self.mcp and self.server ~= self.daemon and not self.server.exited then
    self.out:shutdown()
    if not pump(function() return self.server.exited end, 15000) then
      self:fail("the MCP server did not exit on stdin EOF")
      uv.process_kill(self.server.handle, "sigkill")
    elseif self.server.code ~= 0 or self.server.signal ~= 0 then
      self:fail(("the MCP server exited with code %s, signal %s"):format(self.server.code, self.server.signal))
    end
  elseif self.input and not self.input:is_closing() then
    self.input:close()
  end
  if not self.daemon.exited then
    local ok, pipe = pcall(self.connect_socket, self)
    if ok then
      self.stop_pipe = pipe
      pipe:write('{"jsonrpc":"2.0","id":1,"method":"daemon/stop"}\n')
    end
    if not pump(function() return self.daemon.exited end, 20000) then
      self:fail("the daemon did not stop")
      uv.process_kill(self.daemon.handle, "sigkill")
      pump(function() return self.daemon.exited end, 5000)
    elseif self.daemon.code ~= 0 or self.daemon.signal ~= 0 then
      self:fail(("the daemon exited with code %s, signal %s"):format(self.daemon.code, self.daemon.signal))
    end
  end
  -- strays: anything still alive that we did not start ourselves
  local strays = {}
  pump(function()
    strays = {}
    for _, c in ipairs(children()) do
      if c.pid ~= self.server.pid and c.pid ~= self.daemon.pid and c.state ~= "Z" then strays[#strays + 1] = c end
    end
    return #strays == 0
  end, 3000)
  for _, c in ipairs(strays) do
    self:fail(("stray process %d (%s) outlived the daemon"):format(c.pid, c.cmd))
    uv.kill(c.pid, "sigkill")
  end
  self.stats.strays = #strays
  -- the daemon's log: handler bugs are logged as errors
  local f = io.open(self.dir .. "/state/bgproc/daemon.log")
  local log = f and f:read("a") or ""
  if f then f:close() end
  local handler_errors = 0
  for l in log:gmatch("[^\n]+") do
    if l:find("^%S+ error ") then
      handler_errors = handler_errors + 1
      self:fail("daemon log: " .. short(l, 300))
    end
  end
  if self.mcp then
    for _, l in ipairs(self.server.error_lines or {}) do
      handler_errors = handler_errors + 1
      self:fail("MCP server stderr: " .. short(l, 300))
    end
  end
  self.stats.log_errors = handler_errors
  for _, h in ipairs { self.out, self.input, self.stop_pipe } do if h and not h:is_closing() then h:close() end end
  for _, p in ipairs { self.server, self.daemon } do if not p.handle:is_closing() then p.handle:close() end end
  uv.run("nowait")
  os.execute(("rm -rf %q"):format(self.dir))
end

function Run:setup()
  self:start_daemon()
  self:connect()
  if self.mcp then
    local ok = self:control("final", "initialize", { protocolVersion = "2025-11-25", capabilities = {},
      clientInfo = { name = "fuzz", version = "1" } })
    assert(ok, "the MCP server did not initialize: " .. self.server.stderr_tail())
    self:send('{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
  end
  assert(self:control("fence", "ping"), "no answer to the first ping")
end

local function run_target(target, o)
  local self = new_run(target, o)
  self.stats.seconds = 0
  local ok, err = pcall(self.setup, self)
  if ok then
    self.stats.rss_before_kib = common.status_kib("VmRSS", self.server.pid)
    local t0 = now_ms()
    ok, err = pcall(self.fuzz, self)
    self.stats.seconds = (now_ms() - t0) / 1000
    if ok then self:finish() end
  end
  if not ok then self:fail("fuzz driver error: " .. tostring(err)) end
  -- whatever happened, nothing started here may outlive the run
  local none = { pid = -1, exited = true, handle = { is_closing = function() return true end } }
  self.server = self.server or self.daemon or none
  self.daemon = self.daemon or self.server
  self:teardown()
  return self
end

-- ---- report -------------------------------------------------------------------------------

local function kv(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = ("%s=%d"):format(tostring(k), t[k]) end
  return table.concat(out, " ")
end

local function report(run, o)
  local st = run.stats
  st.lines_per_s = math.floor(st.lines / math.max(st.seconds, 1e-3))
  st.failures = #run.failures
  if o.json then
    local j = { target = run.target, seed = o.seed }
    for k, v in pairs(st) do
      if type(v) == "table" then
        local t = {}
        for kk, vv in pairs(v) do t[tostring(kk)] = vv end
        j[k] = t
      else j[k] = v end
    end
    print(cjson.encode(j))
  else
    print(("[%s] seed %d: %d items, %d lines (%.1f MB) in %.1f s = %d lines/s"):format(run.target, o.seed,
      st.items, st.lines, st.bytes / 1e6, st.seconds, st.lines_per_s))
    print(("  owed %d answers, got %d (+%d progress notifications, %d fences); results %d; errors: %s")
      :format(st.owed, st.answers, st.notifications, st.fences, st.results, kv(st.errors)))
    print(("  jobs started: %d; tool errors: %s"):format(st.jobs_started or 0, kv(st.tool_errors)))
    print(("  crashes=%d hangs=%d unexpected=%d bad_json=%d unclear_errors=%d strays=%d log_errors=%d"
      .. " cancelled_unanswered=%d unsafe_replaced=%d final_call=%s")
      :format(st.crashes, st.hangs, st.unexpected, st.bad_json, st.unclear, st.strays or -1, st.log_errors or -1,
        st.unanswered_cancelled, st.unsafe_replaced, st.final_call_ok and "ok" or "FAILED"))
    local rss = ("  server RSS: %s KiB before, %s KiB after, %s KiB peak"):format(tostring(st.rss_before_kib),
      tostring(st.rss_after_kib), tostring(st.rss_peak_kib))
    if run.mcp then
      rss = rss .. (" (daemon: %s KiB after, %s KiB peak)"):format(tostring(st.daemon_rss_after_kib),
        tostring(st.daemon_rss_peak_kib))
    end
    print(rss)
    for _, f in ipairs(run.failures) do print("  FAIL " .. f) end
  end
  io.stdout:flush()
  return #run.failures == 0
end

local function main(argv)
  local o = options(argv)
  if not o.json then print(("fuzz: seed %d (rerun with --seed %d)"):format(o.seed, o.seed)) end
  -- we are the subreaper of everything we start: strays come back to us
  local reaper = assert(core.new { subreaper = true, guardian = false })
  require("bgproc.rpc").ignore_sigpipe() -- a dead server is a finding, not our death
  local targets = ({ both = { "mcp", "daemon" }, all = { "mcp", "daemon", "standalone" } })[o.target] or { o.target }
  local all_ok = true
  for _, target in ipairs(targets) do
    local ok, run = pcall(run_target, target, o)
    if not ok then
      print(("[%s] FAIL: %s"):format(target, tostring(run)))
      all_ok = false
    else
      all_ok = report(run, o) and all_ok
    end
  end
  reaper:close()
  if not all_ok and not o.json then print(("fuzz: FAILED (seed %d)"):format(o.seed)) end
  return all_ok and 0 or 1
end

os.exit(main(arg))
