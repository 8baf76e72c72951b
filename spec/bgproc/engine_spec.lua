-- The engine's lifecycle: states, timeouts, sessions, shutdown, limits,
-- retention, the async API and the luv integration.
local h = require "helpers"
local uv = require "luv"

describe("manager", function()
  after_each(function() h.cleanup() end)

  local function start(m, args, sid)
    return h.ok(m, "createBackgroundProcess", args, { sessionId = sid or "s1" })
  end
  local function wait(m, id) return h.ok(m, "waitForBackgroundProcess", { processId = id, timeoutMs = 10000 }) end

  describe("states", function()
    it("goes running -> completed on exit 0, failed otherwise, with the reason", function()
      local m = h.manager()
      assert.equal("completed", wait(m, start(m, { argv = { "true" } }).id).status)
      local f = wait(m, start(m, { command = "exit 7" }).id)
      assert.equal("failed", f.status)
      assert.equal("exited with code 7", f.error)
      local s = wait(m, start(m, { command = "kill -USR1 $$" }).id)
      assert.equal("failed", s.status)
      assert.equal("USR1", s.signal)
      assert.equal("killed by signal USR1", s.error)
      assert.is_number(s.durationMs)
      assert.truthy(s.endedAt)
    end)

    it("fails a job at its timeout and ends its whole group", function()
      local m = h.manager()
      local r = start(m, { command = "sleep 1000 & sleep 1000 & wait", timeoutMs = 200 })
      -- nobody drives the manager here: the timeout cannot strike before the group is whole
      assert.is_true(h.wait_until(function() return #h.group(r.pid) == 3 end, 5000), "the group never had 3 members")
      local pids = h.group(r.pid)
      local w = wait(m, r.id)
      assert.equal("failed", w.status)
      assert.equal("timed out after 200 ms", w.error)
      for _, pid in ipairs(pids) do assert.is_false(h.alive(pid)) end
    end)

    it("says why it stopped a job (stopReason): timeout, kill; none for a job that exited", function()
      local m = h.manager()
      local slow = start(m, { command = "sleep 1000", timeoutMs = 100 })
      local killed = start(m, { command = "sleep 1000" })
      local done = start(m, { command = "exit 3" })
      assert.is_nil(killed.stopReason)
      h.ok(m, "killProcesses", { processId = killed.id })
      assert.equal("timeout", wait(m, slow.id).stopReason)
      assert.equal("kill", m:record(killed.id).stopReason)
      assert.is_nil(wait(m, done.id).stopReason)
    end)

    it("finds the last line above trailing blank lines, and a ready line without a newline", function()
      local m = h.manager()
      local r = start(m, { command = "printf 'Tests: 42 passed\n\n\n\n\n'" })
      wait(m, r.id)
      assert.equal("Tests: 42 passed", m:record(r.id).lastLine)
      local p = start(m, { command = "printf 'Ready> '", readyPattern = "Ready>" })
      wait(m, p.id)
      assert.is_true(m:record(p.id).ready)
    end)

    it("keeps exit information and the record after the process is gone", function()
      local m = h.manager()
      local r = start(m, { command = "echo out; exit 2" })
      wait(m, r.id)
      -- its output closed and its group gone
      assert.is_true(m:run_until(function()
        return m:get(r.id).job:info().eof and #h.group(r.pid) == 0
      end, 5000), "the job's output never closed")
      local rec = m:record(r.id)
      assert.equal(2, rec.exitCode)
      assert.equal("out", rec.lastLine)
      assert.equal(4, rec.outputBytes)
    end)
  end)

  describe("the stop protocol", function()
    it("finishes even when the request that started it is cancelled", function()
      local m = h.manager()
      local r = start(m, { command = "trap '' TERM; sleep 1000 & wait" })
      -- the sleep is forked after the trap is set: two members, TERM is ignored
      assert.is_true(h.wait_until(function() return #h.group(r.pid) == 2 end, 5000), "the sleep never started")
      local got
      local task = m:call_async("killProcesses", { processId = r.id, graceMs = 300 }, {}, function(res) got = res end)
      assert.is_true(m:run_until(function() return m:record(r.id).stopping end, 2000), "the stop never began")
      assert.is_nil(got) -- still in its grace period (TERM is ignored)
      task:cancel()
      assert.is_true(m:run_until(function() return got ~= nil end, 2000))
      assert.matches("the request was cancelled", got.errors[1].message)
      -- the stop goes on without its caller
      assert.is_true(m:run_until(function() return m:record(r.id).status == "cancelled" end, 5000))
      assert.equal(0, m.running)
      assert.is_nil(m:record(r.id).stopping)
    end)

    it("lets a wait see a kill's result at once", function()
      local m = h.manager()
      local r = start(m, { command = "sleep 1000" })
      local waited, t0
      m:call_async("waitForBackgroundProcess", { processId = r.id, timeoutMs = 10000 }, {},
        function(res) waited = res end)
      t0 = h.now_ms()
      m:call_async("killProcesses", { processId = r.id }, {}, function() end)
      assert.is_true(m:run_until(function() return waited ~= nil end, 5000))
      assert.is_false(waited.timedOut)
      assert.equal("cancelled", waited.status)
      assert.is_true(h.now_ms() - t0 < 2000)
    end)

    it("counts an exit already waiting to be read as an exit, not a timeout", function()
      local m = h.manager()
      local t0 = h.now_ms()
      local r = start(m, { argv = { "true" }, timeoutMs = 1 })
      -- exited (a zombie: nobody dispatched) and past its timeout when the timer fires
      assert.is_true(h.wait_until(function() return not h.alive(r.pid) and h.now_ms() - t0 > 2 end, 5000))
      local w = wait(m, r.id)
      assert.equal("completed", w.status)
    end)
  end)

  describe("sessions", function()
    it("end with their non-global jobs; global jobs and other sessions live on", function()
      local m = h.manager()
      m:session_open("s1")
      local a = start(m, { command = "sleep 100 & wait" }, "s1")
      local g = start(m, { command = "sleep 100", global = true }, "s1")
      local other = start(m, { command = "sleep 100" }, "s2")
      assert.is_true(h.wait_until(function() return #h.group(a.pid) == 2 end, 5000), "a's sleep never started")
      local a_pids = h.group(a.pid)
      local stopped = m:session_close("s1")
      assert.same({ a.id }, stopped)
      assert.equal("cancelled", m:record(a.id).status)
      for _, pid in ipairs(a_pids) do assert.is_false(h.alive(pid)) end
      assert.equal("running", m:record(g.id).status)
      assert.equal("running", m:record(other.id).status)
    end)

    it("end what a finished job left running", function()
      local m = h.manager()
      local r = start(m, { command = "sleep 1000 >/dev/null 2>&1 & echo started" })
      assert.is_true(m:run_until(function() return m:record(r.id).status == "completed" end, 3000))
      local left = h.group(r.pid)
      assert.equal(1, #left)
      m:session_close("s1")
      assert.is_false(h.alive(left[1]))
    end)

    it("let a plugin keep chosen jobs at session end", function()
      local m = h.manager { plugins = { {
        name = "keeper",
        on_session_end = function(_, _, records)
          local keep = {}
          for _, r in ipairs(records) do if r.name == "keep me" then keep[#keep + 1] = r.id end end
          return keep
        end,
      } } }
      local keep = start(m, { command = "sleep 100", name = "keep me" })
      local drop = start(m, { command = "sleep 100", name = "drop me" })
      m:session_close("s1")
      assert.equal("running", m:record(keep.id).status)
      assert.equal("cancelled", m:record(drop.id).status)
    end)

    it("shutdown ends every job, global ones too, and leaves no process", function()
      local m = h.manager()
      local a = start(m, { command = "sleep 100 & wait" })
      local g = start(m, { command = "sleep 100 & wait", global = true }, "s2")
      assert.is_true(h.wait_until(function() return #h.group(a.pid) == 2 and #h.group(g.pid) == 2 end, 5000),
        "the sleeps never started")
      local pids = {}
      for _, r in ipairs { a, g } do
        for _, pid in ipairs(h.group(r.pid)) do pids[#pids + 1] = pid end
      end
      assert.equal(4, #pids)
      m:shutdown()
      for _, pid in ipairs(pids) do assert.is_false(h.alive(pid)) end
      assert.equal("cancelled", m:record(g.id).status)
      local _, err = m:call("createBackgroundProcess", { command = "true" })
      assert.equal("conflict", err.code)
      m:shutdown() -- twice is fine
    end)
  end)

  describe("policy", function()
    it("refuses jobs past maxRunning with code limit", function()
      local m = h.manager { maxRunning = 2 }
      start(m, { command = "sleep 100" })
      start(m, { command = "sleep 100" })
      assert.matches("2 jobs are running", h.fails(m, "limit", "createBackgroundProcess", { command = "sleep 100" }))
    end)

    it("removes the oldest finished records beyond maxFinished", function()
      local m = h.manager { retention = { maxFinished = 2 } }
      local ids = {}
      for i = 1, 4 do ids[i] = start(m, { command = "echo " .. i }).id; wait(m, ids[i]) end
      local running = start(m, { command = "sleep 100" })
      assert.is_nil(m:record(ids[1]))
      assert.is_nil(m:record(ids[2]))
      assert.truthy(m:record(ids[3]))
      assert.truthy(m:record(ids[4]))
      assert.truthy(m:record(running.id))
      h.fails(m, "not_found", "getBackgroundProcess", { processId = ids[1] })
    end)

    it("survives maxFinished = 0 (records go right after they finish)", function()
      local m = h.manager { retention = { maxFinished = 0 } }
      for _ = 1, 5 do
        local r = start(m, { command = "sleep 0.05; echo hi" })
        assert.equal("completed", wait(m, r.id).status)
      end
      assert.is_true(m:run_until(function() return h.ok(m, "listBackgroundProcesses", {}).count == 0 end, 5000),
        "finished records were kept")
    end)

    it("refuses config values that would break it", function()
      for _, bad in ipairs { { progressMs = 0 }, { retention = { maxFinished = -1 } },
                             { retention = { maxAgeMs = "soon" } }, { ringBytes = 0 } } do
        local ok, err = pcall(h.manager, { config = bad })
        assert.is_false(ok)
        assert.matches("config", err)
      end
    end)

    it("removes finished records older than maxAgeMs", function()
      local m = h.manager { retention = { maxAgeMs = 50 } }
      local r = start(m, { argv = { "true" } })
      wait(m, r.id)
      local ended = m:get(r.id).endedMs -- wall clock ms, as retain() counts
      local function age() local s, us = uv.gettimeofday() return s * 1000 + us // 1000 - ended end
      assert.is_true(h.wait_until(function()
        m:retain()
        local a, kept = age(), m:record(r.id) ~= nil -- a: at least the age retain() saw
        if a <= 50 then assert.is_true(kept, "removed at " .. a .. " ms old") end
        return not kept
      end, 5000), "never removed")
    end)

    it("keeps a finished job's memory to what it printed", function()
      local m = h.manager()
      local r = start(m, { command = "echo small" })
      wait(m, r.id)
      -- once its output is all in, the ring shrinks to what it holds
      assert.is_true(m:run_until(function() return m:get(r.id).job:info().eof end, 5000))
      assert.is_true(m:run_until(function() return m:get(r.id).job:info().ring == 64 end, 5000),
        "ring still " .. m:get(r.id).job:info().ring .. " bytes")
    end)
  end)

  describe("driving", function()
    it("answers async calls while the caller's loop runs", function()
      local m = h.manager()
      local r = start(m, { command = "sleep 0.1; echo hi" })
      local got
      m:call_async("waitForBackgroundProcess", { processId = r.id }, {}, function(res) got = res end)
      assert.is_nil(got)
      assert.is_true(m:run_until(function() return got ~= nil end, 5000))
      assert.equal("completed", got.status)
    end)

    it("runs inside a host's own uv.run() loop", function()
      local m = h.manager { luv = true }
      local r = start(m, { command = "sleep 0.1; echo from-luv" })
      local done
      m:call_async("waitForBackgroundProcess", { processId = r.id }, {}, function(res) done = res end)
      local guard = uv.new_timer()
      uv.update_time()
      guard:start(5000, 0, function() guard:close() end)
      local check = uv.new_timer()
      check:start(10, 10, function()
        if done then check:close(); if not guard:is_closing() then guard:close() end end
      end)
      uv.run()
      assert.truthy(done)
      assert.equal("completed", done.status)
      assert.equal("from-luv\n", h.ok(m, "getBackgroundProcess", { processId = r.id }).output)
    end)

    it("does not keep luv's loop alive when idle", function()
      local m = h.manager { luv = true }
      wait(m, start(m, { argv = { "true" } }).id)
      local t0 = h.now_ms()
      uv.run() -- returns at once: nothing is running
      assert.is_true(h.now_ms() - t0 < 500)
    end)
  end)

  describe("plugins", function()
    it("run hooks in order and isolate one that raises", function()
      local seen, logs = {}, {}
      local m = h.manager {
        log = function(level, msg) logs[#logs + 1] = level .. ": " .. msg end,
        plugins = {
          { name = "boom", on_start = function() error("kaboom") end },
          { name = "watch",
            on_create = function(_, args) seen[#seen + 1] = "create " .. args.command end,
            on_start = function(_, r) seen[#seen + 1] = "start " .. r.status end,
            on_exit = function(_, r) seen[#seen + 1] = "exit " .. r.status end,
            on_session_start = function(_, sid) seen[#seen + 1] = "session " .. sid end },
        },
      }
      local r = start(m, { command = "true" })
      wait(m, r.id)
      assert.same({ "create true", "session s1", "start running", "exit completed" }, seen)
      assert.matches("plugin boom: on_start failed: .*kaboom", logs[1])
    end)

    it("can rewrite or refuse a job in on_create", function()
      local m = h.manager { plugins = { {
        name = "guard",
        on_create = function(_, args)
          if args.command and args.command:find("rm %-rf /") then return false, "not on my watch" end
          local copy = {}
          for k, v in pairs(args) do copy[k] = v end
          copy.name = "renamed"
          return copy
        end,
      } } }
      assert.equal("renamed", start(m, { command = "true" }).name)
      assert.matches("refused by plugin guard: not on my watch",
        h.fails(m, "refused", "createBackgroundProcess", { command = "rm -rf /" }))
    end)

    it("get output chunks when they subscribe", function()
      local chunks = {}
      local m = h.manager { plugins = { { name = "tap", on_output = function(_, r, chunk) chunks[#chunks + 1] = chunk end } } }
      wait(m, start(m, { command = "echo one; sleep 0.1; echo two" }).id)
      assert.equal("one\ntwo\n", table.concat(chunks))
    end)

    it("see a light record in on_output, public records in api.records, light ones in api.jobs", function()
      local seen, api = {}, nil
      local m = h.manager { plugins = { { name = "tap",
        setup = function(a) api = a end,
        on_output = function(_, r) seen[#seen + 1] = r end } } }
      local r = start(m, { command = "echo one; sleep 100", tags = { "x" }, stdin = "pipe" })
      assert.is_true(m:run_until(function() return #seen > 0 end, 3000))
      assert.same({ id = r.id, name = r.name, status = "running", pid = r.pid, sessionId = "s1",
                    global = false, stdin = "pipe", tags = { "x" } }, seen[1])
      local recs = api.records(function(p) return p.lastLine == "one" end) -- a public record's field
      assert.equal(1, #recs)
      assert.equal(r.id, recs[1].id)
      assert.same({ r.id }, (function()
        local ids = {}
        for _, j in ipairs(api.jobs(function(j) return j.stdin == "pipe" end)) do ids[#ids + 1] = j.id end
        return ids
      end)())
      assert.equal(16, api.tag_policy.max_count)
    end)

    it("are found in the user's plugin dir and change behaviour", function()
      local dir = h.tmpdir()
      local f = assert(io.open(dir .. "/prefix.lua", "w"))
      f:write([[
        return {
          on_create = function(api, args)
            local out = {}
            for k, v in pairs(args) do out[k] = v end
            out.name = "user:" .. (args.name or "job")
            return out
          end,
        }
      ]])
      f:close()
      local m = h.manager { config = { pluginDirs = { dir }, plugins = { "prefix" } } }
      assert.equal("user:web", start(m, { command = "true", name = "web" }).name)
      os.execute("rm -rf " .. dir)
    end)

    it("report a plugin that does not exist or does not load", function()
      assert.has_error(function() h.manager { plugins = { "no-such-plugin" } } end)
      local ok, err = pcall(h.manager, { plugins = { "no-such-plugin" } })
      assert.is_false(ok)
      assert.matches("plugin 'no%-such%-plugin' not found", err)
    end)
  end)
  -- the configuration (files, environment, checks): spec/bgproc/engine/config_spec.lua
end)
