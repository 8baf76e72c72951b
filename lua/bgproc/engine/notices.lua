-- Notices: what a job's owner is told without polling (a job ended,
-- became ready, printed a line matching its notifyPattern), as the
-- engine's events, and the text every interface shows for them: the
-- OpenCode plugin's chat notice, Claude Code's hook context, MCP log
-- messages, all from here.
local notices = {}

-- Stops after which the owner hears nothing: its session's end, the
-- daemon's stop, and a restart or replace (the job goes on, same id).
local UNTOLD_STOP = { session = true, shutdown = true, restart = true, replace = true }

-- Whether the owner wants to hear of ev. Not of a stop it asked for
-- itself (its own kill, its session's end, the daemon's stop).
function notices.wanted(ev)
  if ev.event ~= "ended" then return true end
  if UNTOLD_STOP[ev.stopReason] then return false end
  return not (ev.stopReason == "kill" and ev.stoppedBy ~= nil and ev.stoppedBy == ev.sessionId)
end

-- An engine:on_event listener that gives fn(ev) the events wanted (see
-- above) of session sid, or of every session when sid is nil.
function notices.listener(fn, sid)
  return function(ev)
    if (sid == nil or ev.sessionId == sid) and notices.wanted(ev) then fn(ev) end
  end
end

local function quoted_lines(s)
  local out = {}
  for line in (s or ""):gmatch("[^\n]+") do out[#out + 1] = "  | " .. line end
  return table.concat(out, "\n")
end

local function label(ev)
  if ev.name and ev.name ~= "" and ev.name ~= ev.processId then
    return ("%s (%s)"):format(ev.processId, ev.name)
  end
  return ev.processId
end

-- One notice as text: a line, and for an end the job's last lines.
function notices.line(ev)
  if ev.event == "ready" then
    return ("job %s is ready: %s"):format(label(ev), ev.line or "")
  elseif ev.event == "matched" then
    local more = ev.skipped and (" (and %d more such lines)"):format(ev.skipped) or ""
    return ("job %s printed a line matching /%s/%s: %s"):format(label(ev), ev.pattern or "", more, ev.line or "")
  end
  local s = ("job %s ended: %s: %s"):format(label(ev), ev.status, ev.endReason or ev.status)
  local last = quoted_lines(ev.lastLines)
  if last ~= "" then s = s .. "\nlast lines:\n" .. last end
  return s
end

-- Several notices as one message (a chat notice, a hook's context).
function notices.text(events)
  if #events == 0 then return "" end
  local parts = {}
  for i, ev in ipairs(events) do parts[i] = notices.line(ev) end
  local head = #events == 1 and "[bgproc] " or ("[bgproc] %d background job events:\n"):format(#events)
  return head .. table.concat(parts, "\n")
end

-- The MCP log level of an event (RFC 5424 names, as MCP uses).
function notices.level(ev)
  if ev.event == "ended" and ev.status ~= "completed" then return "warning" end
  return "notice"
end

return notices
