-- `bgproc top` end to end: the real CLI in a real terminal (a tmux pane
-- of a tmux server of the spec's own, -L), over a private daemon with
-- real jobs. Keys are typed with send-keys; what shows is read with
-- capture-pane, polled until the expected text appears (with a deadline).
local h = require "helpers"
local display = require "bgproc.cli.top.display"

local BIN = h.root .. "/bin/bgproc"
local PROMPT = "topspec$ " -- (capture-pane drops the trailing space)

-- A word for sh, quoted.
local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- s as a Lua pattern matching itself.
local function lit(s)
  return (s:gsub("%p", "%%%0"))
end

local n = 0
local function uniq(prefix)
  n = n + 1
  return ("%s-%d-%d"):format(prefix, h.self_pid(), n)
end

-- ---- a tmux pane -----------------------------------------------------------------------------

local Pane = {}
Pane.__index = Pane

-- tmux on this pane's server; returns its output (it must succeed).
function Pane:tmux(args)
  local ok, out = h.sh(("tmux -L %s %s"):format(self.server, args))
  assert(ok, "tmux " .. args .. ": " .. out)
  return out
end

-- What the pane shows: lines of text (-e: with their SGR codes; -J:
-- wrapped lines joined, trailing spaces kept).
function Pane:screen(flags)
  return self:tmux("capture-pane -p " .. (flags or "") .. " -t top")
end

-- Wait until pred(screen) holds; returns the screen. Fails with what
-- was on it.
function Pane:wait(pred, what, flags)
  local last = ""
  local ok = h.wait_until(function()
    last = self:screen(flags)
    return pred(last)
  end, 15000, 20)
  assert(ok, ("timed out waiting for %s; the pane shows:\n%s"):format(what, last))
  return last
end

-- Wait until the pane shows text (plain, not a pattern).
function Pane:shows(text, flags)
  return self:wait(function(s) return s:find(text, 1, true) end, ("'%s'"):format(text), flags)
end

function Pane:gone(text)
  return self:wait(function(s) return not s:find(text, 1, true) end, ("'%s' to go"):format(text))
end

-- Type literal text; keys (Enter, Escape, C-c, Down) by their tmux names.
function Pane:type(text) self:tmux("send-keys -t top -l " .. quote(text)) end
function Pane:keys(names) self:tmux("send-keys -t top " .. names) end

function Pane:format(f)
  return (self:tmux(("display-message -p -t top %s"):format(quote(f))):gsub("%s+$", ""))
end

-- Start `bgproc top ARGS` in the pane's shell; returns when its first
-- frame shows a job.
function Pane:top(args, env_words)
  self:type(("%s%s top %s"):format(env_words and (env_words .. " ") or "", BIN, args or ""))
  self:keys("Enter")
  return self:wait(function(s) return s:find("%d+/[1-9]%d* running  sort: ") end, "top's first frame with jobs")
end

-- Processes of the pane: its shell and everything below it.
local function descendants(pid, out)
  out = out or {}
  out[#out + 1] = pid
  for _, c in ipairs(h.children(pid)) do descendants(c.pid, out) end
  return out
end

-- Kill the tmux server and wait until it, the shell and what ran in it
-- are gone.
function Pane:close()
  local pids = descendants(self.shell_pid)
  pids[#pids + 1] = self.server_pid
  h.sh(("tmux -L %s kill-server"):format(self.server))
  local gone = h.wait_until(function()
    for _, pid in ipairs(pids) do
      if h.alive(pid) then return false end
    end
    return true
  end, 5000)
  for _, pid in ipairs(pids) do
    if h.alive(pid) then require("luv").kill(pid, "sigkill") end
  end
  assert(gone, "the tmux server or a process of its pane outlived kill-server")
end

-- The panes open: after_each closes them, whatever failed.
local panes = {}

-- A shell in a new tmux server of its own, cols x rows, with the private
-- daemon's environment (env: more of it; false removes a variable).
local function open_pane(d, cols, rows, env)
  local self = setmetatable({ server = uniq("bgproc-top") }, Pane)
  local vars = { TMUX = false }
  for _, from in ipairs { d.env, env or {} } do
    for k, v in pairs(from) do vars[k] = v end
  end
  local unset, set = { "env" }, {} -- env wants its -u options first
  for k, v in pairs(vars) do
    if v == false then unset[#unset + 1] = "-u " .. k else set[#set + 1] = quote(k .. "=" .. v) end
  end
  local words = table.move(set, 1, #set, #unset + 1, unset)
  local ok, out = h.sh(("%s tmux -L %s -f /dev/null new-session -d -s top -x %d -y %d %s"):format(
    table.concat(words, " "), self.server, cols, rows, quote(("PS1=%s exec sh"):format(quote(PROMPT)))))
  assert(ok, "tmux new-session: " .. out)
  panes[#panes + 1] = self
  self.server_pid = tonumber(self:format("#{pid}"))
  self.shell_pid = tonumber(self:format("#{pane_pid}"))
  self:shows((PROMPT:gsub(" $", "")))
  return self
end

-- ---- the specs -------------------------------------------------------------------------------

describe("bgproc top, in a terminal (tmux)", function()
  local d, c, web, done

  -- A job through the daemon: its record.
  local function start(args)
    return h.tool_call(c, "createBackgroundProcess", args)
  end

  local function status_of(id)
    return h.tool_call(c, "getBackgroundProcess", { processId = id, lines = 0 }).status
  end

  setup(function()
    d = h.private_daemon()
    d.run { "daemon", "start" }
    c = assert(require("bgproc.client").connect { socket = d.socket, autostart = false })
    web = start { argv = { "sleep", "600" }, name = uniq("web"), tags = { "topspec" } }
    done = start { command = "echo finished-line", name = uniq("done") }
    h.tool_call(c, "waitForBackgroundProcess", { processId = done.id, timeoutMs = 10000 })
  end)

  teardown(function()
    h.tool_call(c, "killProcesses", { all = true, graceMs = 300 })
    c:close()
    d.stop()
  end)

  local pane
  after_each(function()
    for i = #panes, 1, -1 do
      table.remove(panes, i):close()
    end
    pane = nil
  end)

  -- The pane shows the shell again, out of the alternate screen, and the
  -- terminal is back in cooked mode (icanon, echo).
  local function assert_restored(p)
    p:wait(function(s) return not s:find(" running  sort: ", 1, true) end, "the view to go")
    assert.equal("0", p:format("#{alternate_on}"))
    p:type("stty -a | tr ' ' '\\n' | grep -x -e icanon -e echo | tr '\\n' ' '; echo '<-modes'")
    p:keys("Enter")
    local s = p:shows(" <-modes")
    assert.truthy(s:find("icanon echo  <-modes", 1, true) or s:find("icanon echo <-modes", 1, true), s)
  end

  it("lists the jobs with counts and the key help, redrawing every second", function()
    pane = open_pane(d, 120, 30)
    local s = pane:top()
    assert.matches("%d+/%d+ running  sort: cpu  every 1s", s)
    assert.truthy(s:find("q quit", 1, true))
    assert.matches("ID +NAME +STATUS +PID +CPU%% +MEM +PORTS +AGE +LAST LINE", s)
    assert.matches(lit(web.id) .. " +" .. lit(web.name) .. " +running +" .. web.pid, s)
    assert.matches(lit(done.id) .. " +" .. lit(done.name) .. " +completed +%- .* finished%-line", s)
    -- the age column moves on without a key
    local row = lit(web.name) .. " +running .-(%d+[smhd]) "
    local age = s:match(row)
    pane:wait(function(now) return now:match(row) ~= age end, "the age to change")
    -- colours by default
    assert.truthy(pane:screen("-e"):find("\27[", 1, true))
  end)

  it("cycles the sort with s, shown in the header", function()
    pane = open_pane(d, 120, 30)
    pane:top()
    pane:type("s")
    pane:shows("sort: memory")
    pane:type("s")
    pane:shows("sort: age")
    pane:type("sss")
    pane:shows("sort: cpu")
  end)

  it("filters with / (Enter applies, Esc cancels) and shows a job's logs with l", function()
    pane = open_pane(d, 120, 30)
    pane:top()
    pane:type("/" .. done.name)
    pane:shows("/" .. done.name .. "_")
    pane:keys("Enter")
    pane:shows("filter: " .. done.name .. " (1 shown)")
    pane:gone(web.name)
    pane:type("/zzz")
    pane:keys("Escape")
    pane:gone("/zzz")
    pane:shows("filter: " .. done.name .. " (1 shown)")

    pane:type("l")
    local s = pane:shows("logs of " .. done.id)
    pane:shows("finished-line")
    assert.is_nil(s:find("sort:", 1, true))
    pane:type("x")
    pane:shows(" running  sort: ")
    pane:gone("logs of")
  end)

  -- A new `sleep` job, and top in a pane listing only it (filtered on its
  -- name), selected.
  local function top_on_new_job(name)
    local job = start { argv = { "sleep", "600" }, name = uniq(name) }
    pane = open_pane(d, 120, 30)
    pane:top()
    pane:type("/" .. job.name)
    pane:keys("Enter")
    pane:shows("(1 shown)")
    return job
  end

  it("kills the selected job with k", function()
    local victim = top_on_new_job("victim")
    pane:type("k")
    pane:shows("killed " .. victim.id)
    assert.truthy(h.wait_until(function() return require("bgproc.engine.states").FINAL[status_of(victim.id)] end, 10000))
    pane:shows(victim.name .. " cancelled")
  end)

  it("restarts the selected job with r, or says in the status line why not", function()
    local job = top_on_new_job("again")
    pane:type("r")
    local s = pane:wait(function(s)
      return s:find("restarted " .. job.id, 1, true) or s:find("restart " .. job.id .. ": ", 1, true)
    end, "restart's answer")
    assert.truthy(s:find(" running  sort: ", 1, true)) -- still there
  end)

  it("moves the selection with the arrows, Home and End", function()
    pane = open_pane(d, 120, 30)
    local s = pane:top()
    local ids = {} -- the rows' ids, top to bottom
    for id in s:gmatch("\n[> ](%S+) [^\n]-[0-9smhd-] ") do ids[#ids + 1] = id end
    assert.is_true(#ids >= 2, s)
    pane:shows(">" .. ids[1] .. " ")
    pane:keys("Down")
    pane:shows(">" .. ids[2] .. " ")
    pane:keys("End")
    pane:shows(">" .. ids[#ids] .. " ")
    pane:keys("Up")
    pane:shows(">" .. ids[#ids - 1] .. " ")
    pane:keys("Home")
    pane:shows(">" .. ids[1] .. " ")
  end)

  it("quits with q and gives the terminal back", function()
    pane = open_pane(d, 120, 30)
    pane:top()
    pane:type("q")
    pane:gone(" running  sort: ")
    pane:type("echo rc=$?")
    pane:keys("Enter")
    pane:shows("rc=0")
    assert_restored(pane)
  end)

  it("quits with Ctrl-C and with SIGTERM, giving the terminal back each time", function()
    pane = open_pane(d, 120, 30)
    pane:top()
    pane:keys("C-c")
    pane:gone(" running  sort: ")
    pane:type("echo rc=$?")
    pane:keys("Enter")
    pane:shows("rc=130")
    assert_restored(pane)

    pane:top()
    local top_pid
    for _, pid in ipairs(descendants(pane.shell_pid)) do
      local f = io.open("/proc/" .. pid .. "/cmdline")
      local cmd = f and f:read("a") or ""
      if f then f:close() end
      if cmd:find("bgproc\0top", 1, true) then top_pid = pid end
    end
    assert.truthy(top_pid, "no bgproc top process under the pane's shell")
    require("luv").kill(top_pid, "sigterm")
    assert_restored(pane)
  end)

  it("paints nothing with NO_COLOR set", function()
    pane = open_pane(d, 120, 30, { NO_COLOR = "1" })
    pane:top()
    pane:type("s") -- a redraw after a key too
    pane:shows("sort: memory")
    local s = pane:screen("-e")
    assert.is_nil(s:find("\27[", 1, true), s)
  end)

  it("fits a 40-column terminal, and redraws to fit when resized", function()
    local function fits(s)
      for line in s:gmatch("[^\n]*") do
        if display.width(line) > 40 then return false end
      end
      return true
    end
    pane = open_pane(d, 40, 12)
    local s = pane:top()
    pane:shows(web.id)
    s = pane:screen("-J")
    assert.is_true(fits(s), s)
    assert.matches("ID +NAME +STATUS", s)
    pane:type("q")
    assert_restored(pane)

    pane:tmux("resize-window -t top -x 120 -y 30")
    pane:top()
    pane:shows("LAST LINE")
    pane:tmux("resize-window -t top -x 40 -y 12")
    s = pane:wait(function(now) return not now:find("LAST LINE", 1, true) and now:find(web.id, 1, true) end,
      "the frame for 40 columns", "-J")
    assert.is_true(fits(s), s)
  end)
end)

describe("bgproc top, without a terminal", function()
  local d
  setup(function() d = h.private_daemon() end)
  teardown(function()
    d.run { "kill", "--all" }
    d.stop()
  end)

  it("prints one plain frame with --once, and refuses to run live (exit 2)", function()
    local started = d.run { "start", "--name", "once-job", "--", "sleep", "600" }
    assert.matches("started", started)
    local out, code, so = d.run { "top", "--once", "--filter", "once" }
    assert.equal(0, code, out)
    assert.matches("^1/1 running  sort: cpu  filter: once %(1 shown%)\nID +NAME", so)
    assert.matches("once%-job +running", so)
    assert.is_nil(so:find("\27", 1, true))
    local out2, code2, _, se2 = d.run { "top" }
    assert.equal(2, code2, out2)
    assert.matches("needs a terminal.*%-%-once", se2)
  end)

  it("refuses a bad --interval, naming it (exit 2)", function()
    for _, v in ipairs { "0", "abc", "61", "-1" } do
      local out, code, _, se = d.run { "top", "--interval", v }
      assert.equal(2, code, out)
      assert.matches("%-%-interval", se)
    end
  end)
end)
