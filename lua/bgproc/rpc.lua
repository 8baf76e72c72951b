-- Newline-delimited JSON-RPC 2.0 over a luv stream (a Unix socket, or a
-- process's stdin/stdout). One Conn per peer: it frames lines, answers
-- malformed ones with the right error and keeps serving, and drops a peer
-- whose unread replies pile up.
local uv = require "luv"
local errors = require "bgproc.lib.errors"
local json = require "bgproc.lib.json"

local rpc = {}

-- The protocol's own arrays (see docs/protocol.md): tools/list's tools,
-- MCP content, events/take's and notices' events, session/close's
-- sessionIds. The tools declare theirs (tools/init.lua).
json.array_keys { "tools", "content", "events", "sessionIds" }

for name, code in pairs(errors.RPC) do rpc[name] = code end -- rpc.PARSE_ERROR, ...

rpc.MAX_LINE = 24 * 1024 * 1024   -- longer lines are refused, not buffered
rpc.MAX_QUEUED = 64 * 1024 * 1024 -- unread replies before a peer is dropped

local Conn = {}
Conn.__index = Conn

-- rpc.conn{ input = stream, output = stream (default input),
--           on_message = fn(conn, msg, line), on_close = fn(conn, why), log = fn,
--           on_eof = fn(conn) (optional: input ended; default: close) }
function rpc.conn(o)
  local self = setmetatable({
    input = o.input, output = o.output or o.input,
    on_message = o.on_message, on_close = o.on_close, on_eof = o.on_eof,
    log = o.log or function() end,
    parts = {}, size = 0, skipping = false, closed = false, pending = 0,
    inbox = {}, in_head = 1, in_tail = 0, -- lines received, not yet served
  }, Conn)
  return self
end

local function err_obj(code, message, data)
  return { code = code, message = message, data = data }
end
rpc.error = err_obj

function Conn:send(msg)
  return self:send_line(json.encode(msg))
end

function Conn:send_line(line)
  if self.closed then return false end
  -- (no copy of a long line) an error now returns nil, err; one the
  -- kernel reports later (EPIPE) comes to the callback
  local ok, req, err = pcall(self.output.write, self.output, { line, "\n" }, function(werr)
    if werr then self:close("write failed: " .. tostring(werr)) end
  end)
  if not ok or req == nil then
    self:close("write failed: " .. tostring(ok and err or req))
    return false
  end
  if self.output:get_write_queue_size() > rpc.MAX_QUEUED then
    self:close("peer is not reading its replies")
    return false
  end
  return true
end

-- Replies have a fixed layout, so a relay can lift the result out of the
-- line without decoding and re-encoding it (see rpc.raw_result).
function Conn:reply_raw(id, result_json)
  return self:send_line('{"jsonrpc":"2.0","id":' .. json.encode(id) .. ',"result":' .. result_json .. "}")
end

function Conn:reply(id, result)
  return self:reply_raw(id, json.encode(result))
end

-- The result's JSON text inside a reply line written by Conn:reply, or nil.
function rpc.raw_result(line, id)
  local prefix = '{"jsonrpc":"2.0","id":' .. json.encode(id) .. ',"result":'
  if line:sub(1, #prefix) == prefix and line:sub(-1) == "}" then
    return line:sub(#prefix + 1, -2)
  end
end

function Conn:fail(id, code, message, data)
  return self:send { jsonrpc = "2.0", id = id == nil and json.null or id, error = err_obj(code, message, data) }
end

function Conn:notify(method, params)
  return self:send { jsonrpc = "2.0", method = method, params = params }
end

-- Validate one decoded message. Returns msg, or nil and (id, message).
local function check(msg)
  if type(msg) ~= "table" or json.is_array(msg) then -- (a batch is refused before)
    return nil, nil, "a JSON-RPC message must be an object"
  end
  local id = msg.id
  local idt = type(id)
  -- 1e999 decodes as inf, which no reply could carry back (it encodes as null)
  local finite = idt == "number" and id == id and math.abs(id) ~= math.huge
  if id ~= nil and id ~= json.null and idt ~= "string" and not finite then
    return nil, nil, "'id' must be a string, a finite number or null"
  end
  if msg.jsonrpc ~= "2.0" then
    return nil, id, "'jsonrpc' must be \"2.0\""
  end
  if msg.method == nil and (msg.result ~= nil or msg.error ~= nil) then
    return msg -- a response (the client side receives these)
  end
  if type(msg.method) ~= "string" then
    return nil, id, "'method' must be a string"
  end
  local p = msg.params
  if p ~= nil and p ~= json.null and type(p) ~= "table" then
    return nil, id, "'params' must be an object or an array"
  end
  if p == json.null then msg.params = nil end
  return msg
end

function Conn:line(line)
  if line:find("^%s*$") then return end
  local msg, err = json.decode(line)
  if msg == nil then
    return self:fail(nil, rpc.PARSE_ERROR, "parse error: " .. tostring(err))
  end
  -- requests are normalized for the handlers; a reply goes to a client
  -- that may relay its raw text (see rpc.raw_result) or normalize itself
  if type(msg) == "table" and msg.method ~= nil then msg = json.normalize(msg) end
  if type(msg) == "table" and msg[1] ~= nil then
    return self:fail(nil, rpc.INVALID_REQUEST, "batch requests are not supported")
  end
  local ok, id, why = check(msg)
  if not ok then return self:fail(id, rpc.INVALID_REQUEST, "invalid request: " .. why) end
  local good, perr = pcall(self.on_message, self, msg, line)
  if not good then
    self.log("error", "handler: " .. tostring(perr))
    if msg.id ~= nil and msg.method then
      self:fail(msg.id, rpc.INTERNAL_ERROR, "internal error: " .. tostring(perr):match("^[^\n]*"))
    end
  end
end

local TOO_LONG = {} -- in the inbox: a line that was too long, to answer in turn

function Conn:queue(line)
  self.in_tail = self.in_tail + 1
  self.inbox[self.in_tail] = line
end

-- Split a chunk into lines for the inbox, then serve them.
function Conn:feed(chunk)
  local pos = 1
  while true do
    local nl = chunk:find("\n", pos, true)
    if not nl then
      local rest = #chunk - pos + 1
      if rest > 0 and not self.skipping then
        self.size = self.size + rest
        if self.size > rpc.MAX_LINE then
          self.parts, self.size, self.skipping = {}, 0, true
          self:queue(TOO_LONG)
        else
          self.parts[#self.parts + 1] = chunk:sub(pos)
        end
      end
      break
    end
    if self.skipping then
      self.skipping = false
    elseif self.size + (nl - pos) > rpc.MAX_LINE then
      -- the end of a long line came with its newline: still too long
      self.parts, self.size = {}, 0
      self:queue(TOO_LONG)
    else
      self.parts[#self.parts + 1] = chunk:sub(pos, nl - 1)
      self:queue(table.concat(self.parts))
      self.parts, self.size = {}, 0
    end
    pos = nl + 1
  end
  self:serve()
end

-- Serve the inbox's next line now, the others one per loop turn: a peer
-- that sends many requests at once (maybe never reading the answers) gets
-- them served in turn with everyone else's, not all ahead of them. Its
-- reading pauses meanwhile, so what waits here is at most one read.
function Conn:serve()
  if self.closed then return end
  local i = self.in_head
  if i <= self.in_tail then
    local line = self.inbox[i]
    self.inbox[i], self.in_head = nil, i + 1
    if line == TOO_LONG then
      self:fail(nil, rpc.INVALID_REQUEST, ("request line longer than %d bytes"):format(rpc.MAX_LINE))
    else
      self:line(line)
    end
  end
  if self.closed then return end
  if self.in_head <= self.in_tail then
    if not self.turns then self.turns = uv.new_idle() end
    if not self.turns:is_active() then self.turns:start(function() self:serve() end) end
    if self.reading then
      self.reading = false
      pcall(self.input.read_stop, self.input)
    end
    return
  end
  if self.turns then self.turns:stop() end
  if self.input_ended then return self:ended() end
  if not self.reading then self:start() end
end

-- Serve one decoded message with methods[name](arg, params, id):
--   return result                 -> replied
--   return nil, rpc.error(...)     -> the error replied
--   return nil, nil, true          -> the handler answers (or not) itself
-- Unknown methods get METHOD_NOT_FOUND; params that are an array get
-- INVALID_PARAMS.
-- Notifications (no id) only reach "notifications/..." methods and are
-- never answered. A "notifications/..." method sent as a request (with an
-- id) is handled as the notification, and answered {}: a request is
-- always answered.
function rpc.dispatch(conn, msg, methods, arg)
  if msg.method == nil then return end -- a response: servers send no requests
  local is_request = msg.id ~= nil
  local fn = methods[msg.method]
  if not fn then
    if is_request then conn:fail(msg.id, rpc.METHOD_NOT_FOUND, "method not found: " .. msg.method) end
    return
  end
  local params = msg.params or {}
  if params[1] ~= nil then
    if is_request then conn:fail(msg.id, rpc.INVALID_PARAMS, "'params' must be an object") end
    return
  end
  if msg.method:find("^notifications/") then
    fn(arg, params, nil)
    if is_request then conn:reply(msg.id, {}) end
    return
  end
  if not is_request then return end
  local res, err, handled = fn(arg, params, msg.id)
  if handled then return end
  if err then conn:fail(msg.id, err.code, err.message, err.data) else conn:reply(msg.id, res or {}) end
end

-- The tool and its arguments of a tools/call's params { name, arguments }:
-- name, args (nil when not given), or nil and an INVALID_PARAMS error.
function rpc.tool_params(params)
  if type(params.name) ~= "string" then
    return nil, err_obj(rpc.INVALID_PARAMS, "'name' must be a string (the tool's name)")
  end
  local args = params.arguments
  if args == json.null then args = nil end
  if args ~= nil and type(args) ~= "table" then
    return nil, err_obj(rpc.INVALID_PARAMS, "'arguments' must be an object")
  end
  return params.name, args
end

-- A table key for a request id: 1 and "1" are different requests.
function rpc.id_key(id)
  return type(id) .. ":" .. tostring(id)
end

-- ---- calls still running ---------------------------------------------------------

-- A server's calls still running, by request id (rpc.id_key), so that
-- notifications/cancelled { requestId } can stop one. Each is a record
-- { cancel = fn, cancelled = true once cancelled }, where the server may
-- keep more of its own.
local Calls = {}
Calls.__index = Calls

function rpc.calls()
  return setmetatable({ running = {} }, Calls)
end

-- Call id runs (record.cancel stops it). Returns record.
function Calls:add(id, record)
  self.running[rpc.id_key(id)] = record
  return record
end

-- Call id answered: forgotten.
function Calls:finish(id)
  self.running[rpc.id_key(id)] = nil
end

local function cancel_once(call)
  if call.cancelled then return end
  call.cancelled = true
  call.cancel()
end

-- notifications/cancelled: stop call id, once; ids not running are
-- ignored (some clients cancel after every call).
function Calls:cancel(id)
  local call = self.running[rpc.id_key(id)]
  if call then cancel_once(call) end
end

-- Stop every call running, or those which(record) picks.
function Calls:cancel_all(which)
  for _, call in pairs(self.running) do
    if not which or which(call) then cancel_once(call) end
  end
end

function Calls:empty()
  return next(self.running) == nil
end

-- A peer that hangs up before reading is an EPIPE on that connection,
-- never our death by SIGPIPE. Once per process; it keeps no loop alive.
local pipe_sig
function rpc.ignore_sigpipe()
  if pipe_sig then return end
  pipe_sig = uv.new_signal()
  pipe_sig:start("sigpipe", function() end)
  pipe_sig:unref()
end

-- Servers: on_stop("signal sigint") on SIGINT, SIGTERM or SIGHUP, and
-- SIGPIPE ignored. Returns the handles, to close when stopping.
function rpc.stop_signals(on_stop)
  rpc.ignore_sigpipe()
  local handles = {}
  for _, name in ipairs { "sigint", "sigterm", "sighup" } do
    local s = uv.new_signal()
    s:start(name, function() on_stop("signal " .. name) end)
    handles[#handles + 1] = s
  end
  return handles
end

-- The input ended and every line before the end was served.
function Conn:ended()
  -- a half line at EOF is still a request
  if #self.parts > 0 and not self.skipping then
    local line = table.concat(self.parts)
    self.parts, self.size = {}, 0
    self:line(line)
    if self.closed then return end
  end
  if self.on_eof then return self.on_eof(self) end
  return self:close("eof")
end

-- Start reading (again). EOF or an error closes the connection.
function Conn:start()
  if self.closed or self.input_ended then return end
  self.reading = true
  self.input:read_start(function(err, chunk)
    if err then return self:close("read error: " .. tostring(err)) end
    if chunk then return self:feed(chunk) end
    self.input_ended, self.reading = true, false
    if self.in_head > self.in_tail then self:ended() end -- else once served
  end)
end

-- Close: stop reading at once; replies already queued are still written
-- (a peer that half-closed gets its answers), then the handles close.
function Conn:close(why)
  if self.closed then return end
  self.closed = true
  local input, output = self.input, self.output
  pcall(input.read_stop, input)
  self.inbox, self.in_head, self.in_tail = {}, 1, 0
  if self.turns then self.turns:close() end
  local function close_all()
    for _, h in ipairs { input, output } do
      if not h:is_closing() then h:close() end
    end
  end
  if output ~= input and not input:is_closing() then input:close() end
  if why ~= "peer is not reading its replies" and not output:is_closing()
      and output:get_write_queue_size() > 0 then
    local ok = pcall(output.shutdown, output, close_all)
    if not ok then close_all() end
  else
    close_all()
  end
  if self.on_close then self.on_close(self, why) end
end

return rpc
