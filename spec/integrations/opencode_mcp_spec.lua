-- `bgproc mcp` as OpenCode's local MCP server in a real `opencode run`
-- (opencode-ai from npm, through tools/ensure-opencode.sh), driven by the
-- scripted OpenAI-compatible server of opencode_spec.lua
-- (spec/support/opencode/mock-openai.mjs); no native plugin.
--
-- The bug this guards against: OpenCode ends its MCP server's whole
-- process tree when it exits. The daemon `bgproc mcp` starts on demand
-- used to be a descendant of `bgproc mcp`, so it, and the global jobs
-- with it, died with OpenCode. So no daemon runs before opencode: `bgproc
-- mcp` must start it. While the model's last answer is held back, the
-- spec reads the process tree (the daemon must be no descendant of
-- opencode); after opencode exits (and the spec's loop has killed what
-- was left of opencode's process group and cgroup), the same daemon must
-- answer, the global job run, and the session job be cancelled.
local h = require "helpers"
local core = require "bgproc.core"
local cjson = require "cjson"
local oc = require "support.opencode.harness"

local ROOT = h.root
local json_lines = oc.json_lines

local function cmdline(pid)
  return ((h.read_file(("/proc/%d/cmdline"):format(pid)) or ""):gsub("%z", " "):gsub(" $", ""))
end

-- pid and its ancestors up to init: { {pid=, comm=, cmd=}, ... }
local function ancestry(pid)
  local chain = {}
  for _ = 1, 128 do
    local st = h.stat(pid)
    if not st then break end
    chain[#chain + 1] = { pid = pid, comm = st.comm, cmd = cmdline(pid) }
    if st.ppid == 0 then break end
    pid = st.ppid
  end
  return chain
end

-- Live descendants of pid (by ppid links): { [pid] = cmdline }
local function descendants(pid)
  local out, queue = {}, { pid }
  while #queue > 0 do
    local p = table.remove(queue)
    for _, c in ipairs(h.children(p)) do
      if not out[c.pid] and c.state ~= "Z" then
        out[c.pid] = cmdline(c.pid)
        queue[#queue + 1] = c.pid
      end
    end
  end
  return out
end

local function chain_text(chain)
  local out = {}
  for _, c in ipairs(chain) do out[#out + 1] = ("%d (%s) %s"):format(c.pid, c.comm, c.cmd) end
  return table.concat(out, "\n  <- ")
end

describe("bgproc mcp as OpenCode's local MCP server (opencode run)", function()
  local skip, d, dir, cache
  local run = {} -- what the run left: code, out, err, requests, seen (the tree mid-run), status, jobs

  -- `bgproc --json daemon status`: never starts a daemon
  local function status()
    local _, _, stdout = d.run { "--json", "daemon", "status" }
    local ok, s = pcall(cjson.decode, stdout or "")
    return ok and s or { running = false, raw = stdout }
  end

  lazy_setup(function()
    cache, skip = oc.install()
    if not cache then return end
    d = h.private_daemon()
    dir = d.dir
    -- no daemon yet: `bgproc mcp` is to start it
    run.before = status()

    local p = oc.project(dir, cache)

    run.go = dir .. "/go" -- the spec writes it once it has read the process tree
    local script = {
      { tool = { name = "bgproc_createBackgroundProcess",
                 arguments = { command = "sleep 300", name = "keep", global = true } } },
      { tool = { name = "bgproc_createBackgroundProcess",
                 arguments = { command = "sleep 301", name = "session-job" } } },
      { awaitFile = run.go, timeoutMs = 60000, text = "all done" },
    }
    local loop = core.new()
    run.cgroup = loop:cgroup() or false
    local env = h.env_with(d.env)
    local mock, port = oc.mock(loop, env, dir, script)
    oc.config(p, port, {
      -- bgproc as a local MCP server, on the private daemon's socket,
      -- state and config (OpenCode's own XDG dirs are others)
      mcp = { bgproc = {
        type = "local",
        command = { ROOT .. "/bin/bgproc", "mcp" },
        enabled = true,
        environment = {
          BGPROC_SOCKET = d.env.BGPROC_SOCKET,
          BGPROC_CONFIG = d.env.BGPROC_CONFIG,
          XDG_STATE_HOME = d.env.XDG_STATE_HOME,
          XDG_CONFIG_HOME = d.env.XDG_CONFIG_HOME,
        },
      } },
      permission = { bash = "deny", edit = "deny", webfetch = "deny" },
    })
    local job = oc.run(loop, cache, p, env, "start the jobs")
    run.oc_pid = job:pid()

    -- While the last answer waits on run.go: once both jobs run (the
    -- daemon says so; `daemon status` starts none), read the tree.
    local function look()
      local s = status()
      if not (s.running and (s.jobsRunning or 0) >= 2) then return false end
      local below = descendants(run.oc_pid)
      local seen = { daemon = s.pid, chain = ancestry(s.pid), below = below }
      for pid, cmd in pairs(below) do
        if cmd:find("bin/bgproc mcp", 1, true) then seen.mcp = pid end
      end
      run.seen = seen
      h.write_file(run.go, "go\n")
      return true
    end
    local looked = false
    local finished = h.pump(loop, function()
      local info = job:info()
      if info.state ~= "running" and info.eof then return true end
      if not looked and h.read_file(dir .. "/mock.jsonl") then looked = look() end
      return false
    end, 90000)
    if not looked then h.write_file(run.go, "go\n") end -- never leave the mock waiting
    run.out = (job:read(0, nil, "stdout"))
    run.err = (job:read(0, nil, "stderr"))
    run.code = finished and job:exit() or "timed out"
    -- right as opencode is gone, before the spec kills anything
    run.alive_at_exit = run.seen and h.alive(run.seen.daemon)
    oc.stop_mock(loop, mock)
    -- SIGKILL what is left of opencode's group (and its cgroup leaf, where
    -- there is one): a host's tree kill, at its widest
    loop:close()

    run.requests = json_lines(h.read_file(dir .. "/mock.jsonl"))
    run.events = json_lines(run.out)
    -- the daemon after opencode: asked before anything could start another
    run.after = status()
    run.jobs = {}
    if run.after.running then
      -- the session ends when `bgproc mcp`'s connection closes: wait for it
      h.wait_until(function()
        local jobs = {}
        for _, j in ipairs(cjson.decode((d.run { "--json", "ls" })).processes) do jobs[j.name] = j end
        run.jobs = jobs
        return jobs["session-job"] == nil or jobs["session-job"].status ~= "running"
      end, 10000, 100)
      run.later = status()
    end
  end)

  lazy_teardown(function()
    if not d then return end
    if run.jobs and run.jobs.keep then d.run { "kill", run.jobs.keep.id } end
    d.stop() -- daemon stop (never starts one), rm -rf the dir
  end)

  local function check_run() return oc.check_run(run, skip) end

  it("has the model call bgproc's MCP tools (bgproc_*) and ends the script", function()
    if not check_run() then return pending(skip) end
    assert.is_false(run.before.running, "a daemon ran before opencode: " .. cjson.encode(run.before))
    local agent
    for _, r in ipairs(run.requests) do
      if r.agent then agent = r break end
    end
    assert.is_truthy(agent, "the model was never asked with tools")
    local offered = {}
    for _, name in ipairs(agent.tools) do offered[name] = true end
    assert.is_true(offered.bgproc_createBackgroundProcess, "tools offered: " .. table.concat(agent.tools, ", "))
    assert.is_true(offered.bgproc_listBackgroundProcesses)
    local creates, text = 0, nil
    for _, e in ipairs(run.events) do
      if e.type == "tool_use" and e.part.tool == "bgproc_createBackgroundProcess" then
        assert.equal("completed", e.part.state.status, cjson.encode(e.part.state))
        creates = creates + 1
      end
      if e.type == "text" then text = e.part.text end
    end
    assert.equal(2, creates)
    assert.equal("all done", text)
  end)

  it("`bgproc mcp` starts the daemon outside opencode's process tree", function()
    if not check_run() then return pending(skip) end
    local seen = run.seen
    assert.is_truthy(seen, "the jobs never ran while opencode did")
    local below = {}
    for pid, cmd in pairs(seen.below) do below[#below + 1] = pid .. " " .. cmd end
    assert.is_truthy(seen.mcp, "no `bgproc mcp` below opencode:\n" .. table.concat(below, "\n"))
    assert.is_nil(seen.below[seen.daemon], "the daemon is a descendant of opencode")
    for _, a in ipairs(seen.chain) do
      assert.is_true(a.pid ~= run.oc_pid and a.pid ~= seen.mcp and not seen.below[a.pid]
                     and not a.comm:find("opencode", 1, true),
        "the daemon's ancestry reaches opencode:\n  " .. chain_text(seen.chain))
    end
    -- re-parented (the shell that started it exited): to the nearest
    -- subreaper, build/suite-runner when the suite runs under it
    assert.is_true(#seen.chain >= 2)
    local runner = tonumber(os.getenv("BGPROC_SUITE_RUNNER") or "")
    if runner then assert.equal(runner, seen.chain[2].pid, chain_text(seen.chain)) end
  end)

  it("the daemon and the global job outlive opencode; the session job ends with it", function()
    if not check_run() then return pending(skip) end
    local seen = run.seen
    assert.is_truthy(seen, "the jobs never ran while opencode did")
    -- OpenCode ended its MCP server
    assert.is_true(h.wait_until(function() return not h.alive(seen.mcp) end, 5000), "`bgproc mcp` outlived opencode")
    -- the daemon lived through opencode's exit (before the spec's own
    -- kill of opencode's group and cgroup), and the same daemon answers
    assert.is_true(run.alive_at_exit, "the daemon died with opencode")
    assert.is_true(run.after.running, "the daemon died with opencode: " .. cjson.encode(run.after))
    assert.equal(seen.daemon, run.after.pid)
    assert.equal(seen.daemon, run.later.pid)
    assert.is_true(h.alive(seen.daemon))
    -- the global job runs on
    local keep, job = run.jobs.keep, run.jobs["session-job"]
    assert.is_truthy(keep, "no job keep: " .. cjson.encode(run.jobs))
    assert.equal("running", keep.status)
    assert.is_true(h.alive(keep.pid))
    assert.equal("sleep 300", cmdline(keep.pid))
    -- the session job was ended with the MCP client's session
    assert.is_truthy(job, "no job session-job: " .. cjson.encode(run.jobs))
    assert.equal("cancelled", job.status)
    assert.equal("session", job.stopReason)
    assert.equal("session ended (MCP client", job.endReason:sub(1, #"session ended (MCP client"), job.endReason)
    assert.is_true(h.wait_until(function() return not h.alive(job.pid) end, 5000), "the session job's process lives")
    assert.equal(keep.sessionId, job.sessionId)
  end)
end)
