-- bgproc.rpc: newline-delimited JSON-RPC 2.0 over a luv stream. A real
-- Unix socket in a temporary directory: the server side is an rpc.conn on
-- the accepted pipe, the peer a raw luv pipe (spec/rawconn.lua) that
-- writes bytes and reads lines. Signals and SIGPIPE are tried on child
-- processes, never on busted.
local h = require "helpers"
local uv = require "luv"
local cjson = require "cjson"
local core = require "bgproc.core"
local rpc = require "bgproc.rpc"
local json = require "bgproc.lib.json"
local rawconn = require "rawconn"

local NULL = cjson.null
local pump = rawconn.pump

-- Handlers for rpc.dispatch; arg is the server state.
local methods = {
  ping = function() return {} end,
  echo = function(_, params) return params end,
  big = function(_, params) return { data = ("x"):rep(params.bytes) } end,
  fail = function() return nil, rpc.error(rpc.TOOL_ERROR, "it failed", { code = "nope" }) end,
  boom = function() error("kaboom") end,
  later = function(st, _, id) st.later = id return nil, nil, true end,
  ["notifications/poke"] = function(st) st.pokes = st.pokes + 1 end,
}

-- A listening socket, one accepted connection served by rpc.conn (opts:
-- on_eof, output = "separate" for an output handle of its own, dispatch =
-- false to only record messages) and the peer connected to it (opts.silent:
-- the peer does not read until told).
local servers = {}
local function server(opts)
  opts = opts or {}
  local dir = h.tmpdir()
  local path = dir .. "/rpc.sock"
  local listener = uv.new_pipe(false)
  assert(listener:bind(path))
  local st = { log = {}, messages = {}, pokes = 0, dir = dir, listener = listener }
  servers[#servers + 1] = st
  assert(listener:listen(8, function(err)
    assert(not err, err)
    local p = uv.new_pipe(false)
    assert(listener:accept(p))
    st.pipe = p
    st.conn = rpc.conn {
      input = p,
      log = function(level, msg) st.log[#st.log + 1] = level .. " " .. msg end,
      on_message = function(conn, msg, line)
        st.messages[#st.messages + 1] = { msg = msg, line = line }
        if opts.dispatch ~= false then rpc.dispatch(conn, msg, methods, st) end
      end,
      on_close = function(_, why) st.why = why end,
      on_eof = opts.on_eof,
    }
    st.conn:start()
  end))
  st.peer = assert(rawconn.connect(path, { silent = opts.silent }))
  assert(pump(function() return st.conn ~= nil end, 5000), "the connection was never accepted")
  return st
end

local function cleanup()
  for i = #servers, 1, -1 do
    local st = servers[i]
    if st.conn then st.conn:close("spec over") end
    st.peer:close()
    if not st.listener:is_closing() then st.listener:close() end
    h.sh("rm -rf " .. st.dir)
    servers[i] = nil
  end
  uv.run("nowait")
end

local function req(id, method, params)
  return json.encode { jsonrpc = "2.0", id = id, method = method, params = params } .. "\n"
end

-- The peer's next message (decoded), which must come within 5 s.
local function next_msg(st)
  local m = st.peer:recv(5000)
  assert(m, "no message from the server")
  return m
end

-- Nothing answered before a ping sent now: lines are served in order, so
-- the ping's answer must be the next message.
local function nothing_before_ping(st, id)
  st.peer:send(req(id, "ping"))
  local m = next_msg(st)
  assert.equal(id, m.id, "answered: " .. cjson.encode(m))
  assert.same({}, m.result)
end

describe("bgproc.rpc", function()
  lazy_setup(function() rpc.ignore_sigpipe() end) -- a peer gone mid-write must not kill busted
  after_each(cleanup)

  describe("framing", function()
    it("joins a request written byte by byte, splits many in one write, skips blank lines", function()
      local st = server()
      local line = req(1, "echo", { a = 1, s = "é\n" })
      for i = 1, #line do st.peer:send(line:sub(i, i), 5000) end
      local m = next_msg(st)
      assert.equal(1, m.id)
      assert.same({ a = 1, s = "é\n" }, m.result)
      st.peer:send("\n   \n\t\n" .. req(2, "ping") .. req(3, "echo", { n = 3 }) .. "\n" .. req(4, "ping"))
      for id = 2, 4 do assert.equal(id, next_msg(st).id) end
      nothing_before_ping(st, 5) -- the blank lines got no answer
      assert.equal(5, #st.messages)
    end)

    it("takes a request ending in CRLF", function()
      local st = server()
      st.peer:send('{"jsonrpc":"2.0","id":"crlf","method":"ping"}\r\n')
      local m = next_msg(st)
      assert.equal("crlf", m.id)
      assert.same({}, m.result)
    end)

    it("serves many requests sent at once in order, one per loop turn", function()
      local st = server()
      local t = {}
      for i = 1, 500 do t[i] = req(i, "echo", { i = i }) end
      st.peer:send(table.concat(t))
      for i = 1, 500 do
        local m = next_msg(st)
        assert.equal(i, m.id)
        assert.equal(i, m.result.i)
      end
    end)

    describe("with a small MAX_LINE", function()
      local saved
      before_each(function() saved = rpc.MAX_LINE rpc.MAX_LINE = 1000 end)
      after_each(function() rpc.MAX_LINE = saved end)

      -- an echo request line of exactly n bytes (newline not counted)
      local function line_of(n, id)
        local head = ('{"jsonrpc":"2.0","id":%d,"method":"echo","params":{"p":"'):format(id)
        local tail = '"}}'
        return head .. ("p"):rep(n - #head - #tail) .. tail
      end

      it("takes a line of MAX_LINE bytes and refuses one byte more, then serves what follows", function()
        local st = server()
        local ok_line, long = line_of(1000, 1), line_of(1001, 2)
        assert.equal(1000, #ok_line)
        st.peer:send(ok_line .. "\n" .. long .. "\n" .. req(3, "ping"))
        assert.equal(1, next_msg(st).id)
        local m = next_msg(st)
        assert.equal(NULL, m.id)
        assert.equal(rpc.INVALID_REQUEST, m.error.code)
        assert.equal("request line longer than 1000 bytes", m.error.message)
        assert.equal(3, next_msg(st).id)
      end)

      it("refuses a long line that comes in pieces as soon as it is too long, once", function()
        local st = server()
        for _ = 1, 5 do st.peer:send(("y"):rep(600), 5000) end -- 3000 bytes, no newline yet
        -- refused before its end is even sent: not buffered up to the newline
        local m = next_msg(st)
        assert.equal(NULL, m.id)
        assert.equal(rpc.INVALID_REQUEST, m.error.code)
        assert.equal("request line longer than 1000 bytes", m.error.message)
        st.peer:send(("y"):rep(600) .. "\n" .. req(7, "ping"))
        assert.equal(7, next_msg(st).id) -- one error for the line, then the next request
      end)
    end)
  end)

  describe("validation", function()
    -- { what, line, error code, id of the reply, message pattern }
    local cases = {
      { "garbage", "\0\1garbage", rpc.PARSE_ERROR, NULL, "^parse error: " },
      { "a truncated object", '{"jsonrpc":"2.0","id":1', rpc.PARSE_ERROR, NULL, "^parse error: " },
      { "a batch", '[{"jsonrpc":"2.0","id":1,"method":"ping"}]', rpc.INVALID_REQUEST, NULL,
        "^batch requests are not supported$" },
      { "a string", '"ping"', rpc.INVALID_REQUEST, NULL, "a JSON%-RPC message must be an object" },
      { "a number", "42", rpc.INVALID_REQUEST, NULL, "a JSON%-RPC message must be an object" },
      { "an object id", '{"jsonrpc":"2.0","id":{},"method":"ping"}', rpc.INVALID_REQUEST, NULL,
        "'id' must be a string, a finite number or null" },
      { "a boolean id", '{"jsonrpc":"2.0","id":true,"method":"ping"}', rpc.INVALID_REQUEST, NULL,
        "'id' must be a string, a finite number or null" },
      { "an infinite id", '{"jsonrpc":"2.0","id":1e999,"method":"ping"}', rpc.INVALID_REQUEST, NULL,
        "'id' must be a string, a finite number or null" },
      { "no jsonrpc", '{"id":7,"method":"ping"}', rpc.INVALID_REQUEST, 7, "'jsonrpc' must be \"2%.0\"" },
      { "jsonrpc 1.0", '{"jsonrpc":"1.0","id":"v","method":"ping"}', rpc.INVALID_REQUEST, "v",
        "'jsonrpc' must be \"2%.0\"" },
      { "a numeric method", '{"jsonrpc":"2.0","id":8,"method":5}', rpc.INVALID_REQUEST, 8,
        "'method' must be a string" },
      { "no method", '{"jsonrpc":"2.0","id":9}', rpc.INVALID_REQUEST, 9, "'method' must be a string" },
      { "string params", '{"jsonrpc":"2.0","id":10,"method":"ping","params":"x"}', rpc.INVALID_REQUEST, 10,
        "'params' must be an object or an array" },
    }
    for _, case in ipairs(cases) do
      it("answers " .. case[1] .. " with " .. case[3] .. " and keeps serving", function()
        local st = server()
        st.peer:send(case[2] .. "\n")
        local m = next_msg(st)
        assert.equal("2.0", m.jsonrpc)
        assert.equal(case[4], m.id)
        assert.is_nil(m.result)
        assert.equal(case[3], m.error.code)
        assert.matches(case[5], m.error.message)
        nothing_before_ping(st, 100)
        assert.equal(1, #st.messages) -- only the ping reached the handler
      end)
    end

    it("takes params null as no params", function()
      local st = server()
      st.peer:send('{"jsonrpc":"2.0","id":11,"method":"echo","params":null}\n')
      local m = next_msg(st)
      assert.equal(11, m.id)
      assert.same({}, m.result)
    end)

    it("passes responses (result or error, no method) to on_message with their raw line", function()
      local st = server { dispatch = false }
      local line = '{"jsonrpc":"2.0","id":5,"result":{"n":[]}}'
      st.peer:send(line .. "\n" .. '{"jsonrpc":"2.0","id":6,"error":{"code":1,"message":"m"}}\n')
      assert.is_true(pump(function() return #st.messages == 2 end, 5000))
      assert.equal(line, st.messages[1].line)
      assert.equal(5, st.messages[1].msg.id)
      assert.equal(1, st.messages[2].msg.error.code)
    end)
  end)

  describe("rpc.dispatch", function()
    it("replies with a handler's result or its error (code, message, data)", function()
      local st = server()
      st.peer:send(req(1, "echo", { k = "v" }) .. req(2, "fail"))
      assert.same({ k = "v" }, next_msg(st).result)
      local m = next_msg(st)
      assert.equal(2, m.id)
      assert.same({ code = rpc.TOOL_ERROR, message = "it failed", data = { code = "nope" } }, m.error)
    end)

    it("refuses unknown methods (-32601) and params given as an array (-32602)", function()
      local st = server()
      st.peer:send(req(1, "nope") .. req(2, "echo", { 1, 2 }))
      local m = next_msg(st)
      assert.equal(rpc.METHOD_NOT_FOUND, m.error.code)
      assert.equal("method not found: nope", m.error.message)
      m = next_msg(st)
      assert.equal(2, m.id)
      assert.equal(rpc.INVALID_PARAMS, m.error.code)
      assert.equal("'params' must be an object", m.error.message)
    end)

    it("answers no notification, and a notifications/ method sent with an id with {}", function()
      local st = server()
      st.peer:send('{"jsonrpc":"2.0","method":"ping"}\n'
        .. '{"jsonrpc":"2.0","method":"nope"}\n'
        .. '{"jsonrpc":"2.0","method":"echo","params":[1]}\n'
        .. '{"jsonrpc":"2.0","method":"notifications/poke"}\n')
      nothing_before_ping(st, 1)
      assert.equal(1, st.pokes)
      st.peer:send(req(2, "notifications/poke", { x = 1 }))
      local m = next_msg(st)
      assert.equal(2, m.id)
      assert.same({}, m.result)
      assert.equal(2, st.pokes)
    end)

    it("answers a handler's error with -32603, logs it, and keeps serving", function()
      local st = server()
      st.peer:send(req("b", "boom"))
      local m = next_msg(st)
      assert.equal("b", m.id)
      assert.equal(rpc.INTERNAL_ERROR, m.error.code)
      assert.matches("^internal error: .*kaboom$", m.error.message)
      assert.matches("^error handler: .*kaboom", st.log[1])
      nothing_before_ping(st, 1)
    end)

    it("leaves the reply to a handler that says it answers itself", function()
      local st = server()
      st.peer:send(req(9, "later"))
      assert.is_true(pump(function() return st.later ~= nil end, 5000))
      nothing_before_ping(st, 10) -- dispatch did not answer 9
      assert.is_true(st.conn:reply(st.later, { done = true }))
      local m = next_msg(st)
      assert.equal(9, m.id)
      assert.same({ done = true }, m.result)
    end)
  end)

  describe("replies", function()
    it("lays out replies so that rpc.raw_result lifts the result out of the line", function()
      local st = server()
      assert.is_true(st.conn:reply("r1", { list = json.array(), n = 1 }))
      local line = st.peer:recv_line(5000)
      local raw = rpc.raw_result(line, "r1")
      assert.equal(line, '{"jsonrpc":"2.0","id":"r1","result":' .. raw .. "}")
      assert.same({ list = {}, n = 1 }, cjson.decode(raw))
      assert.equal("[]", raw:match('"list":(%[%])')) -- the array stays an array
      assert.is_nil(rpc.raw_result(line, "r2"))
      assert.is_nil(rpc.raw_result(line, 1))
      assert.is_true(st.conn:fail(7, -1, "no"))
      assert.is_nil(rpc.raw_result(st.peer:recv_line(5000), 7)) -- an error has no result
      assert.is_true(st.conn:reply_raw(8, "[1,2]"))
      assert.same({ 1, 2 }, cjson.decode(st.peer:recv_line(5000)).result)
    end)

    it("sends notifications and errors with a null id", function()
      local st = server()
      assert.is_true(st.conn:notify("notifications/x", { a = 1 }))
      assert.is_true(st.conn:fail(nil, rpc.PARSE_ERROR, "bad"))
      local n = next_msg(st)
      assert.equal("notifications/x", n.method)
      assert.is_nil(n.id)
      assert.same({ a = 1 }, n.params)
      local e = next_msg(st)
      assert.equal(NULL, e.id)
      assert.same({ code = rpc.PARSE_ERROR, message = "bad" }, e.error)
    end)
  end)

  describe("ends", function()
    it("serves every line before EOF, a half line at EOF too, then closes with 'eof'", function()
      local st = server()
      st.peer:send(req(1, "ping") .. '{"jsonrpc":"2.0","id":2,"method":"ping"}', 5000)
      st.peer.pipe:shutdown()
      assert.equal(1, next_msg(st).id)
      assert.equal(2, next_msg(st).id)
      assert.is_nil(st.peer:recv(5000))
      assert.truthy(st.peer.eof)
      assert.equal("eof", st.why)
      assert.is_true(st.conn.closed)
      assert.is_false(st.conn:send { jsonrpc = "2.0", method = "late" })
    end)

    it("leaves the connection open at EOF to on_eof, which may still reply", function()
      local st = server { on_eof = function(conn) conn.saw_eof = true end }
      st.peer:send(req(1, "later"), 5000)
      st.peer.pipe:shutdown()
      assert.is_true(pump(function() return st.conn.saw_eof end, 5000))
      assert.is_nil(st.why)
      assert.is_true(st.conn:reply(st.later, { after = "eof" }))
      assert.same({ after = "eof" }, next_msg(st).result)
      st.conn:close("done")
      assert.equal("done", st.why)
      assert.is_nil(st.peer:recv(5000))
      assert.truthy(st.peer.eof)
    end)

    it("still writes the replies queued when it closes", function()
      local st = server { silent = true }
      local MiB = 1024 * 1024
      assert.is_true(st.conn:reply(1, { data = ("z"):rep(4 * MiB) })) -- more than the socket holds
      assert.is_true(st.pipe:get_write_queue_size() > 0)
      st.conn:close("bye")
      assert.equal("bye", st.why)
      st.peer:start_reading()
      local m = next_msg(st)
      assert.equal(4 * MiB, #m.result.data)
      assert.is_nil(st.peer:recv(5000))
      assert.truthy(st.peer.eof)
    end)

    describe("with a small MAX_QUEUED", function()
      local saved
      before_each(function() saved = rpc.MAX_QUEUED rpc.MAX_QUEUED = 256 * 1024 end)
      after_each(function() rpc.MAX_QUEUED = saved end)

      it("drops a peer that does not read its replies", function()
        local st = server { silent = true }
        local t = {}
        for i = 1, 64 do t[i] = req(i, "big", { bytes = 64 * 1024 }) end
        st.peer:send(table.concat(t), 5000)
        assert.is_true(pump(function() return st.why ~= nil end, 10000), "the peer was never dropped")
        assert.equal("peer is not reading its replies", st.why)
        assert.is_false(st.conn:reply(1, {}))
        -- dropped at once: the queued replies are not written
        st.peer:start_reading()
        local got = 0
        while st.peer:recv_line(5000) do got = got + 1 end
        assert.truthy(st.peer.eof)
        assert.is_true(got < 64, got .. " replies")
      end)
    end)

    it("closes with the kernel's reason when the peer is gone (EPIPE comes after the write)", function()
      local sigpipe = uv.new_signal() -- busted must not die of the write
      sigpipe:start("sigpipe", function() end)
      local st = server { on_eof = function() end } -- (still writing after the peer's EOF)
      st.peer:close()
      local sent = 0
      assert.is_true(pump(function()
        if st.conn.closed then return true end
        sent = sent + 1
        st.conn:send { jsonrpc = "2.0", method = "x", params = { n = sent } }
        return st.conn.closed
      end, 10000), "writes to a gone peer never failed")
      sigpipe:close()
      uv.run("nowait")
      assert.matches("^write failed: E", st.why)
      assert.is_nil(st.why:find("nil", 1, true))
    end)

    it("closes with 'write failed' when its output handle is gone", function()
      local st = server()
      st.pipe:close() -- (closed under it, as a host might)
      assert.is_false(st.conn:send { jsonrpc = "2.0", method = "x" })
      assert.matches("^write failed", st.why)
      assert.is_true(st.conn.closed)
    end)
  end)

  describe("helpers", function()
    it("rpc.tool_params: the name and arguments of a tools/call, or an error naming the field", function()
      assert.same({ "t", { a = 1 } }, { rpc.tool_params { name = "t", arguments = { a = 1 } } })
      assert.same({ "t" }, { rpc.tool_params { name = "t" } })
      assert.same({ "t" }, { rpc.tool_params { name = "t", arguments = json.null } })
      for _, bad in ipairs { {}, { name = 5 }, { name = { "t" } } } do
        local name, err = rpc.tool_params(bad)
        assert.is_nil(name)
        assert.same({ code = rpc.INVALID_PARAMS, message = "'name' must be a string (the tool's name)" }, err)
      end
      local name, err = rpc.tool_params { name = "t", arguments = "a=1" }
      assert.is_nil(name)
      assert.same({ code = rpc.INVALID_PARAMS, message = "'arguments' must be an object" }, err)
    end)

    it("rpc.id_key tells 1 from \"1\"", function()
      assert.are_not.equal(rpc.id_key(1), rpc.id_key("1"))
      assert.equal(rpc.id_key(1), rpc.id_key(1))
      assert.equal(rpc.id_key("a"), rpc.id_key("a"))
    end)

    it("rpc.error builds an error object", function()
      assert.same({ code = -1, message = "m", data = { x = 1 } }, rpc.error(-1, "m", { x = 1 }))
      assert.same({ code = -2, message = "n" }, rpc.error(-2, "n"))
    end)
  end)

  -- In child processes: busted must keep its own signal dispositions.
  describe("signals", function()
    local loop
    before_each(function() loop = core.new() end)
    after_each(function() loop:close() end)

    local function child(script)
      local job = assert(loop:spawn { argv = { h.lua, "-e", script }, env = h.lua_env() })
      return job
    end

    local STOPPER = [[
      local uv, rpc = require "luv", require "bgproc.rpc"
      local handles
      handles = rpc.stop_signals(function(why)
        io.stdout:write(why, "\n")
        for _, s in ipairs(handles) do s:close() end
      end)
      io.stdout:write("ready\n") io.stdout:flush()
      uv.run()
      io.stdout:write("stopped\n")
    ]]

    for _, sig in ipairs { "INT", "TERM", "HUP" } do
      it("rpc.stop_signals calls on_stop on SIG" .. sig, function()
        local job = child(STOPPER)
        assert.is_true(h.pump(loop, function() return (job:read(0)):find("ready\n", 1, true) ~= nil end, 10000),
          "the child never got ready: " .. job:read(0))
        job:kill(sig)
        local out = h.finish(loop, job, 10000)
        assert.equal("ready\nsignal sig" .. sig:lower() .. "\nstopped\n", out)
        assert.equal(0, (job:exit()))
      end)
    end

    -- write into a socket whose other end is closed; print what came back
    local function epipe_script(ignore)
      return ([[
        local uv, rpc = require "luv", require "bgproc.rpc"
        if %s then rpc.ignore_sigpipe() rpc.ignore_sigpipe() end
        local fds = assert(uv.socketpair("stream", 0))
        uv.fs_close(fds[2])
        local p = uv.new_pipe(false)
        p:open(fds[1])
        p:write("x", function(err) io.stdout:write(tostring(err), "\n") p:close() end)
        uv.run()
      ]]):format(tostring(ignore))
    end

    it("rpc.ignore_sigpipe turns a write to a closed peer into EPIPE (twice is fine)", function()
      local job = child(epipe_script(true))
      assert.equal("EPIPE\n", h.finish(loop, job, 10000))
      assert.equal(0, (job:exit()))
      -- and without it, the same write is death by SIGPIPE
      job = child(epipe_script(false))
      h.finish(loop, job, 10000)
      assert.equal("PIPE", select(2, job:exit()))
    end)
  end)
end)
