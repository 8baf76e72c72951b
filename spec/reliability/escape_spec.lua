-- Jobs whose children leave the job's session on purpose (setsid, a
-- daemon's double fork). The kill result names them (`escaped`); where the
-- machine gives a writable cgroup v2 subtree they die with the job (kill,
-- and the guardian when the owner is SIGKILLed), else they are left
-- running and reported so. Every process a test starts carries a random
-- marker in its environment (helpers.marked): only marked processes are
-- counted, and the test kills the ones it leaves itself.
local core = require "bgproc.core"
local h = require "helpers"

local MARK = h.MARK
local marked, kill_marked = h.marked, h.kill_marked

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- The engine's cgroups: the machine's, unless BGPROC_CGROUP=0 turns them off.
local probe = core.new { cgroup = os.getenv("BGPROC_CGROUP") ~= "0" }
local HAS_CGROUP = probe:cgroup() ~= nil
local NO_CGROUP_WHY = select(2, probe:cgroup())
probe:close()

-- Inside an `it`: pending (with the reason) where there is no cgroup.
local function need_cgroup()
  if not HAS_CGROUP then pending("no writable cgroup v2 here: " .. tostring(NO_CGROUP_WHY)) end
  return HAS_CGROUP
end

-- A job whose shell puts one child in a session of its own.
local SETSID = "setsid sleep 1000 & exec sleep 1000"
-- A daemon's double fork: the middle process exits at once, so the
-- escapee's parent chain is broken before any kill.
local DOUBLE_FORK = "setsid sh -c 'sleep 1000 & exit 0'; exec sleep 1000"
-- setsid, then a fork inside the new session: two escapees, linked.
local SETSID_FORK = "setsid sh -c 'sleep 1000 & wait' & exec sleep 1000"

