-- `bgproc hook claude EVENT`: Claude Code hooks (settings.json), so a
-- Claude Code session's jobs end with it and the model hears, at its next
-- turn, of what ended or became ready meanwhile.
--
-- The session is the one `bgproc start` in Claude's Bash tool joins: the
-- Claude Code process's ("shell-<pid>", see owner.lua). A hook never
-- fails its event: any trouble (no daemon, bad input) prints nothing and
-- exits 0, so Claude Code goes on.
local json = require "bgproc.json"
local owner = require "bgproc.owner"

local hooks = {}

hooks.CLAUDE_EVENTS = { SessionEnd = true, UserPromptSubmit = true, PostToolUse = true }

-- The hook's input (JSON on stdin), or {} when there is none or it is bad.
local function input(text)
  local ok, v = pcall(json.decode, text or "")
  return ok and type(v) == "table" and v or {}
end

-- Run hook `event` with `stdin_text`; connect() gives a daemon client or
-- nil. Returns what to print (may be "").
function hooks.claude(event, stdin_text, parent, connect)
  local hook = input(stdin_text)
  local agent = owner.find(parent).pid
  local sid = "shell-" .. agent
  local c = connect()
  if not c then return "" end
  local printed = ""
  if event == "SessionEnd" then
    local why = type(hook.reason) == "string" and hook.reason ~= "" and (" (" .. hook.reason:sub(1, 80) .. ")") or ""
    -- Claude Code gives SessionEnd hooks little time: the stop goes on in
    -- the daemon whether or not we wait for its answer
    c:call("session/close", { sessionId = sid, reason = "Claude Code session ended" .. why }, 1000)
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

return hooks
