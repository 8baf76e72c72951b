-- bgproc: a background-process manager for people and AI coding agents.
--
--   local bgproc = require "bgproc"
--   local m = bgproc.new{}                 -- options below; uses luv's default loop
--   m:session_open("s1")
--   local job, err = m:call("createBackgroundProcess",
--     { command = "npm run dev", name = "web", tags = { "server" } }, { sessionId = "s1" })
--   m:run_until(function() return done end, 5000)  -- for hosts with no loop of their own
--   m:session_close("s1")                  -- ends the session's non-global jobs
--   m:shutdown()                           -- ends every job, reaps all
--
-- Options of bgproc.new (all optional):
--   config     path of a config file, or a table (default: BGPROC_CONFIG, then
--              $XDG_CONFIG_HOME/bgproc/init.lua); see bgproc/config.lua
--   plugins    list of plugin names, paths or tables (replaces the config's)
--   luv        false: do not attach to luv's loop (drive with run_until/step)
--   subreaper  true: become the subreaper of the jobs' orphans (daemons)
--   log        function(level, message) for engine messages (default: stderr)
--   store      a database path: records and output outlive this process (a
--              finished job's output moves to files in "output" beside it);
--              ":memory:" or nil (the default): nothing is kept on disk
--   defaultStore  the store when neither the config nor `store` names one
--              (the daemon's: $XDG_STATE_HOME/bgproc/bgproc.db)
--   and any config key (ringBytes, graceMs, maxRunning, retention, ...)
local engine = require "bgproc.engine"
local tools = require "bgproc.tools"

local bgproc = {
  version = "0.1.0",
  tools = tools,
}

-- A new engine with the tools (the engine itself knows none).
function bgproc.new(opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.tools = tools
  return engine.new(o)
end

return bgproc
