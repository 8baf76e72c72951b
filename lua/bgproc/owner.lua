-- Who owns a job started from this process (the CLI, a hook, `bgproc
-- mcp`): the process whose end should end the job, read from /proc.
--
--   a terminal     the terminal's session leader, its interactive shell:
--                  a script, a subshell, `time ( ... )`, make or npm run
--                  in that terminal all count as the terminal;
--   an agent       the agent process, not the one-off shell its tool runs
--                  each command in (`bash -c ...`): known by the marker
--                  its tool sets in the environment (Claude Code's
--                  CLAUDECODE, OpenCode's OPENCODE), or the first process
--                  up the tree that is not a shell, when there is no
--                  terminal;
--   BGPROC_OWNER_PID  names the owner outright (other hosts, tests), as
--                  Claude Code's CLAUDE_PID and OpenCode's OPENCODE_PID do.
local proc = require "bgproc.lib.proc"

local owner = {}

local SHELLS = { sh = true, bash = true, dash = true, zsh = true, ksh = true, mksh = true,
                 fish = true, busybox = true, ash = true, yash = true }

-- Environment variables agents set in their shell tool's environment: a
-- marker, or the agent's pid itself (Claude Code's CLAUDE_PID).
owner.AGENT_MARKERS = { "CLAUDECODE", "OPENCODE" }
owner.AGENT_PIDS = { "BGPROC_OWNER_PID", "CLAUDE_PID", "OPENCODE_PID" }

-- Every variable that says who a caller is: the daemon, serving every
-- caller, keeps none of its starter's (its jobs inherit its environment).
owner.CALLER_VARS = { "BGPROC_SESSION", "BGPROC_SOCKET" }
for _, list in ipairs { owner.AGENT_MARKERS, owner.AGENT_PIDS } do
  table.move(list, 1, #list, #owner.CALLER_VARS + 1, owner.CALLER_VARS)
end

local argv_of = proc.argv

-- "wrapper" (sh -c ...), "script" (sh file), "interactive" (a shell with
-- options only), or nil when pid is not a shell.
function owner.shell_kind(pid)
  local argv = argv_of(pid)
  local name = argv and argv[1] and (argv[1]:match("([^/]+)$") or ""):gsub("^%-", "")
  if not name or not SHELLS[name] then return nil end
  for i = 2, #argv do
    if argv[i]:find("^%-%a*c%a*$") then return "wrapper" end
    if not argv[i]:find("^[-+]") then return "script" end
  end
  return "interactive"
end

-- The first process from pid up the tree that is not a shell (the agent
-- whose tool ran the shells), or the topmost shell below init.
function owner.agent_of(pid)
  local last = pid
  for _ = 1, 64 do
    if not owner.shell_kind(pid) then return pid end
    local st = proc.stat(pid)
    if not st or not st.ppid or st.ppid <= 1 then return last end
    last, pid = pid, st.ppid
  end
  return last
end

-- A process in words: "shell 4321", "claude 777".
function owner.describe(pid)
  local st = proc.stat(pid)
  local shell = owner.shell_kind(pid)
  return ("%s %d"):format(shell and "shell" or (st and st.comm or "process"), pid)
end
local describe = owner.describe

-- The session of what an owner's CLI and hooks start: one per owner.
function owner.session_id(pid)
  return "shell-" .. pid
end

-- The owner of what this process starts: { pid, kind ("named",
-- "terminal", "agent"), description ("shell 4321", "claude 777") }.
-- parent: this process's parent pid. getenv: os.getenv or a stand-in.
function owner.find(parent, getenv)
  getenv = getenv or os.getenv
  for _, var in ipairs(owner.AGENT_PIDS) do
    local named = math.tointeger(tonumber(getenv(var) or ""))
    if named and named > 1 and proc.stat(named) then
      return { pid = named, kind = "named", description = describe(named) }
    end
  end
  for _, var in ipairs(owner.AGENT_MARKERS) do
    local v = getenv(var)
    if v and v ~= "" then
      local pid = owner.agent_of(parent)
      return { pid = pid, kind = "agent", description = describe(pid) }
    end
  end
  -- a terminal: its session leader, when that is its shell (not a `-c`
  -- wrapper, nor this very process: `ssh -t host bgproc ...`, `setsid`)
  local me = proc.stat("self")
  local leader = me and me.tty ~= 0 and me.session
  local kind = leader and leader > 1 and owner.shell_kind(leader)
  if (kind == "interactive" or kind == "script") and leader ~= proc.self_pid() then
    return { pid = leader, kind = "terminal", description = describe(leader) }
  end
  local pid = owner.agent_of(parent)
  return { pid = pid, kind = "agent", description = describe(pid) }
end

-- The session/open params of a caller, by kind (parent: the caller's
-- parent pid; getenv: os.getenv or a stand-in):
--   "cli"   the owner's session ("shell-<pid>"), ending when the owner
--           exits; or the one BGPROC_SESSION names, bound to nothing;
--   "hook"  the owner's session, as "cli" finds it (BGPROC_SESSION aside):
--           an agent's hook reaches what its shell tool started;
--   "mcp"   a session that ends with the connection, notices pushed,
--           owned by the agent that runs the server; the caller adds
--           its sessionId.
function owner.session_params(kind, parent, getenv)
  getenv = getenv or os.getenv
  if kind == "mcp" then
    local agent = owner.agent_of(parent)
    return { bind = "connection", notify = true, ownerPid = agent, owner = "MCP client " .. describe(agent) }
  end
  local named = kind == "cli" and getenv("BGPROC_SESSION")
  if named and named ~= "" then return { sessionId = named, bind = "none" } end
  local who = owner.find(parent, getenv)
  return { sessionId = owner.session_id(who.pid), bind = "pid", pid = who.pid, owner = who.description }
end

return owner
