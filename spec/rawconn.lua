-- A raw connection to a daemon for the specs: a luv pipe speaking the
-- JSON-RPC lines by hand, with no bgproc module in between.
local uv = require "luv"
local cjson = require "cjson"
local json = require "bgproc.lib.json"

local rawconn = {}

-- Run luv's loop until pred() or the timeout (a 10 ms tick re-checks pred).
function rawconn.pump(pred, ms)
  uv.update_time()
  local deadline = uv.now() + (ms or 5000)
  local timer = uv.new_timer()
  timer:start(10, 10, function() end)
  while not pred() and uv.now() < deadline do
    uv.run("once")
    uv.update_time()
  end
  timer:close()
  uv.run("nowait")
  return pred()
end

-- A raw connection: bytes in, lines out.
local Raw = {}
Raw.__index = Raw

-- rawconn.connect(socket, { silent = true }): connected, reading unless silent.
-- Returns nil, err when the connect fails.
function rawconn.connect(socket, opts)
  local pipe = uv.new_pipe(false)
  local done, cerr = false, nil
  pipe:connect(socket, function(err) done, cerr = true, err end)
  rawconn.pump(function() return done end, 3000)
  if not done or cerr then
    if not pipe:is_closing() then pipe:close() end
    uv.run("nowait")
    return nil, cerr or "connect timed out"
  end
  local self = setmetatable({ pipe = pipe, lines = {}, head = 1, n = 0, part = {}, eof = false, bytes = 0 }, Raw)
  if not (opts and opts.silent) then self:start_reading() end
  return self
end

function Raw:start_reading()
  self.pipe:read_start(function(err, chunk)
    if err or not chunk then
      self.eof = err or "eof"
      return
    end
    self.bytes = self.bytes + #chunk
    local pos = 1
    while true do
      local nl = chunk:find("\n", pos, true)
      if not nl then break end
      self.part[#self.part + 1] = chunk:sub(pos, nl - 1)
      self.n = self.n + 1
      self.lines[self.n] = table.concat(self.part)
      self.part = {}
      pos = nl + 1
    end
    if pos <= #chunk then self.part[#self.part + 1] = chunk:sub(pos) end
  end)
end

-- Write data; with wait_ms, until it is written (asserting no error).
function Raw:send(data, wait_ms)
  local done, werr = false, nil
  self.pipe:write(data, function(err) done, werr = true, err end)
  if wait_ms then
    assert(rawconn.pump(function() return done end, wait_ms), "the write did not complete in time")
    assert(not werr, "write failed: " .. tostring(werr))
  end
end

-- The next line from the daemon as a string; nil at EOF or after ms.
function Raw:recv_line(ms)
  rawconn.pump(function() return self.head <= self.n or self.eof end, ms or 5000)
  if self.head > self.n then return nil end
  local l = self.lines[self.head]
  self.lines[self.head] = nil
  self.head = self.head + 1
  return l
end

-- The next message, decoded (cjson: null ids are cjson.null).
function Raw:recv(ms)
  local l = self:recv_line(ms)
  return l and cjson.decode(l)
end

function Raw:request(id, method, params)
  self:send(json.encode { jsonrpc = "2.0", id = id, method = method, params = params } .. "\n")
end

function Raw:close()
  if not self.pipe:is_closing() then self.pipe:close() end
  uv.run("nowait")
end

return rawconn
