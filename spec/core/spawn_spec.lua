-- bgproc.core: spawning (shell string, argv, cwd, env, stdin, pty), the
-- child's clean state, and spawn failures as values.
local core = require "bgproc.core"
local h = require "helpers"

describe("core spawn", function()
  local loop
  before_each(function() loop = core.new() end)
  after_each(function() loop:close() end)

  it("runs a shell string through /bin/sh -c", function()
    local job = assert(loop:spawn { command = "echo $((6*7)); echo two words" })
    assert.equal("42\ntwo words\n", h.finish(loop, job))
    local code, sig = job:exit()
    assert.equal(0, code)
    assert.is_nil(sig)
  end)

  it("runs an argv with no shell in between", function()
    local job = assert(loop:spawn { argv = { "printf", "%s|", "$HOME", "a b", "*" } })
    assert.equal("$HOME|a b|*|", h.finish(loop, job))
  end)

  it("reports the exit code", function()
    local job = assert(loop:spawn { command = "exit 3" })
    h.finish(loop, job)
    assert.equal(3, (job:exit()))
    local info = job:info()
    assert.equal("exited", info.state)
    assert.equal(3, info.code)
    assert.is_true(info.ended >= info.started)
  end)

  it("reports the terminating signal by name", function()
    local job = assert(loop:spawn { command = "kill -USR1 $$" })
    h.finish(loop, job)
    local code, sig, core_dumped = job:exit()
    assert.is_nil(code)
    assert.equal("USR1", sig)
    assert.is_false(core_dumped)
  end)

  it("runs in the given cwd", function()
    local job = assert(loop:spawn { argv = { "pwd" }, cwd = "/usr/share" })
    assert.equal("/usr/share\n", h.finish(loop, job))
  end)

  it("adds to, overrides and removes from the host environment", function()
    local job = assert(loop:spawn {
      command = 'echo "$BGPROC_A|${HOME:-unset}|${PATH:+haspath}"',
      env = { BGPROC_A = "one", HOME = false },
    })
    assert.equal("one|unset|haspath\n", h.finish(loop, job))
  end)

  it("replaces the environment with clear_env", function()
    local job = assert(loop:spawn {
      argv = { "/usr/bin/env" }, env = { ONLY = "me" }, clear_env = true,
    })
    assert.equal("ONLY=me\n", h.finish(loop, job))
  end)

  it("searches PATH from the job's own environment", function()
    local job, _, name = loop:spawn { argv = { "true" }, env = { PATH = "/nonexistent" } }
    assert.is_nil(job)
    assert.equal("ENOENT", name)
    job = assert(loop:spawn { argv = { "true" }, env = { PATH = "/nonexistent:/bin" } })
    h.finish(loop, job)
    assert.equal(0, (job:exit()))
  end)

  it("gives stdin /dev/null by default, so a prompt sees EOF", function()
    local job = assert(loop:spawn { command = "read answer; echo read=$?" })
    assert.equal("read=1\n", h.finish(loop, job, 3000))
  end)

  it("feeds stdin through a pipe and closes it on request", function()
    local job = assert(loop:spawn { argv = { "sort" }, stdin = "pipe" })
    assert.equal(6, job:write("b\nc\na\n"))
    assert.is_true(job:close_stdin())
    assert.equal("a\nb\nc\n", h.finish(loop, job))
  end)

  it("queues stdin larger than the pipe and writes it all", function()
    local job = assert(loop:spawn { argv = { "wc", "-c" }, stdin = "pipe" })
    local chunk = string.rep("x", 1024 * 1024)
    assert.equal(#chunk, job:write(chunk))
    assert.equal(#chunk, job:write(chunk))
    assert.is_true(job:close_stdin())
    assert.equal(tostring(2 * #chunk), h.finish(loop, job):match("%d+"))
  end)

  it("refuses stdin writes when stdin is not a pipe", function()
    local job = assert(loop:spawn { argv = { "true" } })
    local ok, msg, name = job:write("x")
    assert.is_nil(ok)
    assert.equal("EBADF", name)
    assert.matches("stdin", msg)
    h.finish(loop, job)
    ok, msg, name = job:close_stdin()
    assert.is_nil(ok)
    assert.equal("EBADF", name)
  end)

  it("makes each job lead a new session and process group", function()
    local job = assert(loop:spawn { argv = { "sleep", "5" } })
    local st = h.stat(job:pid())
    assert.equal(job:pid(), st.pgrp)
    assert.equal(job:pid(), st.sid)
    job:kill("KILL")
    h.finish(loop, job)
  end)

  it("lets no host fd reach the child, O_CLOEXEC or not", function()
    local marker = os.tmpname()
    local leaky = assert(io.open(marker, "r")) -- fopen: no O_CLOEXEC
    local job = assert(loop:spawn { command = "ls -l /proc/$$/fd" })
    local out = h.finish(loop, job)
    leaky:close()
    os.remove(marker)
    local fds = {}
    for fd, target in out:gmatch("(%d+) %-> ([^\n]+)") do fds[#fds + 1] = fd .. " " .. target end
    assert.is_nil(out:find(marker, 1, true), "host fd leaked: " .. out)
    -- sh itself may hold a script fd; only 0-2 may come from us
    for _, entry in ipairs(fds) do
      local fd = tonumber(entry:match("^%d+"))
      assert.is_true(fd <= 2 or entry:find("/proc/", 1, true) ~= nil, "unexpected fd: " .. entry)
    end
    assert.is_true(#fds >= 3)
  end)

  it("clears the signal mask and resets ignored signals to default", function()
    -- the host of the inner core ignores USR2 and HUP (set by the shell)
    local script = [[
      local core = require "bgproc.core"
      local loop = core.new()
      local job = assert(loop:spawn{ argv = { "cat", "/proc/self/status" } })
      while job:info().state == "running" or not job:info().eof do loop:wait(100) end
      io.write((job:read(0)))
      loop:close()
    ]]
    local job = assert(loop:spawn {
      command = "trap '' USR2 HUP; exec \"$LUA\" -e \"$SCRIPT\"",
      env = h.lua_env { SCRIPT = script, LUA = h.lua },
    })
    local out = h.finish(loop, job, 5000)
    assert.matches("SigBlk:%s+0+\n", out)
    assert.matches("SigIgn:%s+0+\n", out)
    assert.matches("SigCgt:%s+0+\n", out)
  end)

  it("gives a pty job a terminal on stdin and stdout", function()
    local job = assert(loop:spawn {
      command = "test -t 0 && test -t 1 && test -t 2 && echo tty; stty size",
      pty = { rows = 33, cols = 101 },
    })
    local out = h.finish(loop, job)
    assert.matches("^tty\r?\n33 101", out)
    assert.equal("pty", job:info().stdin)
  end)

  it("feeds a pty job's input and sends EOF on close_stdin", function()
    local job = assert(loop:spawn { command = "stty -echo; echo typing-ok; read line; echo got:$line; cat; echo done", pty = true })
    -- stty -echo has run before we type
    assert.is_true(h.pump(loop, function() return ((job:read(0)) or ""):find("typing-ok", 1, true) ~= nil end, 5000),
      "the job never got past stty")
    job:write("hello\n")
    job:write("more\n")
    job:close_stdin()
    local out = h.finish(loop, job)
    assert.matches("got:hello", out)
    assert.matches("more", out)
    assert.matches("done", out)
  end)

  it("resizes a pty", function()
    local job = assert(loop:spawn { command = "stty -echo; echo resize-me; read x; stty size", pty = true })
    assert.is_true(h.pump(loop, function() return ((job:read(0)) or ""):find("resize-me", 1, true) ~= nil end, 5000),
      "the job never got past stty")
    assert.is_true(job:resize(50, 120))
    job:write("go\n")
    assert.matches("50 120", h.finish(loop, job))
    local ok, _, name = assert(loop:spawn { argv = { "true" } }):resize(1, 1)
    assert.is_nil(ok)
    assert.equal("ENOTTY", name)
  end)

  describe("failures come back as values", function()
    -- (a failed spawn's child is reaped by then: a zombie counts as a child)
    local function no_children_left()
      return h.wait_until(function()
        local kids = h.children(h.self_pid())
        -- the guardian is our only legitimate child
        return #kids == 0 or (#kids == 1 and kids[1].pid == loop:guardian())
      end, 2000)
    end

    it("for a missing program", function()
      local job, msg, name = loop:spawn { argv = { "no-such-program-bgproc" } }
      assert.is_nil(job)
      assert.equal("ENOENT", name)
      assert.matches("exec 'no%-such%-program%-bgproc'", msg)
      assert.is_true(no_children_left())
    end)

    it("for a missing path", function()
      local job, _, name = loop:spawn { argv = { "/nonexistent/prog" } }
      assert.is_nil(job)
      assert.equal("ENOENT", name)
    end)

    it("for a file that is not executable", function()
      local job, msg, name = loop:spawn { argv = { "/etc/passwd" } }
      assert.is_nil(job)
      assert.equal("EACCES", name)
      assert.matches("Permission denied", msg)
    end)

    it("for a name found on PATH only without execute permission", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. dir .. " && touch " .. dir .. "/tool"))
      local job, _, name = loop:spawn { argv = { "tool" }, env = { PATH = dir } }
      os.execute("rm -rf " .. dir)
      assert.is_nil(job)
      assert.equal("EACCES", name)
    end)

    it("for a missing cwd", function()
      local job, msg, name = loop:spawn { argv = { "true" }, cwd = "/nonexistent/dir" }
      assert.is_nil(job)
      assert.equal("ENOENT", name)
      assert.matches("chdir '/nonexistent/dir'", msg)
      assert.is_true(no_children_left())
    end)

    it("for a cwd that is a file", function()
      local job, _, name = loop:spawn { argv = { "true" }, cwd = "/etc/passwd" }
      assert.is_nil(job)
      assert.equal("ENOTDIR", name)
    end)

    it("without leaking fds", function()
      assert.is_nil(loop:spawn { argv = { "no-such-program-bgproc" } }) -- starts the guardian
      local before = h.open_fds()
      for _ = 1, 50 do
        assert.is_nil(loop:spawn { argv = { "no-such-program-bgproc" } })
        assert.is_nil(loop:spawn { argv = { "true" }, cwd = "/nonexistent" })
      end
      assert.equal(before, h.open_fds())
    end)
  end)

  describe("misuse raises an error naming the option", function()
    local cases = {
      { {}, "'command' %(a string%) or 'argv' %(a list%) is required" },
      { { command = "true", argv = { "true" } }, "exclude each other" },
      { { command = 42 }, "option 'command' must be a string, got number" },
      { { argv = {} }, "'argv' must be a non%-empty list" },
      { { argv = { "a", 2 } }, "argv%[2%] must be a string, got number" },
      { { argv = { "" } }, "argv%[1%] is empty" },
      { { command = "true", cwd = 5 }, "option 'cwd' must be a string" },
      { { command = "true", cwdd = "/" }, "unknown option 'cwdd'" },
      { { command = "true", [1] = "x" }, "option names must be strings" },
      { { command = "true", env = { A = 1 } }, "env value of 'A' must be a string or false" },
      { { command = "true", env = { ["A=B"] = "x" } }, "without '='" },
      { { command = "true", env = { [1] = "x" } }, "env keys must be strings" },
      { { command = "true", stdin = "tty" }, "option 'stdin' must be \"null\" or \"pipe\"" },
      { { command = "true", pty = "yes" }, "option 'pty' must be a boolean" },
      { { command = "true", pty = { rows = 0 } }, "option 'rows' must be between 1 and 65535" },
      { { command = "true", ring = 1.5 }, "option 'ring' must be an integer" },
      { { command = "true", ring = 10 }, "option 'ring' must be between" },
      { { command = "a\0b" }, "must not contain NUL" },
    }
    for _, case in ipairs(cases) do
      it(case[2], function()
        local ok, err = pcall(loop.spawn, loop, case[1])
        assert.is_false(ok)
        assert.matches(case[2], err)
      end)
    end

    it("for a non-table argument", function()
      assert.has_error(function() loop:spawn("true") end)
    end)

    it("for core.new options", function()
      assert.has_error(function() core.new { guardan = true } end, "new: unknown option 'guardan'")
      assert.has_error(function() core.new { ring = "big" } end)
    end)

    it("after close, for the loop", function()
      local l2 = core.new()
      l2:close()
      l2:close() -- twice is fine
      assert.has_error(function() l2:spawn { command = "true" } end, "attempt to use a closed loop")
      assert.has_error(function() l2:fd() end, "attempt to use a closed loop")
    end)
  end)
end)