describe("escaped processes", function()
  local token, m
  before_each(function() token = h.new_marker() end)
  after_each(function()
    h.cleanup()
    kill_marked(token)
  end)

  local function start(command)
    local r = h.ok(m, "createBackgroundProcess", { command = command, env = { [MARK] = token } },
      { sessionId = "s1" })
    return r
  end

    local function sleepers()
    local n = 0
    for _, pid in ipairs(marked(token)) do
      local f = io.open("/proc/" .. pid .. "/comm")
      if f then
        if f:read("l") == "sleep" then n = n + 1 end
        f:close()
      end
    end
    return n
  end

  -- Wait until every `sleep 1000` of the job is running (want of them):
  -- the shells have set up their sessions by then.
  local function settle(want)
    assert(h.wait_until(function() return sleepers() >= want end, 5000),
      ("expected %d sleeps, found %d"):format(want, sleepers()))
  end

  local function kill(id)
    local t0 = h.now_ms()
    local k = h.ok(m, "killProcesses", { processId = id, graceMs = 300 })
    return k, h.now_ms() - t0
  end

  local function escaped_pids(k, id)
    local pids = {}
    for _, e in ipairs(k.escaped) do
      assert.equal(id, e.processId)
      assert.is_string(e.command)
      pids[#pids + 1] = e.pid
    end
    table.sort(pids)
    return pids
  end

  describe("with a cgroup", function()
    before_each(function() m = h.manager() end)

    it("reports a setsid child as escaped and kills it with the job", function()
      if not need_cgroup() then return end
      local r = start(SETSID)
      settle(2)
      local escapee
      for _, pid in ipairs(marked(token)) do
        if pid ~= r.pid then escapee = pid end
      end
      assert.are_not.equal(r.pid, h.stat(escapee).sid) -- it did leave the session
      local k = kill(r.id)
      assert.same({ r.id }, k.killed)
      assert.same({}, k.errors)
      assert.same({ escapee }, escaped_pids(k, r.id))
      assert.equal("sleep 1000", k.escaped[1].command)
      assert.is_true(k.escaped[1].killed)
      assert.same({}, marked(token)) -- confirmed before the kill returned
      assert.equal("cancelled", h.ok(m, "getBackgroundProcess", { processId = r.id }).status)
    end)

    it("gives escapees the stop signal first, and KILL after the grace", function()
      if not need_cgroup() then return end
      local dir = h.tmpdir()
      finally(function() os.execute("rm -rf " .. dir) end)
      -- one escapee cleans up on TERM; one ignores it
      local r = start(("setsid sh -c 'trap \"echo bye > %s/bye; exit 0\" TERM; sleep 1000 & wait' & "
        .. "setsid sh -c 'trap \"\" TERM; exec sleep 1000' & exec sleep 1000"):format(dir))
      settle(3)
      local k, took = kill(r.id)
      assert.same({ r.id }, k.killed)
      assert.equal(3, #k.escaped) -- two shells (one became its sleep) and a sleep
      for _, e in ipairs(k.escaped) do assert.is_true(e.killed) end
      local f = assert(io.open(dir .. "/bye"))
      assert.equal("bye\n", f:read("a"))
      f:close()
      assert.is_true(took >= 300, "the TERM-proof escapee was waited for: " .. took .. " ms")
      assert.same({}, marked(token))
    end)

    it("kills the escapee of a double fork, whose parent is long gone", function()
      if not need_cgroup() then return end
      local r = start(DOUBLE_FORK)
      settle(2)
      local k = kill(r.id)
      assert.same({ r.id }, k.killed)
      assert.equal(1, #k.escaped)
      assert.is_true(k.escaped[1].killed)
      assert.same({}, marked(token))
    end)

    it("stops an exited job whose escapee still runs: it is not finished yet", function()
      if not need_cgroup() then return end
      local r = start("setsid sleep 1000 > /dev/null 2>&1 & exit 0") -- a daemonizing script
      settle(1)
      local got = h.ok(m, "waitForBackgroundProcess", { processId = r.id, timeoutMs = 10000 })
      assert.equal("completed", got.status)
      local k = kill(r.id)
      assert.same({ r.id }, k.killed) -- not alreadyFinished: part of it ran
      assert.same({}, k.alreadyFinished)
      assert.equal(1, #k.escaped)
      assert.is_true(k.escaped[1].killed)
      assert.same({}, marked(token))
      assert.equal("completed", h.ok(m, "getBackgroundProcess", { processId = r.id }).status)
      k = kill(r.id)
      assert.same({ r.id }, k.alreadyFinished) -- now it is
    end)

    it("says so in the text result and the CLI's summary", function()
      if not need_cgroup() then return end
      local r = start(SETSID)
      settle(2)
      local k = kill(r.id)
      local text = require("bgproc.tools").summary("killProcesses", k)
      assert.matches("pid " .. k.escaped[1].pid .. " %(sleep 1000%) had left its process group: killed", text)
    end)

    it("leaves no cgroup directory behind after shutdown", function()
      if not need_cgroup() then return end
      local r = start(SETSID)
      settle(2)
      local dir = m.core:cgroup()
      assert.is_true(exists(dir .. "/cgroup.procs"))
      h.cleanup() -- shutdown: the stop protocol, then the core closes
      assert.same({}, marked(token))
      assert.is_false(exists(dir .. "/cgroup.procs"))
      assert.is_truthy(r.id)
    end)
  end)

  describe("without a cgroup (cgroup = false)", function()
    before_each(function() m = h.manager { cgroup = false } end)

    it("reports a setsid child with its pid and leaves it running", function()
      local r = start(SETSID)
      settle(2)
      local k = kill(r.id)
      assert.same({ r.id }, k.killed)
      assert.equal(1, #k.escaped)
      local e = k.escaped[1]
      assert.equal("sleep 1000", e.command)
      assert.is_false(e.killed)
      assert.same({ e.pid }, marked(token)) -- left running, as reported
      assert.are_not.equal(r.pid, h.stat(e.pid).sid)
      local text = require("bgproc.tools").summary("killProcesses", k)
      assert.matches("left running %(no cgroup%)", text)
    end)

    it("counts an exited job as finished, whatever it left running", function()
      local r = start("setsid sleep 1000 > /dev/null 2>&1 & exit 0")
      settle(1)
      h.ok(m, "waitForBackgroundProcess", { processId = r.id, timeoutMs = 10000 })
      local k = kill(r.id)
      assert.same({ r.id }, k.alreadyFinished)
      assert.same({}, k.escaped) -- its parent chain is gone: not found
      assert.equal(1, #marked(token)) -- left to the after_each
    end)

    it("finds escapees through their parents, a setsid shell and its child", function()
      local r = start(SETSID_FORK)
      settle(2)
      assert(h.wait_until(function() return #marked(token) == 3 end, 5000))
      local k = kill(r.id)
      local pids = escaped_pids(k, r.id)
      assert.equal(2, #pids)
      local alive = marked(token)
      table.sort(alive)
      assert.same(pids, alive)
    end)

    it("is what BGPROC_CGROUP=0 in the environment selects", function()
      local loop = core.new()
      local function engine_cgroup(value)
        local job = assert(loop:spawn {
          argv = { h.lua, "-e", [[
            local m = require("bgproc").new { config = {}, plugins = {}, luv = false }
            print(select(2, m.core:cgroup()) or "cgroup")
            m:shutdown()]] },
          env = h.lua_env { BGPROC_CGROUP = value },
        })
        local out = h.finish(loop, job, 10000)
        return (out:gsub("%s+$", ""))
      end
      assert.equal("disabled (cgroup = false)", engine_cgroup("0"))
      if HAS_CGROUP then assert.equal("cgroup", engine_cgroup(false)) end
      loop:close()
      assert.matches("'cgroup' must be a boolean", select(2, pcall(h.manager, { cgroup = "no" })))
    end)
  end)

  describe("through the CLI and the daemon", function()
    local d
    after_each(function() if d then d.stop() end d = nil end)

    local function cli_kill(config)
      d = h.private_daemon(config)
      local json = require "bgproc.lib.json"
      local out, code = d.run { "--json", "start", "--global", "--env", MARK .. "=" .. token, SETSID }
      assert.equal(0, code, out)
      local id = json.decode(out).id
      settle(2)
      local text, kcode = d.run { "kill", id, "--grace", "300" }
      assert.equal(0, kcode, text)
      local status = d.run { "daemon", "status" }
      return id:gsub("%-", "%%-"), text, status -- the id as a pattern
    end

    it("prints what escaped and that it was killed", function()
      if not need_cgroup() then return end
      local id, text, status = cli_kill()
      assert.matches("\ncgroup: /%S+/bgproc%-%d+%-%d+ %(processes that leave a job's group die with it%)\n", status)
      assert.matches("killed " .. id, text)
      assert.matches("escaped " .. id .. ": pid %d+ %(sleep 1000%) killed", text)
      assert.same({}, marked(token))
    end)

    it("prints the pid left running when cgroups are off", function()
      local id, text, status = cli_kill("return { plugins = {}, cgroup = false }\n")
      assert.matches("\ncgroup: none, disabled %(cgroup = false%)", status)
      local pid = tonumber(text:match("escaped " .. id .. ": pid (%d+) %(sleep 1000%) left running"))
      assert.truthy(pid, text)
      assert.same({ pid }, marked(token))
    end)
  end)

  describe("when the owner is SIGKILLed", function()
    local loop
    before_each(function() loop = core.new() end)
    after_each(function() loop:close() end)

    local function start_host(mode)
      local host = assert(loop:spawn {
        argv = { h.lua, h.fixture("escaper.lua"), mode, token },
        env = h.lua_env(),
      })
      local line
      assert.is_true(h.pump(loop, function()
        line = (host:read(0, nil, "stdout")):match("^([^\n]*)\n")
        return line or not host:alive()
      end, 10000), "host did not report")
      assert.truthy(line, "host failed: " .. host:read(0))
      return host, tonumber(line:match("escaped (%d+)")), line:match("cgroup (%S+)")
    end

    it("its guardian kills the escapee through the cgroup and removes it", function()
      if not need_cgroup() then return end
      local host, escapee, dir = start_host("cgroup")
      assert.is_number(escapee)
      assert.is_true(h.alive(escapee))
      assert.is_true(exists(dir .. "/cgroup.procs"))
      host:kill("KILL")
      -- what is proved is that it dies; how fast is the fault matrix's
      -- and the benches' (both cores busy, 2 s was not always enough)
      assert.is_true(h.wait_until(function() return #marked(token) == 0 end, 10000, 10),
        "escapee survived its owner")
      assert.is_true(h.wait_until(function() return not exists(dir .. "/cgroup.procs") end, 10000))
      h.finish(loop, host)
    end)

    it("without a cgroup the guardian ends the group; the escapee is left", function()
      local host, escapee = start_host("off")
      assert.is_number(escapee)
      host:kill("KILL")
      assert.is_true(h.wait_until(function() return #marked(token) == 1 end, 10000, 10))
      assert.same({ escapee }, marked(token))
      h.finish(loop, host)
    end)
  end)
end)
