-- killProcesses: stop the selected jobs and everything they started.
local common = require "bgproc.tools.common"
local errors = require "bgproc.lib.errors"
local selectors = require "bgproc.engine.select"

local SELECTS = { "processId", "sessionId", "status", "tags" }

local kill = {
  name = "killProcesses",
  waits = true,
  description = "Stop background processes and everything they started (the whole process group): "
    .. "send `signal` (default TERM), wait graceMs (default 3000), then KILL what is left. Select by "
    .. "processId, sessionId, status, tags, or all: true for everything; an empty selection is an error. "
    .. "`escaped` lists processes that had left a job's group (setsid): killed through the job's cgroup "
    .. "where the machine gives one, else left running.",
  inputSchema = common.object(common.selector_props(SELECTS, { tags = "Jobs with any of these tags." }, {
    taskId = common.TASK_ID,
    all = { type = "boolean", description = "true selects every job (required when no other selector is given)." },
    signal = common.SIGNAL,
    graceMs = common.GRACE_MS,
  })),
  selects = SELECTS,
  annotations = { destructiveHint = true },
  arrays = { "killed", "alreadyFinished", "errors", "escaped" },
  cli = {
    { "tags", "--tag", "With any of these tags (repeatable)." },
    { "sessionId", "--session", "Of this session." },
    { "status", "--status", "With this status (repeatable)." },
    { "all", "--all", "Every job." },
    { "signal", "--signal", "Signal to send first (default TERM)." },
    { "graceMs", "--grace", "Milliseconds before KILL (default 3000).", argname = "<ms>" },
  },
}

-- "no selector: give 'processId', 'sessionId', 'status' or 'tags'
-- (non-empty), or 'all': true to stop every job"
kill.NO_SELECTOR = ("no selector: give %s (non-empty), or 'all': true to stop every job"):format(common.either(SELECTS))

function kill.handler(engine, args, ctx)
  local criteria = selectors.pick(args, SELECTS)
  if args.processId or args.taskId then -- an id or a name: the selector takes the id
    local one, err = common.lookup(engine, args, ctx)
    if not one then return nil, err end
    criteria.processId = one.id
  end
  local s, err = common.selector(engine, criteria)
  if not s then return nil, err end
  -- judged on what the selector does: `tags: []` narrows nothing, and
  -- must not stop every job (the seed's unknown-id defect)
  if not s.narrows and args.all ~= true then return errors.fail("invalid_argument", "%s", kill.NO_SELECTOR) end
  if criteria.sessionId and not engine:session_known(criteria.sessionId) then
    return errors.fail("not_found", "'sessionId': no session '%s'", criteria.sessionId)
  end
  local name
  name, err = common.signal(args)
  if not name then return nil, err end
  local recs = engine:select(s) -- (one id: a lookup, no scan)
  local stopped, finished, errs, escaped = engine:stop(recs, { signal = args.signal or "TERM",
    graceMs = args.graceMs, reason = "kill", by = ctx.sessionId })
  return { killed = stopped, alreadyFinished = finished, errors = errs, signal = name, escaped = escaped }
end

function kill.text(r)
  local s = ("killed %d: %s; already finished %d; errors %d"):format(#r.killed,
    table.concat(r.killed, ", "), #r.alreadyFinished, #r.errors)
  for _, e in ipairs(r.escaped or {}) do
    s = s .. ("\n%s: pid %d (%s) had left its process group: %s"):format(e.processId, e.pid, e.command,
      e.killed and "killed through the job's cgroup" or "left running (no cgroup)")
  end
  return s
end

return kill
