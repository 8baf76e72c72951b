-- The live view of `bgproc top`: its state (the records, the selection,
-- the filter, the sort, the screen shown), the daemon's answers, the
-- keys, and its start and stop. One connection; listBackgroundProcesses
-- every interval and after each action; one request at a time.
--
-- Every callback runs guarded: an error stops the view, the terminal
-- restored, and is raised again once the loop has returned. q, Ctrl-C,
-- SIGINT, SIGTERM and SIGHUP restore it too.
local uv = require "luv"
local client = require "bgproc.client"
local jobs = require "bgproc.cli.top.jobs"
local json = require "bgproc.lib.json"
local keys = require "bgproc.cli.top.keys"
local layout = require "bgproc.cli.top.layout"
local render = require "bgproc.cli.render"
local term = require "bgproc.cli.top.term"

local app = {}

local EXIT = render.EXIT

app.LIST = { name = "listBackgroundProcesses", arguments = {} }

-- A tool's error as one line: its message, without the list of tools an
-- unknown tool's message carries.
function app.error_text(err)
  local e = client.tool_error(err)
  return (tostring(e.message):gsub(" %(tools: .*%)$", ""))
end
local error_text = app.error_text

local App = {}
App.__index = App

-- fn guarded: an error stops the view (the terminal restored) and is
-- raised again once the loop has returned.
function App:guard(fn)
  return function(...)
    local ok, err = xpcall(fn, debug.traceback, ...)
    if not ok then
      self.err = self.err or err
      self:quit(EXIT.FAIL)
    end
  end
end

function App:say(msg)
  self.status = msg
end

-- The job under the cursor, or nil.
function App:selected()
  return self.shown[self.sel]
end

