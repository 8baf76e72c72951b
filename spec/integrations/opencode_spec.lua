-- The OpenCode plugin (integrations/opencode) in a real `opencode run`
-- (opencode-ai from npm, through tools/ensure-opencode.sh), driven by a
-- scripted OpenAI-compatible server (spec/support/opencode/mock-openai.mjs)
-- instead of a model: no LLM, no mock of OpenCode. One run does the whole
-- script; the tests then read what OpenCode printed (--format json), what
-- the mock was sent, the plugin's trace and the daemon's records.
local h = require "helpers"
local core = require "bgproc.core"
local cjson = require "cjson"
local oc = require "support.opencode.harness"

local ROOT = h.root

-- An ISO 8601 UTC time ("2026-01-02T03:04:05.678Z") in ms since the epoch.
local function iso_ms(s)
  local y, mo, d, hh, mi, ss, ms = s:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.?(%d*)Z$")
  assert(y, "not an ISO time: " .. tostring(s))
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  -- days from 1970-01-01 (H. Hinnant's days_from_civil)
  y = mo <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (mo + (mo > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  local frac = ms ~= "" and tonumber((ms .. "00"):sub(1, 3)) or 0
  return ((days * 24 + tonumber(hh)) * 60 + tonumber(mi)) * 60000 + tonumber(ss) * 1000 + frac
end

local json_lines = oc.json_lines

describe("OpenCode plugin (integrations/opencode) in opencode run", function()
  local skip, d, dir, cache
  local run = {} -- what the one opencode run left: out, err, code, events, requests, trace, jobs

  lazy_setup(function()
    cache, skip = oc.install()
    if not cache then return end
    d = h.private_daemon()
    dir = d.dir
    -- the daemon first, with the spec's env (the plugin finds it running)
    local _, code = d.run { "daemon", "start" }
    assert.equal(0, code)

    local plugins = dir .. "/plugins"
    local p = oc.project(dir, cache, {
      ("mkdir -p %s/opencode-bgproc"):format(plugins),
      -- the plugin as an installed package would be: its files, and
      -- @opencode-ai/plugin (zod) in a node_modules above them
      ("cp -r %s/integrations/opencode/. %s/opencode-bgproc/"):format(ROOT, plugins),
      ("ln -s %s/node_modules %s/node_modules"):format(cache, plugins),
    })

    run.trace_path = dir .. "/trace.jsonl"
    run.notice_contains = "e2e-notice"
    local script = {
      { tool = { name = "createBackgroundProcess", arguments = { command = "sleep 300", name = "e2e-session" } } },
      { tool = { name = "createBackgroundProcess", arguments = { command = "sleep 300", name = "e2e-global", global = true } } },
      { tool = { name = "createBackgroundProcess", arguments = { command = "echo hi; exit 3", name = "e2e-notice" } } },
      { tool = { name = "createBackgroundProcess", arguments = { command = "true", timeoutMs = "soon" } } },
      { tool = { name = "createBackgroundProcess", arguments = { name = "no-command" } } },
      { tool = { name = "bash", arguments = {
        command = "ps -o pid=,ppid=,pgid=,sid= -p $$; env | grep -E '^(OPENCODE|AGENT|BGPROC_SESSION)' | sort",
        description = "probe the shell" } } },
      -- the next answer waits (at most 5 s) for the notice of e2e-notice's
      -- end to be posted, so the request after it shows it to the model
      { awaitFile = run.trace_path, contains = '"kind":"notice"', timeoutMs = 5000,
        tool = { name = "listBackgroundProcesses", arguments = {} } },
      { text = "all done" },
    }
    local loop = core.new()
    local env = h.env_with(d.env)
    local mock, port = oc.mock(loop, env, dir, script)
    oc.config(p, port, {
      plugin = { "file://" .. plugins .. "/opencode-bgproc/index.js" },
      permission = { bash = "allow", edit = "deny", webfetch = "deny" },
    })
    env.BGPROC_BIN = ROOT .. "/bin/bgproc"
    env.BGPROC_OPENCODE_TRACE = run.trace_path
    local job = oc.run(loop, cache, p, env, "start the jobs")
    local finished = h.pump(loop, function()
      local info = job:info()
      return info.state ~= "running" and info.eof
    end, 60000)
    run.finished_at = h.now_ms()
    run.out = (job:read(0, nil, "stdout"))
    run.err = (job:read(0, nil, "stderr"))
    run.code = finished and job:exit() or "timed out"
    oc.stop_mock(loop, mock)
    loop:close()

    run.events = json_lines(run.out)
    run.requests = json_lines(h.read_file(dir .. "/mock.jsonl"))
    run.trace = json_lines(h.read_file(run.trace_path))
    for _, e in ipairs(run.events) do
      if type(e.sessionID) == "string" then run.session = e.sessionID break end
    end
    run.tools = {}
    for _, e in ipairs(run.events) do
      if e.type == "tool_use" then run.tools[#run.tools + 1] = e.part end
    end
    run.jobs = {}
    local out = d.run { "--json", "list" }
    for _, j in ipairs(cjson.decode(out).processes) do run.jobs[j.name] = j end
  end)

  lazy_teardown(function()
    if not d then return end
    if run.jobs and run.jobs["e2e-global"] then d.run { "kill", run.jobs["e2e-global"].id } end
    d.stop()
  end)

  local function check_run() return oc.check_run(run, skip) end

  local function tool_uses(name)
    local out = {}
    for _, p in ipairs(run.tools) do
      if p.tool == name then out[#out + 1] = p end
    end
    return out
  end

  it("runs the script to its end with the plugin's tools, their schemas from the daemon", function()
    if not check_run() then return pending(skip) end
    local load = run.trace[1]
    assert.equal("load", load.kind)
    assert.equal("zod", load.mode)
    assert.is_truthy(run.session and run.session:match("^ses_"), "no session id in: " .. run.out:sub(1, 500))
    local last = run.events[#run.events]
    local text
    for _, e in ipairs(run.events) do
      if e.type == "text" then text = e.part.text end
    end
    assert.equal("all done", text, "last event: " .. cjson.encode(last))
    -- the model saw the nine tools, with the daemon's descriptions
    local agent
    for _, r in ipairs(run.requests) do
      if r.agent then agent = r break end
    end
    for _, name in ipairs { "createBackgroundProcess", "listBackgroundProcesses", "getBackgroundProcess",
                            "killProcesses", "waitForBackgroundProcess", "sendBackgroundProcessInput",
                    "restartBackgroundProcess", "removeBackgroundProcesses", "searchBackgroundOutput" } do
      assert.is_truthy(agent.toolSchemas[name], name .. " not offered to the model")
    end
    local create = agent.toolSchemas.createBackgroundProcess
    assert.equal("Shell command, run with /bin/sh -c.", create.properties.command.description)
    assert.equal("integer", create.properties.timeoutMs.type)
  end)

  it("starts a job of the chat's session (its ses_ id) in the project directory", function()
    if not check_run() then return pending(skip) end
    local created = tool_uses("createBackgroundProcess")[1]
    assert.equal("completed", created.state.status, cjson.encode(created.state))
    local job = run.jobs["e2e-session"]
    assert.is_truthy(job, "no job e2e-session")
    assert.equal(run.session, job.sessionId)
    assert.equal(dir .. "/proj", job.cwd)
    assert.is_truthy(created.state.output:find(job.id, 1, true), "the model was not told the id: " .. created.state.output)
  end)

  it("ends the chat's session jobs when opencode exits; global ones keep running", function()
    if not check_run() then return pending(skip) end
    local job, global = run.jobs["e2e-session"], run.jobs["e2e-global"]
    assert.equal("cancelled", job.status)
    assert.equal("session", job.stopReason)
    assert.is_truthy(job.endReason:find("OpenCode exited", 1, true), job.endReason)
    assert.is_true(h.wait_until(function() return not h.alive(job.pid) end, 5000), "the session job's process lives")
    assert.equal("running", global.status)
    assert.equal(run.session, global.sessionId)
    assert.is_true(h.alive(global.pid))
  end)

  it("posts a job's end to the chat within a second, and the model sees it", function()
    if not check_run() then return pending(skip) end
    local job = run.jobs["e2e-notice"]
    assert.equal("failed", job.status)
    local notice
    for _, t in ipairs(run.trace) do
      if t.kind == "notice" and t.text:find(job.id, 1, true) then notice = t break end
    end
    assert.is_truthy(notice, "no notice of " .. job.id .. " in the trace: " .. cjson.encode(run.trace))
    assert.equal(run.session, notice.sessionId)
    assert.is_true(notice.ok, tostring(notice.error))
    assert.is_truthy(notice.text:find(run.notice_contains, 1, true))
    local late = notice.at - iso_ms(job.endedAt)
    assert.is_true(late <= 1000, ("notice posted %d ms after the job's end"):format(late))
    -- a later request of the agent carries it as a user message
    local seen
    for _, r in ipairs(run.requests) do
      for _, m in ipairs(r.messages or {}) do
        local parts = type(m.content) == "table" and m.content or { { text = m.content } }
        for _, p in ipairs(parts) do
          if m.role == "user" and type(p.text) == "string" and p.text:find(notice.text, 1, true) then seen = true end
        end
      end
    end
    assert.is_true(seen, "no request to the model carried the notice")
  end)

  it("turns a bad argument into a tool error naming the field, and goes on", function()
    if not check_run() then return pending(skip) end
    local creates = tool_uses("createBackgroundProcess")
    local soon, nocmd = creates[4], creates[5]
    assert.equal("error", soon.state.status)
    assert.is_truthy(soon.state.error:find("timeoutMs", 1, true), soon.state.error)
    assert.equal("error", nocmd.state.status)
    assert.is_truthy(nocmd.state.error:find("command", 1, true), nocmd.state.error)
    assert.is_nil(run.jobs["no-command"])
    -- and later calls still worked
    local list = tool_uses("listBackgroundProcesses")[1]
    assert.equal("completed", list.state.status)
    assert.is_truthy(list.state.output:find("e2e-global", 1, true), list.state.output)
  end)

  it("gives the bash tool BGPROC_SESSION (shell.env) in a shell of its own", function()
    if not check_run() then return pending(skip) end
    local bash = tool_uses("bash")[1]
    assert.equal("completed", bash.state.status, cjson.encode(bash.state))
    local out = bash.state.output
    assert.is_truthy(out:find("BGPROC_SESSION=" .. run.session, 1, true), out)
    assert.is_truthy(out:find("OPENCODE=1", 1, true), out)
    -- pid ppid pgid sid: the shell leads a session of its own (setsid)
    local pid, _, pgid, sid = out:match("^%s*(%d+)%s+(%d+)%s+(%d+)%s+(%d+)")
    assert.is_truthy(pid, out)
    assert.equal(pid, pgid)
    assert.equal(pid, sid)
  end)
end)

-- The plugin outside OpenCode (spec/support/opencode/resilience.mjs fakes
-- OpenCode's client): no bgproc, a daemon restart, a refusing socket, a
-- connection lost after the daemon got a request.
describe("OpenCode plugin without OpenCode", function()
  local d
  before_each(function() d = h.private_daemon() end)
  after_each(function() d.stop() end)

  local function case(name, extra)
    local env = h.env_with(h.env_with(d.env, { BGPROC_BIN = ROOT .. "/bin/bgproc" }), extra)
    return h.node_json({ ROOT .. "/spec/support/opencode/resilience.mjs", ROOT .. "/integrations/opencode/index.js",
                         name }, env, 30000)
  end

  it("loads without bgproc and fails each call with a clear error, at once", function()
    local r = case("missing", { BGPROC_BIN = d.dir .. "/no-such-bgproc" })
    assert.equal(#require("bgproc.tools").list, #r.tools)
    assert.is_false(r.call.ok)
    assert.is_true(r.call.isError)
    assert.is_truthy(r.call.error:find("no-such-bgproc", 1, true), r.call.error)
    assert.is_true(r.call.ms < 5000)
    assert.is_nil(r.unhandled)
  end)

  it("reconnects after a daemon restart, opens its sessions again and keeps the notices", function()
    local r = case("restart")
    assert.is_true(r.create.ok, r.create.error)
    assert.is_true(r.after.ok, r.after.error)
    assert.is_truthy(r.list.value:find("after", 1, true), r.list.value)
    assert.equal(1, #r.notices, cjson.encode(r.notices))
    assert.equal("ses_root", r.notices[1].id) -- a subagent's chat maps to its root chat
    assert.is_nil(r.unhandled)
    local jobs = cjson.decode((d.run { "--json", "list" })).processes
    -- the job from before the restart is history: ended by the daemon's stop
    assert.equal(3, #jobs)
    assert.equal("before", jobs[1].name)
    assert.equal("cancelled", jobs[1].status)
    -- (the stop closes the plugin's connection, which may end its session first)
    assert.truthy(({ shutdown = true, session = true })[jobs[1].stopReason], jobs[1].stopReason)
    for _, j in ipairs(jobs) do
      assert.equal("ses_root", j.sessionId)
      assert.is_false(h.alive(j.pid))
    end
  end)

  it("does not send a call the daemon may have done again after a lost connection; reads are", function()
    local r = case("unsure")
    assert.is_nil(r.unhandled)
    -- create and kill: their answers lost, a clear error each, not a retry
    for _, k in ipairs { "create", "kill" } do
      local c = r[k]
      assert.is_false(c.ok, k .. " succeeded: " .. tostring(c.value))
      assert.is_true(c.isError)
      assert.is_truthy(c.error:find("outcome is unknown", 1, true), c.error)
      assert.is_truthy(c.error:find("listBackgroundProcesses", 1, true), c.error)
    end
    assert.is_truthy(r.create.error:find("createBackgroundProcess", 1, true), r.create.error)
    assert.is_truthy(r.kill.error:find("killProcesses", 1, true), r.kill.error)
    -- a list, its answer lost, is sent again on a new connection
    assert.is_true(r.list.ok, r.list.error)
    local n = 0
    for _ in r.list.value:gmatch("unsure") do n = n + 1 end
    assert.equal(1, n, r.list.value)
    -- a failed session re-open fails that call; the next call connects
    -- anew and re-opens the session before it is sent
    assert.is_false(r.get.ok)
    assert.is_truthy(r.get.error:find("session/open", 1, true), r.get.error)
    assert.is_true(r.again.ok, r.again.error)
    local sent = {} -- tools/call createBackgroundProcess and killProcesses the proxy saw
    for _, conn in ipairs(r.conns) do
      for i, m in ipairs(conn) do
        if m.method == "tools/call" and m.tool ~= "listBackgroundProcesses" and m.tool ~= "getBackgroundProcess" then
          sent[#sent + 1] = m.tool
          -- every call goes on a connection where the session was opened
          local opened = false
          for k = 1, i - 1 do
            if conn[k].method == "session/open" then opened = conn[k].fate == "forward" end
          end
          assert.is_true(opened, cjson.encode(conn))
        end
      end
    end
    assert.same({ "createBackgroundProcess", "killProcesses", "createBackgroundProcess" }, sent)
    local jobs = cjson.decode((d.run { "--json", "list" })).processes
    local names = {}
    for _, j in ipairs(jobs) do
      names[#names + 1] = j.name
      assert.equal("ses_a", j.sessionId)
      assert.is_false(h.alive(j.pid))
    end
    table.sort(names)
    assert.same({ "again", "unsure" }, names)
  end)

  it("turns a refusal (-32001) into an error naming it", function()
    local r = case("refused", { BGPROC_SOCKET = d.dir .. "/other-user.sock" })
    assert.is_false(r.call.ok)
    assert.is_truthy(r.call.error:find("refused", 1, true), r.call.error)
    assert.is_truthy(r.call.error:find("permission denied", 1, true), r.call.error)
    assert.is_nil(r.unhandled)
  end)
end)
