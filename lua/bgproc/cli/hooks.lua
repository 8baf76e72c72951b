-- `bgproc hook claude EVENT`: Claude Code hooks (settings.json), so a
-- Claude Code session's jobs end with it and the model hears, at its next
-- turn, of what ended or became ready meanwhile.
--
-- The session is the one `bgproc start` in Claude's Bash tool joins: the
-- Claude Code process's ("shell-<pid>", see owner.lua). A hook never
-- fails its event: any trouble (no daemon, bad input) prints nothing and
-- exits 0, so Claude Code goes on.
local uv = require "luv"
local json = require "bgproc.lib.json"
local owner = require "bgproc.owner"

local hooks = {}

hooks.CLAUDE_EVENTS = { SessionEnd = true, UserPromptSubmit = true, PostToolUse = true }

hooks.STDIN_MS = 2000 -- the most a hook waits for its input to end

-- Standard input, read to its end or for STDIN_MS at most (a hook's
-- input is small, and a stdin left open must not hang the agent).
function hooks.read_stdin()
  local kind = uv.guess_handle(0)
  if kind == "tty" then return "" end
  if kind ~= "pipe" then return io.stdin:read("a") or "" end
  local pipe, parts, done = uv.new_pipe(false), {}, false
  pipe:open(0)
  pipe:read_start(function(err, chunk)
    if err or not chunk then done = true else parts[#parts + 1] = chunk end
  end)
  local timer = uv.new_timer()
  timer:start(hooks.STDIN_MS, 0, function() done = true end)
  while not done do uv.run("once") end
  timer:close()
  pipe:close()
  uv.run("nowait")
  return table.concat(parts)
end

-- The hook's input (JSON on stdin), or {} when there is none or it is bad.
local function input(text)
  local ok, v = pcall(json.decode, text or "")
  return ok and type(v) == "table" and v or {}
end

-- Run hook `event` with `stdin_text`; connect() gives a daemon client or
-- nil. Returns what to print (may be "").
function hooks.claude(event, stdin_text, parent, connect)
  local hook = input(stdin_text)
  local session = owner.session_params("hook", parent)
  local sid, agent = session.sessionId, session.pid
  local c = connect()
  if not c then return "" end
  local printed = ""
  if event == "SessionEnd" then
    local why = type(hook.reason) == "string" and hook.reason ~= "" and (" (" .. hook.reason:sub(1, 80) .. ")") or ""
    -- Claude Code gives SessionEnd hooks little time: the stop goes on in
    -- the daemon whether or not we wait for its answer
    -- the Bash tool's jobs and those of the agent's bgproc mcp
    c:call("session/close", { sessionId = sid, ownerPid = agent, reason = "Claude Code session ended" .. why }, 1000)
  else
    -- the Bash tool's jobs, and those of the agent's MCP server (bgproc mcp)
    local res = c:call("events/take", { sessionIds = { sid }, ownerPid = agent }, 5000)
    if res and res.text and res.text ~= "" then
      printed = json.encode { hookSpecificOutput = { hookEventName = event, additionalContext = res.text } }
    end
  end
  c:close()
  return printed
end

-- `bgproc hook AGENT EVENT`: what to print. An agent or event we do not
-- serve does nothing (a note on stderr), so a hook never fails.
function hooks.run(agent, event, parent, connect)
  if agent ~= "claude" or not hooks.CLAUDE_EVENTS[event] then
    io.stderr:write(("bgproc hook: nothing to do for %s %s (agents: claude; events: %s)\n")
      :format(tostring(agent), tostring(event), "SessionEnd, UserPromptSubmit, PostToolUse"))
    return ""
  end
  return hooks.claude(event, hooks.read_stdin(), parent, connect)
end

-- The `hook` subcommand (a: the parsed args): prints what hooks.run
-- gives, and exits 0 whatever happens (exit 2 would block the agent's
-- turn).
function hooks.command(a)
  local ok, printed = pcall(hooks.run, a.agent, a.event, math.tointeger(uv.os_getppid()), function()
    return require("bgproc.client").connect { socket = a.socket, autostart = false }
  end)
  if ok and printed ~= "" then io.stdout:write(printed, "\n") end
  if not ok then io.stderr:write("bgproc hook: ", tostring(printed), "\n") end
  return 0
end

return hooks