-- Filter and sort again (after new records, a filter, a sort); the same
-- job stays selected wherever it moved.
function App:reselect()
  self.shown = jobs.select(self.records, self.filter, jobs.SORTS[self.sort])
  local found
  for i, p in ipairs(self.shown) do
    if p.id == self.sel_id then found = i break end
  end
  self.sel = found or math.max(1, math.min(self.sel, #self.shown))
  local p = self.shown[self.sel]
  self.sel_id = p and p.id
end

function App:draw()
  if self.done then return end
  local w, h = self.term:size()
  local lines
  if self.view == "logs" then
    lines = layout.logs(self.logs, { width = w, height = h, color = self.color })
  else
    local m = {
      procs = self.shown, total = #self.records, running = self.running, sort = jobs.SORTS[self.sort],
      filter = self.filter, interval = self.interval, selected = self.sel, offset = self.offset,
      status = self.status or self.list_error, prompt = self.prompt, now = os.time(), loading = not self.loaded,
    }
    lines, self.offset, self.page = layout.list(m, { width = w, height = h, color = self.color, marker = true })
  end
  self.term:draw(lines, h)
end

-- ---- the daemon --------------------------------------------------------------------------

-- Connect again (the daemon restarted, or was not there yet); no daemon
-- is started from here.
function App:reconnect()
  if self.connecting then return end
  self.connecting = true
  client.connect_async({ socket = self.socket, autostart = false }, self:guard(function(c, err)
    self.connecting = false
    if self.done then
      if c then c:close() end
      return
    end
    if not c then
      self.list_error = err
      return self:draw()
    end
    self:adopt(c)
    self:refresh()
  end))
end

function App:adopt(c)
  c.in_loop = true -- its close must not run the loop: we are inside it
  c.on_close = self:guard(function(why)
    if self.c == c then self.c = nil end
    self.inflight = false
    self.list_error = "connection to the daemon lost (" .. tostring(why) .. ")"
    self:draw()
  end)
  self.c = c
end

-- A tool call: on_result(result) on success, else the error in the
-- status line (prefixed with `what`); the list is read again after.
function App:tool(name, args, what, on_result, sid)
  if not self.c then return self:say(what .. ": not connected to the daemon") end
  self.c:request("tools/call", { name = name, arguments = args, sessionId = sid }, self:guard(function(res, err)
    if res then on_result(json.normalize(res)) else self:say(what .. ": " .. error_text(err)) end
    self:refresh()
  end))
end

-- Read the list (and the logs shown); one request at a time: one asked
-- for meanwhile follows when it is answered.
function App:refresh()
  if self.done then return end
  if not self.c then return self:reconnect() end
  if self.view == "logs" then self:fetch_logs() end
  if self.inflight then
    self.again = true
    return
  end
  self.inflight = true
  self.c:request("tools/call", app.LIST, self:guard(function(res, err)
    self.inflight = false
    if res then
      self.records, self.list_error, self.loaded = res.processes or {}, nil, true
      self.running = jobs.running(self.records)
      self:reselect()
    elseif self.c then
      self.list_error = "list: " .. error_text(err)
    end
    if self.again then
      self.again = false
      self:refresh()
    end
    self:draw()
  end))
end

function App:fetch_logs()
  local l = self.logs
  if not self.c then
    l.error = "not connected to the daemon"
    return
  end
  local _, h = self.term:size()
  local args = { processId = l.id, lines = math.max(1, h - 2) }
  self.c:request("tools/call", { name = "getBackgroundProcess", arguments = args }, self:guard(function(res, err)
    if self.logs ~= l then return end -- left, or another job's since
    if res then
      l.output, l.status, l.error = res.output, res.status, nil
    else
      l.error = error_text(err)
    end
    self:draw()
  end))
end

-- ---- keys ----------------------------------------------------------------------------------

-- What one read of the terminal held: each key done in turn
-- (cli/top/keys.lua), then one redraw.
function App:on_keys(data, err)
  if not data then return self:quit(err and EXIT.FAIL or EXIT.OK) end -- the terminal went away
  for _, k in ipairs(term.keys(data)) do
    keys.press(self, k)
    if self.done then return end
  end
  self:draw()
end

-- ---- start and stop ------------------------------------------------------------------------

local SIGNALS = { sigint = 130, sigterm = 143, sighup = 129 }

-- Stop: the terminal restored first, then every handle closed, so the
-- loop returns.
function App:quit(code)
  if self.done then return end
  self.done, self.code = true, code
  if self.term then self.term:restore() end
  for _, h in ipairs(self.handles) do
    if not h:is_closing() then h:close() end
  end
  if self.c then self.c:close() end
  if self.looping then uv.stop() end
end

function App:start()
  local t, err = term.open(self:guard(function(data, rerr) self:on_keys(data, rerr) end))
  if not t then
    self.err_text = err
    return false
  end
  self.term = t
  for name, code in pairs(SIGNALS) do
    local s = uv.new_signal()
    s:start(name, self:guard(function() self:quit(code) end))
    self.handles[#self.handles + 1] = s
  end
  local winch = uv.new_signal()
  winch:start("sigwinch", self:guard(function()
    self.term:invalidate()
    if self.view == "logs" then self:fetch_logs() end
    self:draw()
  end))
  local timer = uv.new_timer()
  local ms = math.floor(self.interval * 1000)
  timer:start(ms, ms, self:guard(function() self:refresh() end))
  for _, h in ipairs { winch, timer } do self.handles[#self.handles + 1] = h end
  self:draw()
  self:refresh()
  return true
end

-- The view for parsed args a over client c (connected): call :run().
function app.new(a, c)
  local self = setmetatable({
    socket = a.socket, interval = a.interval, records = {}, shown = {}, running = 0, sel = 1, offset = 1,
    sort = 1, filter = a.filter or "", view = "list", handles = {}, color = (os.getenv("NO_COLOR") or "") == "",
  }, App)
  for i, s in ipairs(jobs.SORTS) do
    if s == a.sort then self.sort = i end
  end
  self:adopt(c)
  return self
end

-- Run until quit; returns the exit code. The terminal is restored
-- whatever stopped the loop; an error is raised again after.
function App:run()
  local ok, perr = xpcall(function()
    if self:start() then
      self.looping = true
      uv.run()
      self.looping = false
    end
  end, debug.traceback)
  self:quit(self.code or EXIT.OK)
  uv.run("nowait") -- the closes complete
  if not ok or self.err then error(self.err or perr, 0) end
  if self.err_text then return render.fail(self.err_text) end
  return self.code
end

return app
