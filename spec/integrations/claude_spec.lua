-- Claude Code end to end: a real `claude -p` (the npm package, installed
-- by tools/ensure-claude.sh) talks to a scripted stand-in for the Anthropic
-- API (spec/support/claude/mock-anthropic.mjs), runs `bgproc` in its Bash
-- tool, and runs `bgproc hook claude EVENT` from its hooks
-- (spec/support/claude/settings.json) against a private daemon.
--
-- It proves: a job started from the Bash tool outlives that tool call and
-- ends with the Claude Code session (SessionEnd, or the agent's death); a
-- job that ends meanwhile is told to the model through a hook's
-- additionalContext; a --global job outlives the session.
local h = require "helpers"
local cjson = require "cjson"
local core = require "bgproc.core"

local BIN = h.root .. "/bin/bgproc"
local SUPPORT = h.root .. "/spec/support/claude/"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local write = h.write_file

local function ints(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  if type(v) == "table" then for k, x in pairs(v) do v[k] = ints(x) end end
  return v
end

-- Every request the mock logged: { {n=, path=, kind=, step=, body=}, ... }
local function requests(log)
  local out = {}
  local f = io.open(log, "r")
  if not f then return out end
  for line in f:lines() do out[#out + 1] = cjson.decode(line) end
  f:close()
  return out
end

-- The texts of a request's messages that are neither a tool call nor a
-- tool result: the prompt, reminders and hook context.
local function context_texts(body)
  local out = {}
  local function add(s) if type(s) == "string" then out[#out + 1] = s end end
  if type(body) ~= "table" then return out end
  if type(body.system) == "string" then add(body.system) end
  for _, m in ipairs(type(body.messages) == "table" and body.messages or {}) do
    if type(m.content) == "string" then
      add(m.content)
    elseif type(m.content) == "table" then
      for _, b in ipairs(m.content) do
        if type(b) == "table" and b.type == "text" then add(b.text) end
      end
    end
  end
  return out
end

-- The text of every tool result the agent sent, in order.
local function tool_results(log)
  local out, seen = {}, {}
  for _, r in ipairs(requests(log)) do
    for _, m in ipairs(r.kind == "main" and r.body.messages or {}) do
      for _, b in ipairs(type(m.content) == "table" and m.content or {}) do
        if type(b) == "table" and b.type == "tool_result" and not seen[b.tool_use_id] then
          seen[b.tool_use_id] = true
          local c = b.content
          if type(c) == "table" then
            local parts = {}
            for _, p in ipairs(c) do parts[#parts + 1] = p.text or "" end
            c = table.concat(parts)
          end
          out[#out + 1] = tostring(c)
        end
      end
    end
  end
  return out
end

describe("Claude Code integration", function()
  local claude, why_not -- the claude executable, or why there is none
  local d               -- the private daemon
  local loop            -- runs the mock and claude
  local token = h.new_marker()

  setup(function()
    local ok, out = h.sh("sh " .. q(h.root .. "/tools/ensure-claude.sh") .. " 2>&1")
    if ok then
      claude = out:match("([^\n]+)\n?$")
    else
      why_not = "could not install @anthropic-ai/claude-code from npm: " .. out:sub(-400)
      return
    end
    d = h.private_daemon()
    local _, code = d.run { "daemon", "start" }
    assert(code == 0, "private daemon did not start")
    loop = core.new()
  end)

  teardown(function()
    if loop then loop:close() end
    if d then d.stop() end
    h.kill_marked(token)
  end)

  -- `bgproc ARGS --json` against the private daemon, decoded.
  local function bg_json(args)
    local a = {}
    for _, x in ipairs(args) do a[#a + 1] = x end
    a[#a + 1] = "--json"
    local out, code, so = d.run(a)
    assert(code == 0, "bgproc " .. table.concat(args, " ") .. " failed: " .. out)
    return ints(cjson.decode(so))
  end

  -- The one job named name: its record.
  local function job_named(name)
    local l = bg_json { "list", "--name", name }
    assert(l.count == 1, ("%d jobs named %s"):format(l.count or -1, name))
    return l.processes[1]
  end

  -- A fresh directory tree for one claude run, and the mock serving steps.
  -- Returns the run's context: dir, log, env, mock job.
  local function prepare(steps)
    local dir = h.tmpdir()
    for _, sub in ipairs { "home", "config", "tmp", "work" } do os.execute("mkdir -p " .. q(dir .. "/" .. sub)) end
    local settings = assert(h.read_file(SUPPORT .. "settings.json")):gsub("@BGPROC@", BIN)
    write(dir .. "/config/settings.json", settings)
    write(dir .. "/script.json", cjson.encode { steps = steps, final = "All done." })
    local log = dir .. "/requests.jsonl"
    local mock = assert(loop:spawn { argv = { "node", SUPPORT .. "mock-anthropic.mjs", dir .. "/script.json", log },
                                     env = { [h.MARK] = token } })
    local port
    assert(h.pump(loop, function()
      port = ((mock:read(0, nil, "stdout")) or ""):match("^(%d+)\n")
      return port or not mock:alive()
    end, 15000) and port, "the mock did not start: " .. tostring((mock:read(0))))
    -- Only what Claude Code needs: a private home and config, no network
    -- beyond the mock, and the private daemon's environment.
    local env = {
      PATH = "/usr/local/bin:/usr/bin:/bin", LANG = "C.UTF-8", TERM = "dumb",
      HOME = dir .. "/home", CLAUDE_CONFIG_DIR = dir .. "/config", TMPDIR = dir .. "/tmp",
      ANTHROPIC_BASE_URL = "http://127.0.0.1:" .. port, ANTHROPIC_API_KEY = "dummy",
      DISABLE_AUTOUPDATER = "1", DISABLE_TELEMETRY = "1", DISABLE_ERROR_REPORTING = "1",
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1",
      [h.MARK] = token,
    }
    for k, v in pairs(d.env) do env[k] = v end
    return { dir = dir, log = log, env = env, mock = mock }
  end

  local function finish(run)
    run.mock:kill("TERM")
    h.pump(loop, function() return not run.mock:alive() end, 5000)
    os.execute("rm -rf " .. q(run.dir))
  end

  -- Start `claude -p` for a prepared run.
  local function start_claude(run)
    return assert(loop:spawn {
      argv = { claude, "-p", "Run the scripted commands.", "--output-format", "json" },
      env = run.env, clear_env = true, cwd = run.dir .. "/work",
    })
  end

  local function outputs(job)
    return (job:read(0, nil, "stdout")) or "", (job:read(0, nil, "stderr")) or ""
  end

  describe("a claude -p session", function()
    local run, result, exit_code, stderr
    local during = {} -- what the spec saw while the agent was parked in step 4
    local failing_id

    setup(function()
      if not claude then return end
      local b = q(BIN)
      local steps = {
        { bash = b .. " start --name claude-session-job -- sleep 300; echo wrapper-pid=$$" },
        { bash = b .. " start --global --name claude-global-job -- sleep 300" },
        { bash = b .. " start --name claude-failing-job -- sh -c 'echo done-marker; exit 3'" },
        -- park the agent here until the spec has looked around
        { bash = "touch \"$CLAUDE_SPEC_DIR/parked\"; while [ ! -e \"$CLAUDE_SPEC_DIR/go\" ]; do sleep 0.05; done; echo resumed" },
        { bash = b .. " list" },
      }
      run = prepare(steps)
      run.env.CLAUDE_SPEC_DIR = run.dir
      local job = start_claude(run)
      local parked = h.pump(loop, function()
        return h.read_file(run.dir .. "/parked") ~= nil or not job:alive()
      end, 40000)
      if parked and job:alive() then
        -- The agent is inside its 4th tool call: the first ones returned.
        local sj = job_named("claude-session-job")
        during.session_status, during.session_pid = sj.status, sj.pid
        during.session_alive = h.alive(sj.pid)
        local wrapper = tonumber(table.concat(tool_results(run.log), "\n"):match("wrapper%-pid=(%d+)"))
        during.wrapper_gone = wrapper ~= nil and not h.alive(wrapper)
        -- the failing job ends on its own: make sure it has before the
        -- agent goes on, so the next hook has it to tell
        local fj = job_named("claude-failing-job")
        failing_id = fj.id
        during.failing_ended = h.wait_until(function()
          return job_named("claude-failing-job").status ~= "running"
        end, 10000)
        write(run.dir .. "/go", "")
      end
      h.pump(loop, function() return not job:alive() and job:info().eof end, 40000)
      if job:alive() then job:kill("KILL") end
      local so
      so, stderr = outputs(job)
      exit_code = job:exit()
      local ok, r = pcall(cjson.decode, so:match("([^\n]+)\n?$") or "")
      result = ok and r or { raw = so }
    end)

    teardown(function()
      if not run then return end
      -- the --global job is ours to end
      local ok, g = pcall(job_named, "claude-global-job")
      if ok and g.status == "running" then d.run { "kill", g.id } end
      finish(run)
    end)

    local function need_claude()
      if not claude then pending(why_not) return false end
      return true
    end

    it("runs to the end against the mock", function()
      if not need_claude() then return end
      assert.equal(0, exit_code, "claude failed: " .. stderr .. cjson.encode(result))
      assert.is_false(result.is_error, cjson.encode(result))
      assert.equal("All done.", result.result)
    end)

    it("keeps a job started in the Bash tool running after that tool call returns", function()
      if not need_claude() then return end
      assert.equal("running", during.session_status)
      assert.is_true(during.session_alive)
      assert.is_true(during.wrapper_gone, "the first tool call's shell is still there")
      -- and the agent saw it running in a later call
      local results = tool_results(run.log)
      local listing = results[5] or ""
      assert.truthy(listing:find("claude%-session%-job[^\n]*running"), "bgproc list in the Bash tool:\n" .. listing)
    end)

    it("ends that job when the Claude Code session ends", function()
      if not need_claude() then return end
      local ended = h.wait_until(function()
        local r = job_named("claude-session-job")
        return r.status ~= "running" and not h.alive(during.session_pid) and r
      end, 15000)
      assert.truthy(ended, "the session's job outlived claude -p")
      assert.equal("cancelled", ended.status)
    end)

    it("tells the model, through a hook, of a job that ended meanwhile", function()
      if not need_claude() then return end
      assert.truthy(during.failing_ended, "the failing job did not end")
      local found
      for _, r in ipairs(requests(run.log)) do
        if r.kind == "main" then
          for _, text in ipairs(context_texts(r.body)) do
            if text:find(failing_id, 1, true) and (text:find("end") or text:find("exit")) then
              found = text
            end
          end
        end
      end
      assert.truthy(found, "no request told the model that " .. tostring(failing_id) .. " ended")
      -- it came from a hook, not from the prompt
      assert.truthy(found:find("hook additional context", 1, true) or found:find("bgproc", 1, true), found)
    end)

    it("leaves a --global job running", function()
      if not need_claude() then return end
      local g = job_named("claude-global-job")
      assert.equal("running", g.status)
      assert.is_true(h.alive(g.pid))
    end)
  end)

  describe("a claude -p that is killed", function()
    it("still ends the jobs of its session (no SessionEnd hook runs)", function()
      if not claude then pending(why_not) return end
      local steps = {
        { bash = q(BIN) .. " start --name claude-orphan-job -- sleep 300" },
        { bash = "touch \"$CLAUDE_SPEC_DIR/parked\"; while [ ! -e \"$CLAUDE_SPEC_DIR/go\" ]; do sleep 0.05; done" },
      }
      local run = prepare(steps)
      run.env.CLAUDE_SPEC_DIR = run.dir
      local job = start_claude(run)
      local parked = h.pump(loop, function()
        return h.read_file(run.dir .. "/parked") ~= nil or not job:alive()
      end, 40000)
      local j = job_named("claude-orphan-job")
      assert.is_true(parked and job:alive(), "claude did not reach its 2nd tool call: " .. table.concat({ outputs(job) }, "\n"))
      assert.equal("running", j.status)
      job:kill("KILL")
      h.pump(loop, function() return not job:alive() end, 5000)
      write(run.dir .. "/go", "") -- lets the parked tool shell, now orphaned, end
      local ended = h.wait_until(function()
        local r = job_named("claude-orphan-job")
        return r.status ~= "running" and not h.alive(j.pid) and r
      end, 15000)
      finish(run)
      assert.truthy(ended, "the job outlived its killed claude")
      assert.equal("cancelled", ended.status)
    end)
  end)
end)
