-- `bgproc mcp`: the MCP server over stdio, driven line by line, and end to
-- end by the official MCP SDK client (@modelcontextprotocol/sdk from npm).
local h = require "helpers"
local core = require "bgproc.core"
local cjson = require "cjson"

-- A `bgproc mcp` process with a piped stdin; responses are read from its
-- stdout (stderr is kept apart: stdout must carry protocol only).
local function server(env, args)
  local loop = core.new()
  local argv = { "lua5.4", h.root .. "/bin/bgproc", "mcp" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local job = assert(loop:spawn { argv = argv, env = env, stdin = "pipe" })
  local s = { loop = loop, job = job, cursor = 0, buf = "", msgs = {}, next_id = 0 }

  function s.send(msg)
    job:write((type(msg) == "string" and msg or cjson.encode(msg)) .. "\n")
  end

  function s.poll(ms)
    loop:wait(ms or 20)
    local data, next = job:read(s.cursor, nil, "stdout")
    s.cursor = next
    s.buf = s.buf .. data
    for line in s.buf:gmatch("([^\n]*)\n") do
      local ok, msg = pcall(cjson.decode, line)
      assert(ok, "stdout carried a non-JSON line: " .. line)
      s.msgs[#s.msgs + 1] = msg
    end
    s.buf = s.buf:match("[^\n]*$")
  end

  -- The first message for which pred(msg) holds (consumed), or nil.
  function s.take(pred, timeout_ms)
    local deadline = h.now_ms() + (timeout_ms or 10000)
    repeat
      for i, m in ipairs(s.msgs) do
        if pred(m) then
          table.remove(s.msgs, i)
          return m
        end
      end
      s.poll(20)
    until h.now_ms() > deadline
  end

  function s.response(id, timeout_ms)
    return s.take(function(m) return m.id == id and (m.result ~= nil or m.error ~= nil) end, timeout_ms)
  end

  function s.request(method, params, timeout_ms)
    s.next_id = s.next_id + 1
    s.send { jsonrpc = "2.0", id = s.next_id, method = method, params = params }
    return assert(s.response(s.next_id, timeout_ms), "no answer to " .. method)
  end

  function s.call(name, args, timeout_ms)
    return s.request("tools/call", { name = name, arguments = args or {} }, timeout_ms).result
  end

  function s.close_stdin()
    job:close_stdin()
    assert(h.pump(loop, function() return not job:alive() end, 10000), "mcp server did not exit on EOF")
  end

  function s.stderr() return (job:read(0, nil, "stderr")) end

  function s.kill(sig)
    job:kill(sig)
    h.pump(loop, function() return not job:alive() end, 10000)
  end

  function s.done()
    if job:alive() then s.kill("KILL") end
    loop:close()
  end
  return s
end

local function init(s, version)
  return s.request("initialize", {
    protocolVersion = version or "2025-11-25", capabilities = {},
    clientInfo = { name = "spec", version = "1" },
  }).result
end

describe("bgproc mcp", function()
  local d
  setup(function() d = h.private_daemon() end)
  teardown(function() d.stop() end)

  describe("protocol (standalone)", function()
    local s
    before_each(function()
      s = server(d.env, { "--standalone" })
    end)
    after_each(function() s.done() end)

    it("negotiates the protocol revision: echoes a supported one, else offers the latest", function()
      for _, v in ipairs { "2025-11-25", "2025-06-18", "2025-03-26" } do
        assert.equal(v, init(s, v).protocolVersion)
      end
      local r = init(s, "2024-01-01")
      assert.equal("2025-11-25", r.protocolVersion)
      assert.equal(false, r.capabilities.tools.listChanged)
      assert.equal("bgproc", r.serverInfo.name)
      assert.is_string(r.instructions)
    end)

    it("answers ping, does not answer notifications/initialized, refuses unknown methods at once", function()
      init(s)
      s.send { jsonrpc = "2.0", method = "notifications/initialized" }
      assert.same({}, s.request("ping").result)
      local r = s.request("server/discover")
      assert.equal(-32601, r.error.code)
      s.poll(100)
      assert.same({}, s.msgs) -- nothing was sent for the notification
    end)

    it("lists the engine's tools with their schemas", function()
      init(s)
      local tools = s.request("tools/list").result.tools
      local names = {}
      for _, t in ipairs(tools) do
        names[#names + 1] = t.name
        assert.equal("object", t.inputSchema.type)
      end
      assert.same({ "createBackgroundProcess", "listBackgroundProcesses", "getBackgroundProcess",
                    "killProcesses", "waitForBackgroundProcess", "sendBackgroundProcessInput",
                    "restartBackgroundProcess", "removeBackgroundProcesses", "searchBackgroundOutput" }, names)
    end)

    it("returns text content, structuredContent, and isError on tool failures", function()
      init(s)
      local r = s.call("createBackgroundProcess", { command = "echo hi" })
      assert.is_false(r.isError)
      assert.equal("text", r.content[1].type)
      assert.matches("^started %S+ %(pid %d+%)", r.content[1].text)
      assert.equal("running", r.structuredContent.status)
      local bad = s.call("getBackgroundProcess", { processId = "nope" })
      assert.is_true(bad.isError)
      assert.matches("not_found", bad.content[1].text)
      local invalid = s.call("killProcesses", {})
      assert.is_true(invalid.isError)
      assert.matches("no selector", invalid.content[1].text)
      local unknown = s.call("noSuchTool", {})
      assert.is_true(unknown.isError)
    end)

    it("answers malformed input with the right error and keeps serving", function()
      s.send("this is not json")
      assert.equal(-32700, s.take(function(m) return m.error and m.error.code == -32700 end).error.code)
      s.send('{"jsonrpc":"2.0","id":{},"method":"ping"}')
      assert.truthy(s.take(function(m) return m.error and m.error.code == -32600 end))
      s.send('{"jsonrpc":"1.0","id":7,"method":"ping"}')
      local r = s.response(7)
      assert.equal(-32600, r.error.code)
      s.send('{"jsonrpc":"2.0","id":8,"method":"tools/call","params":[1,2]}')
      assert.equal(-32602, s.response(8).error.code)
      s.send('{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"arguments":{}}}')
      assert.equal(-32602, s.response(9).error.code)
      s.send('[{"jsonrpc":"2.0","id":10,"method":"ping"}]')
      assert.truthy(s.take(function(m) return m.error and m.error.code == -32600 end))
      s.send("\255\254\0\1 binary")
      assert.truthy(s.take(function(m) return m.error and m.error.code == -32700 end))
      assert.same({}, s.request("ping").result)
      assert.equal("string", type(s.request("ping", nil).jsonrpc))
    end)

    -- Found by bench/fuzz.lua: these went unanswered.
    it("answers a notification method sent as a request (with an id) with {}", function()
      init(s)
      assert.same({}, s.request("notifications/initialized").result)
      assert.same({}, s.request("notifications/cancelled", { requestId = 12345 }).result)
    end)

    it("stops a running wait on notifications/cancelled and sends no answer", function()
      init(s)
      local job = s.call("createBackgroundProcess", { command = "sleep 100" }).structuredContent
      s.send { jsonrpc = "2.0", id = "w1", method = "tools/call",
               params = { name = "waitForBackgroundProcess", arguments = { processId = job.id, timeoutMs = 60000 } } }
      -- lines are served in order: once a ping is answered, the wait is under way
      assert.same({}, s.request("ping").result)
      s.send { jsonrpc = "2.0", method = "notifications/cancelled", params = { requestId = "w1", reason = "user" } }
      -- a cancel for an unknown id is ignored
      s.send { jsonrpc = "2.0", method = "notifications/cancelled", params = { requestId = 12345 } }
      assert.same({}, s.request("ping").result)
      local function no_answer()
        for _, m in ipairs(s.msgs) do if m.id == "w1" then return false end end
        return true
      end
      assert.is_true(h.holds_for(500, no_answer, s.poll), "the cancelled wait was answered")
      -- a wait still running would answer now that its job ends
      assert.same({ job.id }, s.call("killProcesses", { processId = job.id }).structuredContent.killed)
      assert.is_true(h.holds_for(300, no_answer, s.poll), "the wait was still running after its cancel")
    end)

    it("sends progress notifications during a long wait when asked to", function()
      init(s)
      local job = s.call("createBackgroundProcess", { command = "sleep 100" }).structuredContent
      s.send { jsonrpc = "2.0", id = 50, method = "tools/call",
               params = { name = "waitForBackgroundProcess", arguments = { processId = job.id, timeoutMs = 900 },
                          _meta = { progressToken = "tok-1" } } }
      local res = s.response(50, 5000)
      assert.is_true(res.result.structuredContent.timedOut)
      local n = 0
      while s.take(function(m) return m.method == "notifications/progress" and m.params.progressToken == "tok-1" end, 10) do
        n = n + 1
      end
      assert.is_true(n >= 2, "progress notifications: " .. n) -- progressMs = 200 in the spec config
    end)

    it("ends every job when it exits", function()
      init(s)
      local job = s.call("createBackgroundProcess", { command = "sleep 1000 & wait", global = true }).structuredContent
      assert.is_true(h.wait_until(function() return #h.group(job.pid) == 2 end, 5000), "the sleep never started")
      local members = h.group(job.pid)
      s.close_stdin()
      for _, pid in ipairs(members) do assert.is_false(h.alive(pid)) end
    end)
  end)

  describe("with the daemon", function()
    local function ls()
      local out, code = d.run { "--json", "ls" }
      assert.equal(0, code, out)
      local by_name = {}
      for _, p in ipairs(cjson.decode(out).processes) do by_name[p.name] = p end
      return by_name
    end

    -- Start a server, create one session job and one global job, end the
    -- server with `ending`, check the session job died and the global lived.
    local function ends_session(ending)
      local s = server(d.env)
      init(s)
      local tag = tostring(math.random(1e9))
      local sess = s.call("createBackgroundProcess", { command = "sleep 1000 & wait", name = "s" .. tag }).structuredContent
      local glob = s.call("createBackgroundProcess", { argv = { "sleep", "1000" }, name = "g" .. tag, global = true }).structuredContent
      assert.is_true(h.wait_until(function() return #h.group(sess.pid) == 2 end, 5000), "the sleep never started")
      local members = h.group(sess.pid)
      ending(s)
      s.done()
      assert.is_true(h.wait_until(function()
        local p = ls()["s" .. tag]
        return p and p.status == "cancelled"
      end, 5000), "the session job was not cancelled")
      for _, pid in ipairs(members) do assert.is_false(h.alive(pid)) end
      assert.equal("running", ls()["g" .. tag].status)
      assert.is_true(h.alive(glob.pid))
      d.run { "kill", glob.id }
    end

    it("ends its session on stdin EOF; global jobs live on", function()
      ends_session(function(s) s.close_stdin() end)
    end)

    it("ends its session on SIGINT and SIGTERM", function()
      ends_session(function(s) s.kill("INT") end)
      ends_session(function(s) s.kill("TERM") end)
    end)

    it("ends its session when killed with SIGKILL, and the daemon lives on", function()
      ends_session(function(s) s.kill("KILL") end)
      local out, code = d.run { "daemon", "status" }
      assert.equal(0, code, out)
      assert.matches("^running", out)
    end)

    it("starts jobs in the server's directory with its environment, not the daemon's", function()
      local dir = assert(require("luv").fs_realpath(h.tmpdir()))
      os.execute("mkdir " .. dir .. "/sub")
      local env = {}
      for k, v in pairs(d.env) do env[k] = v end
      env.AGENT_VAR = "from-agent"
      local loop = core.new()
      local job = assert(loop:spawn { argv = { "lua5.4", h.root .. "/bin/bgproc", "mcp" }, env = env,
                                      stdin = "pipe", cwd = dir })
      job:write(cjson.encode { jsonrpc = "2.0", id = 1, method = "tools/call", params = {
        name = "createBackgroundProcess", arguments = { command = "pwd; echo $AGENT_VAR", name = "here" } } } .. "\n")
      job:write(cjson.encode { jsonrpc = "2.0", id = 2, method = "tools/call", params = {
        name = "createBackgroundProcess", arguments = { argv = { "pwd" }, cwd = "sub", name = "rel" } } } .. "\n")
      h.pump(loop, function() return (job:read(0, nil, "stdout")):find("\n.*\n") ~= nil end, 5000)
      -- the job's output once its last line (matching last) is there
      local function out_of(name, last)
        local o = d.run { "--json", "ls", "--name", name }
        local p = cjson.decode(o).processes[1]
        assert(p, "no job named " .. name .. ": " .. o)
        local w, code = d.run { "wait", p.id, "--for", last, "--timeout", "10000" }
        assert.equal(0, code, name .. " never printed its last line: " .. w)
        return cjson.decode((d.run { "--json", "logs", p.id })).output
      end
      assert.equal(dir .. "\nfrom-agent\n", out_of("here", "^from-agent$"))
      assert.equal(dir .. "/sub\n", out_of("rel", "/sub$"))
      job:close_stdin()
      h.pump(loop, function() return not job:alive() end, 5000)
      loop:close()
      os.execute("rm -rf " .. dir)
    end)

    -- Like the CLI's: the server's own BGPROC_SESSION names its caller's
    -- session, which a bgproc run by the job must not join.
    it("does not pass BGPROC_SESSION on to a job", function()
      local env = {}
      for k, v in pairs(d.env) do env[k] = v end
      env.BGPROC_SESSION = "agent-session"
      local s = server(env)
      init(s)
      local name = "nosess" .. math.random(1e9)
      local job = s.call("createBackgroundProcess",
        { command = 'echo "[${BGPROC_SESSION-unset}]"', name = name }).structuredContent
      s.call("waitForBackgroundProcess", { processId = job.id })
      local out = s.call("getBackgroundProcess", { processId = job.id }).structuredContent.output
      assert.equal("[unset]\n", out)
      s.close_stdin()
      s.done()
    end)

    it("relays progress notifications from the daemon", function()
      local s = server(d.env)
      init(s)
      local job = s.call("createBackgroundProcess", { command = "sleep 100" }).structuredContent
      s.send { jsonrpc = "2.0", id = 9, method = "tools/call",
               params = { name = "waitForBackgroundProcess", arguments = { processId = job.id, timeoutMs = 700 },
                          _meta = { progressToken = 77 } } }
      assert.is_true(s.response(9, 5000).result.structuredContent.timedOut)
      assert.truthy(s.take(function(m) return m.method == "notifications/progress" and m.params.progressToken == 77 end, 100))
      s.close_stdin()
      s.done()
    end)
  end)

  describe("driven by the official MCP SDK client", function()
    local sdk_dir
    setup(function()
      local ok, out = h.sh(h.root .. "/tools/ensure-mcp-sdk.sh")
      assert(ok, "could not install @modelcontextprotocol/sdk from npm: " .. out)
      sdk_dir = out:match("([^\n]+)\n?$")
    end)

    local function run_sdk(args)
      local argv = { h.root .. "/spec/support/mcp-e2e.mjs", h.root .. "/bin/bgproc" }
      for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
      return h.node_json(argv, h.env_with(d.env, { BGPROC_SDK_DIR = sdk_dir }), 60000)
    end

    it("initializes, lists the tools and calls every tool", function()
      local r = run_sdk()
      assert.equal("bgproc", r.serverVersion.name)
      assert.truthy(r.capabilities.tools)
      assert.same({ "createBackgroundProcess", "listBackgroundProcesses", "getBackgroundProcess",
                    "killProcesses", "waitForBackgroundProcess", "sendBackgroundProcessInput",
                    "restartBackgroundProcess", "removeBackgroundProcesses", "searchBackgroundOutput" }, r.tools)
      local c = r.calls
      assert.is_false(c.create_session.isError)
      assert.equal("ready on port 4321", c.wait_output.data.line)
      assert.is_true(c.wait_progress.data.timedOut)
      assert.is_true(r.progressNotifications >= 1, "progress notifications: " .. r.progressNotifications)
      assert.equal("booting\nready on port 4321\n", c.get.data.output)
      assert.equal(2, c.list.data.count)
      assert.equal(16, c.send.data.bytes)
      assert.equal("completed", c.wait_piped.data.status)
      assert.equal("hello via stdin\n", c.get_piped.data.output)
      assert.equal(1, #c.kill.data.killed)
      assert.is_true(c.error_unknown.isError)
      assert.matches("not_found", c.error_unknown.text)
      assert.is_true(c.error_args.isError)
      assert.matches("'command' must be a string", c.error_args.text)
    end)

    it("leaves the global job running and ends the session's job after the client closes", function()
      local r = run_sdk()
      assert.is_true(h.wait_until(function() return not h.alive(r.sessionPid) end, 5000))
      assert.is_true(h.alive(r.globalPid))
      local out = d.run { "--json", "show", r.sessionJob }
      assert.equal("cancelled", cjson.decode(out).status)
      out = d.run { "--json", "show", r.globalJob }
      assert.equal("running", cjson.decode(out).status)
      d.run { "kill", "--all" }
    end)
  end)
end)
