-- The shipped plugins (plugins/*.lua): autotag, restart, logfile, stall.
local h = require "helpers"

describe("shipped plugins", function()
  after_each(function() h.cleanup() end)

  local function start(m, args) return h.ok(m, "createBackgroundProcess", args, { sessionId = "s" }) end

  describe("autotag", function()
    local cases = {
      { "npm run dev", "server" }, { "npx vite --port 5173", "server" }, { "python3 -m http.server 8000", "server" },
      { "npx jest --watch", "test" }, { "go test ./...", "test" }, { "cargo test", "test" }, { "pytest -q", "test" },
      { "make -j4", "build" }, { "cargo build --release", "build" }, { "npm install", "install" },
      { "pip install -r requirements.txt", "install" }, { "tsc --watch", "watch" },
    }
    for _, c in ipairs(cases) do
      it(("tags %q as %s"):format(c[1], c[2]), function()
        local m = h.manager { plugins = { "autotag" } }
        -- the rules only read the command line: ask the hook directly
        local out = m.plugins.list[1].on_create(nil, { command = c[1] }) or {}
        local found = false
        for _, t in ipairs(out.tags or {}) do if t == c[2] then found = true end end
        assert.is_true(found, c[1] .. " -> " .. table.concat(out.tags or {}, ","))
      end)
    end

    it("keeps the user's tags and adds no duplicate", function()
      local m = h.manager { plugins = { "autotag" } }
      local r = start(m, { command = "sleep 0 ; echo npm run dev", tags = { "Server", "mine" } })
      assert.same({ "server", "mine" }, r.tags)
      r = start(m, { argv = { "make", "--version" } })
      assert.same({ "build" }, r.tags)
    end)

    -- Regression: the plugin stopped at a hard-coded 16 tags, so a smaller
    -- configured tags.max_count made it push the job over the limit.
    it("adds no more tags than the configured tags.max_count", function()
      local m = h.manager { config = { plugins = { "autotag" }, tags = { max_count = 2 } } }
      local r = start(m, { command = "npx jest --watch", tags = { "mine" } }) -- test and watch
      assert.same({ "mine", "test" }, r.tags)
      h.ok(m, "killProcesses", { processId = r.id })
      m = h.manager { config = { plugins = { "autotag" }, tags = { max_count = 20 } } }
      local many = {}
      for i = 1, 16 do many[i] = "t" .. i end
      r = start(m, { command = "sleep 0 ; echo npm run dev", tags = many })
      assert.equal(17, #r.tags)
      assert.equal("server", r.tags[17])
    end)
  end)

  describe("restart", function()
    it("restarts a failing job tagged restart with backoff, under the same id, up to the max", function()
      local m = h.manager { plugins = { "restart" }, config = { restart = { maxRestarts = 2, backoffMs = 50 } } }
      local r = start(m, { command = "echo run; exit 1", tags = { "restart" } })
      assert.is_true(m:run_until(function()
        local rec = m:record(r.id)
        return rec.restarts == 2 and rec.status == "failed" and rec.notes and rec.notes.restart:find("gave up")
      end, 5000))
      local rec = m:record(r.id)
      assert.equal("gave up after 2 restarts", rec.notes.restart)
      -- the cursor space continues across runs: three runs, three lines
      local out = h.ok(m, "getBackgroundProcess", { processId = r.id, since = 0 })
      assert.equal("run\n", out.output) -- the current run's output
      assert.equal(12, rec.outputBytes)
      assert.equal(8, out.dropped)      -- the earlier runs' output is gone
    end)

    it("does not bring back a job killed while it waits to restart, or whose session ended", function()
      local m = h.manager { plugins = { "restart" }, config = { restart = { backoffMs = 300 } } }
      local a = start(m, { command = "exit 1", tags = { "restart" } })
      local b = h.ok(m, "createBackgroundProcess", { command = "exit 1", tags = { "restart" } }, { sessionId = "gone" })
      m:run_until(function() return m:record(a.id).status == "failed" and m:record(b.id).status == "failed" end, 2000)
      h.ok(m, "killProcesses", { processId = a.id })
      m:session_close("gone")
      -- past the backoff (300 ms) neither is started again
      assert.is_true(h.holds_for(700, function()
        return m:record(a.id).restarts == nil and m:record(b.id).restarts == nil
      end, function(ms) m:step(ms) end), "a job was restarted")
      assert.equal("failed", m:record(a.id).status)
      assert.is_nil(m:record(a.id).restarts)
      assert.equal("failed", m:record(b.id).status)
      assert.is_nil(m:record(b.id).restarts)
    end)

    it("leaves untagged, killed and timed-out jobs alone", function()
      local m = h.manager { plugins = { "restart" }, config = { restart = { backoffMs = 10 } } }
      local plain = start(m, { command = "exit 1" })
      local killed = start(m, { command = "sleep 100", tags = { "restart" } })
      local slow = start(m, { command = "sleep 100", tags = { "restart" }, timeoutMs = 100 })
      h.ok(m, "killProcesses", { processId = killed.id })
      assert.is_true(m:run_until(function()
        return m:record(slow.id).status == "failed" and m:record(plain.id).status == "failed"
      end, 3000))
      -- well past the backoff (10 ms), none is started again
      assert.is_true(h.holds_for(200, function()
        return not (m:record(plain.id).restarts or m:record(killed.id).restarts or m:record(slow.id).restarts)
      end, function(ms) m:step(ms) end), "a job was restarted")
      assert.is_nil(m:record(plain.id).restarts)
      assert.is_nil(m:record(killed.id).restarts)
      assert.is_nil(m:record(slow.id).restarts)
    end)
  end)

  describe("logfile", function()
    it("tees output to a capped file", function()
      local dir = h.tmpdir()
      local m = h.manager { plugins = { "logfile" }, config = { logfile = { dir = dir .. "/logs", maxBytes = 1000 } } }
      local r = start(m, { command = "for i in 1 2 3 4; do seq 1 200; sleep 0.05; done; echo end" })
      h.ok(m, "waitForBackgroundProcess", { processId = r.id })
      local rec = m:record(r.id)
      assert.equal(dir .. "/logs/" .. r.id .. ".log", rec.notes.logfile)
      local f = assert(io.open(rec.notes.logfile))
      local tail = f:read("a")
      f:close()
      assert.is_true(#tail <= 1000)
      assert.equal("200\nend\n", tail:sub(-8))
      local g = assert(io.open(rec.notes.logfile .. ".1"))
      assert.is_true(#g:read("a") <= 1000)
      g:close()
      os.execute("rm -rf " .. dir)
    end)

    -- Regression: the dir was made with `sh -c 'mkdir ...'` per part, with
    -- Lua's %q for quoting (the shell expanded `$x` in it) and from / (a
    -- relative dir landed at the root).
    it("makes a relative dir, with shell-special characters, where the engine runs", function()
      local uv = require "luv"
      local dir = h.tmpdir()
      local before = uv.cwd()
      local m = h.manager { plugins = { "logfile" }, config = { logfile = { dir = "rel$HOME/lo'gs" } } }
      assert(uv.chdir(dir)) -- after loading the plugin (found from the checkout's dir)
      local ok, err = pcall(function()
        local r = start(m, { command = "echo logged" })
        h.ok(m, "waitForBackgroundProcess", { processId = r.id })
        local path = "rel$HOME/lo'gs/" .. r.id .. ".log"
        assert.equal(path, m:record(r.id).notes.logfile)
        local f = assert(io.open(dir .. "/" .. path))
        assert.equal("logged\n", f:read("a"))
        f:close()
        assert.equal(tonumber("700", 8), uv.fs_stat(dir .. "/rel$HOME").mode & tonumber("777", 8))
        assert.is_nil(uv.fs_stat("/rel$HOME"))
      end)
      uv.chdir(before)
      os.execute(("rm -rf '%s'"):format(dir))
      assert(ok, err)
    end)

    it("reports an unwritable log dir and the job goes on", function()
      local m = h.manager { log = function() end, plugins = { "logfile" },
                            config = { logfile = { dir = "/proc/no-such-dir" } } }
      local r = start(m, { command = "echo still running" })
      local w = h.ok(m, "waitForBackgroundProcess", { processId = r.id })
      assert.equal("completed", w.status)
      assert.matches("^error:", m:record(r.id).notes.logfile)
    end)
  end)

  -- Regression: options were looked up by the configured string, so a
  -- plugin given by its path never got config[its name].
  describe("a plugin given by path", function()
    it("gets the options configured under its name", function()
      local dir = h.tmpdir()
      local f = assert(io.open(dir .. "/probe.lua", "w"))
      f:write("local P = { name = 'probe' }\n",
              "function P.setup(api, o) P.word = o.word end\n",
              "return P\n")
      f:close()
      f = assert(io.open(dir .. "/unnamed.lua", "w"))
      f:write("local P = {}\nfunction P.setup(api, o) P.word = o.word end\nreturn P\n")
      f:close()
      local m = h.manager { config = { plugins = { dir .. "/probe.lua", dir .. "/unnamed.lua" },
                                       probe = { word = "hello" }, unnamed = { word = "by file name" } } }
      os.execute("rm -rf " .. dir)
      assert.equal("probe", m.plugins.list[1].name)
      assert.equal("hello", m.plugins.list[1].word)
      assert.equal("unnamed", m.plugins.list[2].name)
      assert.equal("by file name", m.plugins.list[2].word)
    end)
  end)

  describe("stall", function()
    it("flags a silent job whose last line is a prompt, and clears it on answer", function()
      local m = h.manager { plugins = { "stall" }, config = { stall = { silentMs = 150, checkMs = 50 } } }
      local r = start(m, { command = "printf 'Continue? [y/N] '; read a; echo got $a; sleep 100", stdin = "pipe" })
      assert.is_true(m:run_until(function()
        local notes = m:record(r.id).notes
        return notes and notes.waitingForInput
      end, 3000))
      assert.equal("Continue? [y/N]", m:record(r.id).notes.waitingForInput)
      h.ok(m, "sendBackgroundProcessInput", { processId = r.id, input = "y\n" })
      assert.is_true(m:run_until(function()
        local notes = m:record(r.id).notes
        return not (notes and notes.waitingForInput)
      end, 3000))
    end)

    it("does not flag a quiet job that is not at a prompt", function()
      local m = h.manager { plugins = { "stall" }, config = { stall = { silentMs = 100, checkMs = 50 } } }
      local r = start(m, { command = "echo working; sleep 100", stdin = "pipe" })
      assert.is_true(m:run_until(function() return m:record(r.id).lastLine == "working" end, 3000))
      -- silent for 4 x silentMs, checked every checkMs: never flagged
      assert.is_true(h.holds_for(400, function()
        local notes = m:record(r.id).notes
        return notes == nil or notes.waitingForInput == nil
      end, function(ms) m:step(ms) end), "flagged as waiting for input")
    end)
  end)
end)
