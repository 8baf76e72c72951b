-- restartBackgroundProcess: stop a job and start the same spec again,
-- under the same id.
local common = require "bgproc.tools.common"

local int = common.int

local restart = {
  name = "restartBackgroundProcess",
  waits = true,
  description = "Restart a background process in place: stop it and everything it started (`signal`, "
    .. "default TERM, then KILL after graceMs), then start the same command again with the same id, "
    .. "name, tags, cwd and env. The pid is new and `restarts` counts; output cursors go on from the last "
    .. "run's. A finished job starts again too. Give its id or its name.",
  inputSchema = common.object {
    processId = common.ID, taskId = common.TASK_ID,
    signal = common.SIGNAL, graceMs = common.GRACE_MS,
  },
  annotations = { destructiveHint = true },
  cli = {
    { "signal", "--signal", "Signal to stop it with first (default TERM)." },
    { "graceMs", "--grace", "Milliseconds before KILL (default 3000).", argname = "<ms>" },
  },
}

function restart.handler(engine, args, ctx)
  local rec, err = common.lookup(engine, args, ctx)
  if not rec then return nil, err end
  local signal
  signal, err = common.signal(args)
  if not signal then return nil, err end
  return engine:restart(rec, { signal = signal, graceMs = args.graceMs, sessionId = ctx.sessionId })
end

function restart.text(r)
  return ("restarted %s (pid %s, restart %d): %s"):format(r.id, int(r.pid), r.restarts or 0, r.name)
end

return restart
