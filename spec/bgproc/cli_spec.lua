-- The `bgproc` command line (bin/bgproc, lua/bgproc/cli.lua) end to end:
-- real CLI processes talking to a real private daemon (helpers.private_daemon),
-- real jobs, real process groups. Nothing is mocked.
--
local h = require "helpers"
local cjson = require "cjson"
local core = require "bgproc.core"
local uv = require "luv"

local BIN = h.root .. "/bin/bgproc"

-- ---- helpers -------------------------------------------------------------------------

-- Integral floats become integers (Debian's cjson decodes every number as
-- a float), so ids, pids and exit codes print and compare as integers.
local function ints(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = ints(x) end
  end
  return v
end

local function decode(s)
  local ok, v = pcall(cjson.decode, s)
  assert(ok, "not JSON: " .. tostring(s))
  return ints(v)
end

local function show_cmd(args)
  return "bgproc " .. table.concat(args, " ")
end

-- d.run that must exit 0; returns stdout, stderr.
local function ok_run(d, args, env, timeout_ms)
  local out, code, so, se = d.run(args, env, timeout_ms)
  assert(code == 0, ("%s exited %s:\n%s"):format(show_cmd(args), tostring(code), out))
  return so, se
end

-- Run the CLI with more control than d.run: cwd, a pty, env changes.
-- Returns all output (stdout and stderr) and the exit code (or signal).
local function run_cli(d, args, opts)
  opts = opts or {}
  local env = {}
  for k, v in pairs(d.env) do env[k] = v end
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local argv = opts.argv or { "lua5.4", BIN }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local loop = core.new()
  local job = assert(loop:spawn { argv = argv, env = env, cwd = opts.cwd, pty = opts.pty or nil })
  local out = h.finish(loop, job, opts.timeout or 20000)
  local code, sig = job:exit()
  loop:close()
  return out, code or sig
end

local n = 0
local function uniq(prefix)
  n = n + 1
  return ("%s%d-%d"):format(prefix or "t", uv.os_getpid() % 10000, n)
end

-- `bgproc start --json ARGS...` -> the record
local function start(d, args, env)
  local a = { "start", "--json" }
  for _, x in ipairs(args) do a[#a + 1] = x end
  return decode((ok_run(d, a, env)))
end

local function show(d, id) return decode((ok_run(d, { "show", "--json", id }))) end

-- Wait for a job to end (whatever its status) and return its record.
local function finished(d, id)
  d.run { "wait", id, "--timeout", "10000" }
  local r = show(d, id)
  assert(r.status ~= "running", id .. " still running")
  return r
end

local function logs(d, id, ...)
  return (ok_run(d, { "logs", id, ... }))
end

local function ids_of(list_json)
  local out = {}
  for _, p in ipairs(decode(list_json).processes) do out[#out + 1] = p.id end
  table.sort(out)
  return out
end

local function sorted(t)
  table.sort(t)
  return t
end

-- An error report: exactly one line on stderr, starting with "bgproc: ".
local function assert_one_error_line(stderr, pattern)
  assert.matches("^bgproc: [^\n]+\n$", stderr)
  if pattern then assert.matches(pattern, stderr) end
end

local function elapsed_ms(fn)
  local t0 = h.now_ms()
  local a, b, c, e = fn()
  return h.now_ms() - t0, a, b, c, e
end

-- ---- without jobs: version, help, usage errors ---------------------------------------------

describe("bgproc CLI: version, help and usage errors", function()
  local d
  setup(function() d = h.private_daemon() end)
  teardown(function() d.stop() end)

  it("prints its version with `version`, --version and -v", function()
    local v = require("bgproc").version
    for _, args in ipairs { { "version" }, { "--version" }, { "-v" } } do
      local out, code, so, se = d.run(args)
      assert.equal(0, code, out)
      assert.equal("bgproc " .. v .. "\n", so)
      assert.equal("", se)
    end
  end)

  it("prints the help, listing every subcommand, with `help` and with no arguments", function()
    for _, args in ipairs { { "help" }, {} } do
      local out, code, so = d.run(args)
      assert.equal(0, code, out)
      assert.matches("Usage: bgproc", so)
      for _, cmd in ipairs { "start", "list", "show", "logs", "kill", "wait", "send", "daemon", "mcp", "version", "help" } do
        assert.matches("\n%s+" .. cmd .. "[%s,]", so)
      end
    end
  end)

  it("prints one command's help with `help COMMAND` (aliases too)", function()
    local _, code, so = d.run { "help", "start" }
    assert.equal(0, code)
    assert.matches("bgproc start", so)
    for _, flag in ipairs { "--name", "--tag", "--global", "--cwd", "--env", "--pty", "--stdin", "--timeout", "--ready" } do
      assert.truthy(so:find(flag, 1, true), "help start lacks " .. flag)
    end
    local _, code2, so2 = d.run { "help", "ls" }
    assert.equal(0, code2)
    assert.truthy(so2:find("--all-tags", 1, true))
    assert.truthy(so2:find("--limit", 1, true))
    local _, hcode, hso = d.run { "start", "-h" }
    assert.equal(0, hcode)
    assert.matches("^Usage: bgproc start", hso)
    local _, code3, so3, se3 = d.run { "help", "nosuchcommand" }
    assert.equal(2, code3)
    assert.equal("", so3)
    assert_one_error_line(se3, "nosuchcommand")
  end)

  local usage_errors = {
    { { "start", "--bogus" }, "'%-%-bogus'", "bgproc start" },
    { { "start", "--name", "x" }, "argument", "bgproc start" },          -- no command
    { { "list", "--status" }, "'%-%-status' requires an argument", "bgproc list" },
    { { "list", "--frob" }, "'%-%-frob'", "bgproc list" },
    { { "show" }, "argument", "bgproc show" },
    { { "logs", "x", "--stderr", "--stdout" }, "%-%-std", "bgproc logs" },
    { { "kill", "a", "b" }, "too many arguments", "bgproc kill" },
    { { "wait", "x", "--for", "a", "--ready" }, "%-%-ready", "bgproc wait" },
    { { "send", "x" }, "argument", "bgproc send" },
    { { "daemon", "restart" }, "must be one of 'start', 'stop', 'status', 'run'", "bgproc daemon" },
    { { "frobnicate" }, "frobnicate", "bgproc" },
  }
  -- {argv, pattern of the last stderr line, command whose usage is shown}
  local function exits_with_usage(case)
    local out, code, so, se = d.run(case[1])
    assert.equal(2, code, out)
    assert.equal("", so)
    assert.truthy(se:find("Usage: " .. case[3], 1, true), "no usage of " .. case[3] .. " in:\n" .. se)
    local last = se:match("([^\n]*)\n$")
    assert.matches("^bgproc: ", last)
    assert.matches(case[2], last)
  end
  for _, case in ipairs(usage_errors) do
    it("exits 2 with the usage for `" .. show_cmd(case[1]) .. "`", function() exits_with_usage(case) end)
  end

  -- A malformed number names its flag (regression: argparse alone does not).
  local malformed_numbers = {
    { { "logs", "x", "-n", "lots" }, "%-n", "bgproc logs" },
    { { "start", "--timeout", "soon", "--", "true" }, "%-%-timeout", "bgproc start" },
    { { "ls", "--limit", "many" }, "%-%-limit", "bgproc list" },
    { { "kill", "--grace", "long", "--all" }, "%-%-grace", "bgproc kill" },
    { { "wait", "x", "--timeout", "1.5s" }, "%-%-timeout", "bgproc wait" },
  }
  for _, case in ipairs(malformed_numbers) do
    it("exits 2 with the usage naming the flag for `" .. show_cmd(case[1]) .. "`", function() exits_with_usage(case) end)
  end

  it("does not start the daemon for usage errors, help or version", function()
    d.run { "start", "--bogus" }
    d.run { "help" }
    d.run { "version" }
    assert.is_nil(uv.fs_stat(d.socket))
    local _, code, so = d.run { "daemon", "status" }
    assert.equal(1, code)
    assert.matches("^not running", so)
  end)
end)

-- ---- the main part: jobs through one private daemon ----------------------------------------

describe("bgproc CLI with a daemon", function()
  local d
  setup(function() d = h.private_daemon() end)
  teardown(function() d.stop() end)
  -- no job survives a test (kill --all is itself tested below)
  after_each(function() d.run { "kill", "--all", "--grace", "300" } end)

  describe("start", function()
    it("prints the id, pid and name, and the job runs", function()
      local name = uniq("sleeper")
      local _, code, so, se = d.run { "start", "--name", name, "--", "sleep", "1000" }
      assert.equal(0, code, se)
      local id, pid, nm = so:match("^started (%S+) %(pid (%d+)%): (.-)\n$")
      assert.truthy(id, so)
      assert.equal(name, nm)
      assert.is_true(h.alive(tonumber(pid)))
      assert.equal("running", show(d, id).status)
    end)

    it("runs several words as an argv, without a shell", function()
      local r = start(d, { "--", "printf", "%s|", "a  b", "$HOME", "c;d" })
      assert.same({ "printf", "%s|", "a  b", "$HOME", "c;d" }, r.argv)
      assert.is_nil(r.command)
      finished(d, r.id)
      assert.equal("a  b|$HOME|c;d|", logs(d, r.id, "--raw")) -- the bytes: no newline added
    end)

    it("runs exactly one quoted string as a shell command", function()
      local r = start(d, { "echo $((6 * 7)) | tr 4 x; echo second" })
      assert.equal("echo $((6 * 7)) | tr 4 x; echo second", r.command)
      assert.is_nil(r.argv)
      assert.equal("completed", finished(d, r.id).status)
      assert.equal("x2\nsecond\n", logs(d, r.id))
    end)

    it("passes words after -- verbatim, even ones that look like bgproc flags", function()
      local r = start(d, { "--", "echo", "--json", "--name", "x", "-n" })
      finished(d, r.id)
      assert.equal("--json --name x -n\n", logs(d, r.id))
    end)

    it("records --name, repeated --tag and --global", function()
      local name = uniq("web")
      local r = start(d, { "--name", name, "--tag", "server", "--tag", "frontend", "--global", "--", "sleep", "1000" })
      assert.equal(name, r.name)
      assert.same({ "server", "frontend" }, r.tags)
      assert.is_true(r.global)
      assert.equal("running", r.status)
      local plain = start(d, { "--", "sleep", "1000" })
      assert.is_false(plain.global)
      assert.same({}, plain.tags)
      -- the CLI's session: the calling process (here busted) binds it
      assert.equal("shell-" .. h.self_pid(), plain.sessionId)
    end)

    it("fails with exit 1 and one `bgproc: ` line when the program does not exist", function()
      local out, code, so, se = d.run { "start", "--", "no-such-program-cli-spec" }
      assert.equal(1, code, out)
      assert.equal("", so)
      assert_one_error_line(se, "spawn_failed")
      assert.matches("no%-such%-program%-cli%-spec", se)
    end)

    it("refuses a malformed --env with exit 2, one line naming --env", function()
      local out, code, so, se = d.run { "start", "--env", "NOEQUALS", "--", "true" }
      assert.equal(2, code, out)
      assert.equal("", so)
      assert.matches("%-%-env", se)
      assert.matches("NOEQUALS", se)
      assert.matches("bgproc: [^\n]*%-%-env[^\n]*\n$", se)
    end)

    -- A malformed --env is a usage error like any other, checked before connecting.
    it("prints the usage for a malformed --env, like for other flag errors", function()
      local _, code, _, se = d.run { "start", "--env", "NOEQUALS", "--", "true" }
      assert.equal(2, code)
      assert.truthy(se:find("Usage: bgproc start", 1, true), "no usage in:\n" .. se)
    end)

    it("stops a job after --timeout MS; it counts as failed", function()
      local elapsed, r = elapsed_ms(function() return start(d, { "--timeout", "300", "--", "sleep", "1000" }) end)
      local t0 = h.now_ms()
      local _, code, so = d.run { "wait", r.id, "--timeout", "10000" }
      local waited = h.now_ms() - t0 + elapsed
      assert.equal(1, code, so)
      assert.is_true(waited < 5000, "took " .. waited .. " ms")
      local rec = show(d, r.id)
      assert.equal("failed", rec.status)
      assert.is_false(h.alive(r.pid))
    end)

    it("runs on a pseudo-terminal with --pty, and without one otherwise", function()
      local probe = "if [ -t 0 ] && [ -t 1 ]; then echo on-a-tty; else echo no-tty; fi"
      local a = start(d, { "--pty", "--", "sh", "-c", probe })
      local b = start(d, { "--", "sh", "-c", probe })
      finished(d, a.id)
      finished(d, b.id)
      assert.matches("on%-a%-tty", logs(d, a.id))
      assert.equal("no-tty\n", logs(d, b.id))
    end)
  end)

  describe("the job's directory and environment", function()
    it("runs in the CLI's current directory by default", function()
      local dir = assert(uv.fs_realpath(h.tmpdir()))
      finally(function() os.execute("rm -rf " .. dir) end)
      local out, code = run_cli(d, { "start", "--json", "--", "pwd" }, { cwd = dir })
      assert.equal(0, code, out)
      local r = decode(out)
      assert.equal(dir, r.cwd)
      finished(d, r.id)
      assert.equal(dir .. "\n", logs(d, r.id))
    end)

    it("runs in --cwd DIR when given", function()
      local dir = assert(uv.fs_realpath(h.tmpdir()))
      finally(function() os.execute("rm -rf " .. dir) end)
      local r = start(d, { "--cwd", dir, "--", "pwd" })
      assert.equal(dir, r.cwd)
      finished(d, r.id)
      assert.equal(dir .. "\n", logs(d, r.id))
    end)

    -- A relative --cwd is the CLI's, not the daemon's (regression).
    it("resolves a relative --cwd against the CLI's directory", function()
      local dir = assert(uv.fs_realpath(h.tmpdir()))
      finally(function() os.execute("rm -rf " .. dir) end)
      assert(uv.fs_mkdir(dir .. "/sub", tonumber("755", 8)))
      local out, code = run_cli(d, { "start", "--json", "--cwd", "sub", "--", "pwd" }, { cwd = dir })
      assert.equal(0, code, out)
      local r = decode(out)
      finished(d, r.id)
      assert.equal(dir .. "/sub\n", logs(d, r.id))
    end)

    it("gets the CLI's environment plus --env (values may contain '=')", function()
      local r = start(d, { "--env", "FROM_FLAG=flag", "--env", "WITH_EQ=a=b", "--env", "OVERRIDDEN=flag",
                           "--", "sh", "-c", 'echo "$FROM_CLI|$FROM_FLAG|$WITH_EQ|$OVERRIDDEN"' },
                      { FROM_CLI = "cli-value", OVERRIDDEN = "cli" })
      finished(d, r.id)
      assert.equal("cli-value|flag|a=b|flag\n", logs(d, r.id))
    end)

    it("does not pass BGPROC_SESSION on to the job, but puts the job in that session", function()
      local sess = uniq("named-")
      local r = start(d, { "--", "sh", "-c", 'echo "[${BGPROC_SESSION-unset}]"' }, { BGPROC_SESSION = sess })
      assert.equal(sess, r.sessionId)
      finished(d, r.id)
      assert.equal("[unset]\n", logs(d, r.id))
    end)
  end)

  describe("list", function()
    it("prints a table with id, name, status, pid, ports, age, tags and last line", function()
      local name = uniq("tbl")
      local a = start(d, { "--name", name .. "-run", "--tag", "alpha", "--tag", "beta", "--",
                           "sh", "-c", "echo first-line; sleep 1000" })
      local b = start(d, { "--name", name .. "-done", "--", "sh", "-c", "echo hello; echo last-words" })
      finished(d, b.id)
      d.run { "wait", a.id, "--for", "first-line", "--timeout", "5000" }
      local out, code, so = d.run { "list", "--name", name }
      assert.equal(0, code, out)
      local lines = {}
      for l in so:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.equal(3, #lines, so)
      assert.matches("^ID%s+NAME%s+STATUS%s+PID%s+PORTS%s+AGE%s+TAGS%s+LAST LINE$", lines[1])
      assert.matches("^" .. a.id:gsub("%-", "%%-") .. "%s+" .. name:gsub("%-", "%%-") .. "%-run%s+running%s+"
        .. a.pid .. "%s+%-%s+%d+s%s+alpha,beta%s+first%-line$", lines[2])
      assert.matches("^" .. b.id:gsub("%-", "%%-") .. "%s+" .. name:gsub("%-", "%%-") .. "%-done%s+completed%s+"
        .. b.pid .. "%s+%-%s+%d+s%s+last%-words$", lines[3])
      assert.is_nil(so:find("\27[", 1, true)) -- no colour when stdout is not a TTY
    end)

    it("says so when nothing matches, and exits 0", function()
      local _, code, so = d.run { "list", "--name", "no-such-job-name-at-all" }
      assert.equal(0, code)
      assert.equal("no background processes\n", so)
      local _, code2, so2 = d.run { "list", "--json", "--name", "no-such-job-name-at-all" }
      assert.equal(0, code2)
      assert.equal(0, decode(so2).count)
    end)

    it("filters by --tag (any of), --all-tags, --name, --status (repeatable), --global and --limit", function()
      local g = uniq("grp")          -- a tag only this test uses
      local function job(name, tags, extra, cmd)
        local args = { "--name", g .. "-" .. name, "--tag", g }
        for _, t in ipairs(tags) do args[#args + 1] = "--tag"; args[#args + 1] = t end
        for _, x in ipairs(extra or {}) do args[#args + 1] = x end
        args[#args + 1] = "--"
        for _, w in ipairs(cmd or { "sleep", "1000" }) do args[#args + 1] = w end
        return start(d, args).id
      end
      local web = job("web", { "server", "frontend" })
      local api = job("api", { "server" }, { "--global" })
      local tst = job("tests", { "test" }, nil, { "true" })
      local bad = job("broken", { "test" }, nil, { "false" })
      finished(d, tst)
      finished(d, bad)
      local function q(...)
        local so = ok_run(d, { "list", "--json", "--all-tags", g, ... })
        return ids_of(so)
      end
      assert.same(sorted { web, api, tst, bad }, q())
      assert.same(sorted { web, api }, q("--tag", "server"))
      assert.same(sorted { web, tst, bad }, q("--tag", "frontend", "--tag", "test"))
      assert.same({ web }, q("--all-tags", "server", "--all-tags", "frontend"))
      assert.same({ api }, q("--name", "API"))
      assert.same(sorted { web, api }, q("--status", "running"))
      assert.same(sorted { tst, bad }, q("--status", "completed", "--status", "failed"))
      assert.same({ bad }, q("--status", "failed"))
      assert.same({ api }, q("--global"))
      assert.same(sorted { tst, bad }, q("--limit", "2"))
      -- `ls` is `list`
      assert.same(sorted { web, api }, ids_of((ok_run(d, { "ls", "--json", "--all-tags", g, "--tag", "server" }))))
    end)

    it("filters by --session", function()
      local s1, s2 = uniq("sess-a-"), uniq("sess-b-")
      local a = start(d, { "--", "sleep", "1000" }, { BGPROC_SESSION = s1 })
      local b = start(d, { "--", "sleep", "1000" }, { BGPROC_SESSION = s2 })
      local b2 = start(d, { "--", "sleep", "1000" }, { BGPROC_SESSION = s2 })
      assert.same({ a.id }, ids_of((ok_run(d, { "list", "--json", "--session", s1 }))))
      assert.same(sorted { b.id, b2.id }, ids_of((ok_run(d, { "list", "--json", "--session", s2 }))))
    end)

    it("rejects a bad --status value with one `bgproc: ` line naming it", function()
      -- exit 2: a usage error, whether the parser or the daemon checks it
      local out, code, so, se = d.run { "list", "--status", "sleeping" }
      assert.equal(2, code, out)
      assert.equal("", so)
      assert.matches("status", se)
      assert.matches("bgproc: [^\n]*\n$", se)
    end)
  end)

  describe("show", function()
    it("prints the record and the last lines; -n limits them", function()
      local name = uniq("shown")
      local r = start(d, { "--name", name, "--tag", "demo", "--", "sh", "-c", "for i in 1 2 3 4 5; do echo out$i; done; exit 3" })
      finished(d, r.id)
      local _, code, so = d.run { "show", r.id }
      assert.equal(0, code)
      assert.matches("id%s+" .. r.id:gsub("%-", "%%-") .. "\n", so)
      assert.matches("name%s+" .. name:gsub("%-", "%%-") .. "\n", so)
      assert.matches("status%s+failed: exited with code 3\n", so)
      assert.matches("pid%s+" .. r.pid .. "\n", so)
      assert.matches("exit code%s+3\n", so)
      assert.matches("tags%s+demo\n", so)
      assert.matches("cwd%s+" .. h.root:gsub("%p", "%%%0") .. "\n", so)
      assert.matches("\nout1\nout2\nout3\nout4\nout5\n$", so)
      local _, code2, so2 = d.run { "show", r.id, "-n", "2" }
      assert.equal(0, code2)
      assert.matches("\nout4\nout5\n$", so2)
      assert.is_nil(so2:find("out3", 1, true))
    end)

    it("prints JSON with --json", function()
      local r = start(d, { "--", "sh", "-c", "echo json-out" })
      finished(d, r.id)
      local j = show(d, r.id)
      assert.equal(r.id, j.id)
      assert.equal("completed", j.status)
      assert.equal(0, j.exitCode)
      assert.equal("json-out\n", j.output)
    end)

    it("fails with exit 1 and one `bgproc: not_found` line for an unknown id", function()
      for _, args in ipairs { { "show", "zz-999" }, { "show", "--json", "zz-999" } } do
        local out, code, so, se = d.run(args)
        assert.equal(1, code, out)
        assert.equal("", so)
        assert_one_error_line(se, "^bgproc: not_found: .*zz%-999")
      end
    end)
  end)

  describe("logs", function()
    -- one finished job for the read-only tests (stdout and stderr are two
    -- pipes: the sleeps keep their order deterministic)
    local id
    before_each(function()
      if id then return end
      local r = start(d, { "--", "sh", "-c",
        "for i in 1 2 3 4 5; do echo line$i; done; sleep 0.1; echo oops >&2; sleep 0.1; echo line6" })
      id = r.id
      finished(d, id)
    end)

    it("prints the output, the last N with -n", function()
      local all = logs(d, id)
      assert.truthy(all:find("line1\n", 1, true))
      assert.truthy(all:find("oops\n", 1, true))
      assert.matches("line6\n$", all)
      assert.equal(7, select(2, all:gsub("\n", "")))
      assert.equal("oops\nline6\n", logs(d, id, "-n", "2"))
    end)

    it("keeps one stream with --stderr or --stdout", function()
      assert.equal("oops\n", logs(d, id, "--stderr"))
      assert.equal("line1\nline2\nline3\nline4\nline5\nline6\n", logs(d, id, "--stdout"))
    end)

    it("keeps matching lines with --grep; none matching exits 1, as grep does", function()
      assert.equal("line2\nline4\n", logs(d, id, "--grep", "line[24]"))
      local out, code, so = d.run { "logs", id, "--grep", "^nomatch$" }
      assert.equal(1, code, out)
      assert.equal("", so)
    end)

    it("prints JSON with a cursor, and --since CURSOR gives only newer output", function()
      local r = start(d, { "--stdin", "--", "cat" })
      ok_run(d, { "send", r.id, "one\n" })
      ok_run(d, { "wait", r.id, "--for", "^one$", "--timeout", "5000" })
      local j = decode(logs(d, r.id, "--json"))
      assert.equal("one\n", j.output)
      assert.equal(4, j.cursor)
      ok_run(d, { "send", r.id, "two\n", "--eof" })
      finished(d, r.id)
      assert.equal("two\n", logs(d, r.id, "--since", tostring(j.cursor)))
      assert.equal("one\ntwo\n", logs(d, r.id, "--since", "0"))
    end)

    it("fails with exit 1 for an unknown id", function()
      local out, code, so, se = d.run { "logs", "zz-404" }
      assert.equal(1, code, out)
      assert.equal("", so)
      assert_one_error_line(se, "not_found")
    end)

    it("-f follows a running job until it ends, then returns by itself", function()
      local r = start(d, { "--", "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.1; done" })
      local ms, out, code, so = elapsed_ms(function() return d.run({ "logs", r.id, "-f" }, nil, 10000) end)
      assert.equal(0, code, out)
      assert.equal("line1\nline2\nline3\nline4\nline5\n", so)
      assert.is_true(ms >= 200, "returned after " .. ms .. " ms: did not follow")
      assert.equal("completed", show(d, r.id).status)
    end)

    it("-f closes a last line without a newline once the job ended, and works on a finished job", function()
      local r = start(d, { "--", "sh", "-c", "echo a; sleep 0.2; printf b" })
      local out, code, so = d.run({ "logs", r.id, "--follow" }, nil, 10000)
      assert.equal(0, code, out)
      assert.equal("a\nb\n", so)
      local _, code2, so2 = d.run({ "logs", id, "-f" }, nil, 10000)
      assert.equal(0, code2)
      assert.matches("^line1\n.*line6\n$", so2)
    end)

    it("-f --grep follows only the matching lines", function()
      local r = start(d, { "--", "sh", "-c", "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.08; done" })
      local out, code, so = d.run({ "logs", r.id, "-f", "--grep", "line[246]" }, nil, 10000)
      assert.equal(0, code, out)
      assert.equal("line2\nline4\nline6\n", so)
    end)

    it("-f --stderr follows only stderr", function()
      local r = start(d, { "--", "sh", "-c", "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.1; done" })
      local out, code, so = d.run({ "logs", r.id, "-f", "--stderr" }, nil, 10000)
      assert.equal(0, code, out)
      assert.equal("err1\nerr2\nerr3\n", so)
    end)
  end)

  describe("kill", function()
    it("ends the whole process group", function()
      local r = start(d, { "--", "sh", "-c", "sleep 1000 & sleep 1000 & wait" })
      assert.equal(r.pid, h.stat(r.pid).pgrp)
      assert.truthy(h.wait_until(function() return #h.group(r.pid) == 3 end, 5000), "group never had 3 members")
      local members = h.group(r.pid)
      local out, code, so = d.run { "kill", r.id }
      assert.equal(0, code, out)
      assert.equal("killed " .. r.id .. "\n", so)
      assert.truthy(h.wait_until(function() return #h.group(r.pid) == 0 end, 5000))
      for _, pid in ipairs(members) do assert.is_false(h.alive(pid)) end
      assert.equal("cancelled", show(d, r.id).status)
    end)

    it("reports a job that already finished, and --json gives the result", function()
      local r = start(d, { "--", "true" })
      finished(d, r.id)
      local _, code, so = d.run { "kill", r.id }
      assert.equal(0, code)
      assert.equal("already finished " .. r.id .. "\n", so)
      local s = start(d, { "--", "sleep", "1000" })
      local j = decode((ok_run(d, { "kill", "--json", s.id })))
      assert.same({ s.id }, j.killed)
      assert.equal("TERM", j.signal)
      assert.is_false(h.alive(s.pid))
    end)

    it("selects by --tag, --session and --status", function()
      local t = uniq("tagk")
      local a = start(d, { "--tag", t, "--", "sleep", "1000" })
      local keep = start(d, { "--", "sleep", "1000" })
      local _, code, so = d.run { "kill", "--tag", t }
      assert.equal(0, code)
      assert.equal("killed " .. a.id .. "\n", so)
      assert.is_false(h.alive(a.pid))
      assert.is_true(h.alive(keep.pid))

      local sess = uniq("ksess-")
      local b = start(d, { "--", "sleep", "1000" }, { BGPROC_SESSION = sess })
      local _, code2, so2 = d.run { "kill", "--session", sess }
      assert.equal(0, code2)
      assert.equal("killed " .. b.id .. "\n", so2)
      assert.is_false(h.alive(b.pid))
      assert.is_true(h.alive(keep.pid))

      local j = decode((ok_run(d, { "kill", "--json", "--status", "running" })))
      assert.truthy(table.concat(j.killed, " "):find(keep.id, 1, true))
      assert.is_false(h.alive(keep.pid))
    end)

    it("--all kills every job", function()
      local a = start(d, { "--", "sleep", "1000" })
      local b = start(d, { "--global", "--", "sleep", "1000" }, { BGPROC_SESSION = uniq("other-") })
      local _, code = d.run { "kill", "--all" }
      assert.equal(0, code)
      assert.is_false(h.alive(a.pid))
      assert.is_false(h.alive(b.pid))
      assert.equal(0, decode((ok_run(d, { "list", "--json", "--status", "running" }))).count)
    end)

    it("sends --signal first", function()
      local r = start(d, { "--", "sh", "-c", "trap 'echo got-INT; exit 0' INT; echo armed; while :; do sleep 0.05; done" })
      ok_run(d, { "wait", r.id, "--for", "armed", "--timeout", "5000" })
      local j = decode((ok_run(d, { "kill", "--json", r.id, "--signal", "INT", "--grace", "3000" })))
      assert.equal("INT", j.signal)
      assert.same({ r.id }, j.killed)
      assert.matches("got%-INT\n", logs(d, r.id))
    end)

    it("KILLs what survives after --grace MS", function()
      local r = start(d, { "--", "sh", "-c", "trap '' TERM; echo armed; sleep 1000" })
      ok_run(d, { "wait", r.id, "--for", "armed", "--timeout", "5000" })
      local ms, _, code = elapsed_ms(function() return d.run { "kill", r.id, "--grace", "300" } end)
      assert.equal(0, code)
      assert.is_true(ms >= 250 and ms < 2500, "kill took " .. ms .. " ms")
      assert.is_true(h.wait_until(function() return #h.group(r.pid) == 0 end, 2000))
      local rec = show(d, r.id)
      assert.equal("cancelled", rec.status)
      assert.equal("KILL", rec.signal)
    end)

    it("is a usage error (exit 2) without a selector", function()
      local r = start(d, { "--", "sleep", "1000" })
      local out, code, so, se = d.run { "kill" }
      assert.equal(2, code, out)
      assert.equal("", so)
      assert.matches("bgproc: [^\n]*\n$", se)
      assert.is_true(h.alive(r.pid))
    end)

    it("fails with exit 1 for an unknown id; an unknown signal is a usage error (2)", function()
      local out, code, so, se = d.run { "kill", "zz-1" }
      assert.equal(1, code, out)
      assert.equal("", so)
      assert_one_error_line(se, "not_found")
      local r = start(d, { "--", "sleep", "1000" })
      local _, code2, _, se2 = d.run { "kill", r.id, "--signal", "NOPE" }
      assert.equal(2, code2)
      assert_one_error_line(se2, "^bgproc: invalid_argument: %-%-signal: .*NOPE")
      assert.is_true(h.alive(r.pid))
    end)
  end)

  describe("wait", function()
    it("exits 0 when the job completed, 1 when it failed", function()
      local ok = start(d, { "--", "true" })
      local _, code, so = d.run { "wait", ok.id }
      assert.equal(0, code)
      assert.matches("^" .. ok.id:gsub("%-", "%%-") .. " completed %(exit 0", so)
      local bad = start(d, { "exit 3" })
      local _, code2, so2 = d.run { "wait", bad.id }
      assert.equal(1, code2)
      assert.matches("^" .. bad.id:gsub("%-", "%%-") .. " failed %(exit 3", so2)
    end)

    -- Regression: with ab793f7 (replies no longer normalized by the client;
    -- Debian's cjson decodes every number as a float) this printed
    -- "ID completed (exit 0.0)"; cli.lua's tool() now normalizes results.
    it("prints the exit code as an integer", function()
      local ok = start(d, { "--", "true" })
      local _, _, so = d.run { "wait", ok.id }
      assert.equal(ok.id .. " completed (exit 0)\n", so)
      local bad = start(d, { "exit 3" })
      local _, _, so2 = d.run { "wait", bad.id }
      assert.equal(bad.id .. " failed (exit 3)\n", so2)
    end)

    it("waits for several jobs (IDs, --tag), all of them or --any", function()
      local tag = uniq("several")
      local quick = start(d, { "--tag", tag, "--", "true" })
      local slow = start(d, { "--tag", tag, "--", "sleep", "1000" })
      local _, code, so = d.run { "wait", "--tag", tag, "--any" }
      assert.equal(0, code, so)
      assert.matches("^1 of 2 done %(mode any%)", so)
      local _, code2 = d.run { "wait", quick.id, slow.id, "--timeout", "100" }
      assert.equal(124, code2)
      ok_run(d, { "kill", slow.id })
      local _, code3, so3 = d.run { "wait", quick.id, slow.id }
      assert.equal(1, code3) -- one was killed: not all completed
      assert.matches("^2 of 2 done %(mode all%)", so3)
      local _, code4, _, se = d.run { "wait" }
      assert.equal(2, code4)
      assert.matches("give an ID", se)
      local _, code5, _, se5 = d.run { "wait", quick.id, "--any" }
      assert.equal(2, code5)
      assert.matches("%-%-any is for several jobs", se5)
    end)

    it("exits 1 for a killed job", function()
      local r = start(d, { "--", "sleep", "1000" })
      ok_run(d, { "kill", r.id })
      local _, code = d.run { "wait", r.id }
      assert.equal(1, code)
    end)

    it("exits 124 when --timeout passes first", function()
      local r = start(d, { "--", "sleep", "1000" })
      local ms, _, code, so = elapsed_ms(function() return d.run { "wait", r.id, "--timeout", "300" } end)
      assert.equal(124, code)
      assert.equal(r.id .. ": still running after 300 ms\n", so)
      assert.is_true(ms >= 280 and ms < 5000, "wait took " .. ms .. " ms")
      assert.is_true(h.alive(r.pid))
      local _, code2, so2 = d.run { "wait", "--json", r.id, "--timeout", "100" }
      assert.equal(124, code2)
      assert.is_true(decode(so2).timedOut)
    end)

    it("--for RE prints the matching line (exit 0), even one printed before", function()
      local r = start(d, { "--", "sh", "-c", "echo booting; sleep 0.2; echo 'listening on :8080'; sleep 1000" })
      local _, code, so = d.run { "wait", r.id, "--for", "listening on :\\d+" }
      assert.equal(0, code)
      assert.equal("listening on :8080\n", so)
      local _, code2, so2 = d.run { "wait", r.id, "--for", "^boot" }
      assert.equal(0, code2)
      assert.equal("booting\n", so2)
      local j = decode((ok_run(d, { "wait", "--json", r.id, "--for", "8080" })))
      assert.is_true(j.matched)
      assert.equal("listening on :8080", j.line)
    end)

    it("--for exits 1 when the job ends without a match, 124 on timeout", function()
      local r = start(d, { "--", "sh", "-c", "echo nothing here" })
      local _, code, so = d.run { "wait", r.id, "--for", "never" }
      assert.equal(1, code)
      assert.matches("without a match", so)
      local s = start(d, { "--", "sleep", "1000" })
      local _, code2 = d.run { "wait", s.id, "--for", "never", "--timeout", "200" }
      assert.equal(124, code2)
    end)

    it("--ready waits for the --ready pattern of start", function()
      local r = start(d, { "--ready", "ready on (\\d+)", "--", "sh", "-c", "sleep 0.2; echo ready on 4242; sleep 1000" })
      local _, code, so = d.run { "wait", r.id, "--ready" }
      assert.equal(0, code)
      assert.equal("ready on 4242\n", so)
      assert.is_true(show(d, r.id).ready)
      -- without a --ready pattern it is an error
      local s = start(d, { "--", "sleep", "1000" })
      local _, code2, _, se2 = d.run { "wait", s.id, "--ready" }
      assert.equal(2, code2) -- the tool's invalid_argument: a usage error
      assert_one_error_line(se2, "readyPattern")
    end)

    it("fails with exit 1 for an unknown id", function()
      local out, code, so, se = d.run { "wait", "zz-2" }
      assert.equal(1, code, out)
      assert.equal("", so)
      assert_one_error_line(se, "not_found")
    end)
  end)

  describe("send", function()
    it("writes to a job started with --stdin; --eof closes its stdin", function()
      local r = start(d, { "--stdin", "--", "sort" })
      local _, code, so = d.run { "send", r.id, "pear\nbanana\n" }
      assert.equal(0, code)
      assert.equal(("sent 12 bytes to %s\n"):format(r.id), so)
      assert.equal("running", show(d, r.id).status) -- sort waits for the end of input
      local _, code2, so2 = d.run { "send", r.id, "apple\n", "--eof" }
      assert.equal(0, code2)
      assert.equal(("sent 6 bytes to %s, stdin closed\n"):format(r.id), so2)
      local _, wcode = d.run { "wait", r.id, "--timeout", "5000" }
      assert.equal(0, wcode)
      assert.equal("apple\nbanana\npear\n", logs(d, r.id))
    end)

    it("prints JSON with --json", function()
      local r = start(d, { "--stdin", "--", "cat" })
      local j = decode((ok_run(d, { "send", "--json", r.id, "abc", "--eof" })))
      assert.equal(3, j.bytes)
      assert.is_true(j.eof)
      finished(d, r.id)
      assert.equal("abc", logs(d, r.id, "--raw")) -- the bytes: no newline added
    end)

    it("fails with exit 1 for a job without --stdin, a finished one, or an unknown id", function()
      local r = start(d, { "--", "sleep", "1000" })
      local _, code, so, se = d.run { "send", r.id, "x\n" }
      assert.equal(1, code)
      assert.equal("", so)
      assert_one_error_line(se, "conflict")
      local f = start(d, { "--stdin", "--", "true" })
      finished(d, f.id)
      local _, code2, _, se2 = d.run { "send", f.id, "x\n" }
      assert.equal(1, code2)
      assert_one_error_line(se2, "conflict")
      local _, code3, _, se3 = d.run { "send", "zz-3", "x\n" }
      assert.equal(1, code3)
      assert_one_error_line(se3, "not_found")
    end)
  end)

  describe("sessions", function()
    local function rec(name)
      local r = decode((ok_run(d, { "list", "--json", "--name", name })))
      assert.equal(1, r.count)
      return r.processes[1]
    end

    it("ends a job with the process that ran the script starting it; a --global one keeps running", function()
      local bound, glob = uniq("bound-"), uniq("glob-")
      local loop = core.new()
      -- a script is not an owner (it would end the job as it exits): the
      -- process that ran it is, here `timeout` as an agent would be
      local job = assert(loop:spawn { argv = { "timeout", "60", "sh", h.fixture("cli_session.sh"), BIN, bound, glob },
                                      env = d.env })
      local shpid = job:pid()
      local out = h.finish(loop, job, 15000)
      local code = job:exit()
      loop:close()
      assert.equal(0, code, out)
      assert.equal("shell-" .. shpid, rec(bound).sessionId)
      assert.equal("shell-" .. shpid, rec(glob).sessionId)
      assert.truthy(h.wait_until(function() return rec(bound).status == "cancelled" end, 8000),
        "the session job is still " .. rec(bound).status)
      assert.is_false(h.alive(rec(bound).pid))
      local g = rec(glob)
      assert.equal("running", g.status)
      assert.is_true(h.alive(g.pid))
      assert.is_true(g.global)
    end)

    it("binds the session to the process above a one-off `sh -c` wrapper", function()
      local name = uniq("wrapped-")
      local loop = core.new()
      local job = assert(loop:spawn { argv = { "sh", "-c", ("lua5.4 %s start --name %s -- sleep 1000; sleep 0.2"):format(BIN, name) },
                                      env = d.env })
      local out = h.finish(loop, job, 15000)
      loop:close()
      local r = rec(name)
      assert.equal("shell-" .. h.self_pid(), r.sessionId, out)
      -- the wrapper has exited and been reaped: a session bound to it would
      -- be ending now, and be seen ending by the next request
      assert.is_true(h.holds_for(300, function() return h.alive(r.pid) end), "the wrapper's exit ended the job")
      r = rec(name)
      assert.equal("running", r.status) -- the wrapper's exit did not end it
      assert.is_nil(r.stopping)
    end)

    it("keeps jobs of a session named by BGPROC_SESSION after the shell exits", function()
      local sess, name = uniq("keep-"), uniq("named-job-")
      local loop = core.new()
      local env = {}
      for k, v in pairs(d.env) do env[k] = v end
      env.BGPROC_SESSION = sess
      local job = assert(loop:spawn { argv = { "sh", "-c", ("lua5.4 %s start --name %s -- sleep 1000; sleep 0.2"):format(BIN, name) }, env = env })
      h.finish(loop, job, 15000)
      loop:close()
      -- the shell has exited and been reaped: its end, were the job bound
      -- to it, would be under way by now and seen by the next request
      local r = rec(name)
      assert.is_true(h.holds_for(300, function() return h.alive(r.pid) end), "the shell's exit ended the job")
      r = rec(name)
      assert.equal(sess, r.sessionId)
      assert.equal("running", r.status)
      assert.is_nil(r.stopping)
    end)
  end)

  describe("colour", function()
    local name
    before_each(function()
      name = uniq("colour-")
      local r = start(d, { "--name", name, "--", "sh", "-c", "echo hi" })
      finished(d, r.id)
    end)

    it("colours the table and the record on a TTY", function()
      local out, code = run_cli(d, { "list", "--name", name }, { pty = true })
      assert.equal(0, code, out)
      assert.truthy(out:find("\27[", 1, true), "no ANSI escapes in: " .. out)
      assert.truthy(out:find(name, 1, true))
      local id = decode((ok_run(d, { "list", "--json", "--name", name }))).processes[1].id
      local out2, code2 = run_cli(d, { "show", id }, { pty = true })
      assert.equal(0, code2, out2)
      assert.truthy(out2:find("\27[", 1, true), "no ANSI escapes in: " .. out2)
    end)

    it("does not colour on a TTY with NO_COLOR set", function()
      local out, code = run_cli(d, { "list", "--name", name }, { pty = true, env = { NO_COLOR = "1" } })
      assert.equal(0, code, out)
      assert.truthy(out:find(name, 1, true))
      assert.is_nil(out:find("\27[", 1, true), "ANSI escapes in: " .. out)
    end)

    it("does not colour without a TTY", function()
      local _, code, so = d.run { "list", "--name", name }
      assert.equal(0, code)
      assert.truthy(so:find(name, 1, true))
      assert.is_nil(so:find("\27[", 1, true))
      local id = decode((ok_run(d, { "list", "--json", "--name", name }))).processes[1].id
      local _, _, so2 = d.run { "show", id }
      assert.is_nil(so2:find("\27[", 1, true))
    end)
  end)

  describe("--json", function()
    it("is accepted before the subcommand too", function()
      local r = start(d, { "--", "true" })
      local so = ok_run(d, { "--json", "show", r.id })
      assert.equal(r.id, decode(so).id)
    end)

    -- Regression: with ab793f7 empty arrays came out as objects
    -- ({"processes":{}}, "tags":{}, "killed":{}) because the CLI re-encoded
    -- un-normalized results; cli.lua's tool() now normalizes them.
    it("prints empty arrays as []", function()
      local so = ok_run(d, { "start", "--json", "--", "true" })
      assert.truthy(so:find('"tags":[]', 1, true), so)
      local id = decode(so).id
      finished(d, id)
      local so2 = ok_run(d, { "list", "--json", "--name", "no-such-job-name-at-all" })
      assert.truthy(so2:find('"processes":[]', 1, true), so2)
      local so3 = ok_run(d, { "kill", "--json", id })
      assert.truthy(so3:find('"killed":[]', 1, true), so3)
      assert.truthy(so3:find('"errors":[]', 1, true), so3)
    end)
  end)

  describe("bin/bgproc", function()
    it("runs from the checkout without LUA_PATH, from any directory, as an executable", function()
      local dir = h.tmpdir()
      finally(function() os.execute("rm -rf " .. dir) end)
      local env = { LUA_PATH_5_4 = false, LUA_CPATH_5_4 = false }
      local out, code = run_cli(d, { "version" }, { argv = { BIN }, env = env, cwd = dir })
      assert.equal(0, code, out)
      assert.matches("^bgproc %d+%.%d+", out)
      local name = uniq("exe-")
      local out2, code2 = run_cli(d, { "start", "--json", "--name", name, "--", "true" }, { argv = { BIN }, env = env, cwd = dir })
      assert.equal(0, code2, out2)
      assert.equal(name, decode(out2).name)
    end)
  end)

  describe("mcp", function()
    it("serves the tools over MCP on stdin/stdout, with a session ending when it exits", function()
      local loop = core.new()
      local argv = { "lua5.4", BIN, "mcp" }
      local job = assert(loop:spawn { argv = argv, env = d.env, stdin = "pipe" })
      local function send(msg) assert(job:write(cjson.encode(msg) .. "\n")) end
      local function replies()
        local got = {}
        for line in (job:read(0, nil, "stdout") or ""):gmatch("[^\n]+") do
          local m = decode(line)
          if m.id then got[m.id] = m end
        end
        return got
      end
      local function await(id)
        assert(h.pump(loop, function() return replies()[id] ~= nil end, 10000), "no reply " .. id)
        return replies()[id]
      end
      send { jsonrpc = "2.0", id = 1, method = "initialize",
             params = { protocolVersion = "2025-06-18", capabilities = {}, clientInfo = { name = "cli_spec", version = "1" } } }
      local init = await(1)
      assert.equal("2025-06-18", init.result.protocolVersion)
      assert.is_table(init.result.capabilities.tools)
      send { jsonrpc = "2.0", method = "notifications/initialized" }
      send { jsonrpc = "2.0", id = 2, method = "tools/list" }
      local names = {}
      for _, t in ipairs(await(2).result.tools) do names[#names + 1] = t.name end
      assert.same({ "createBackgroundProcess", "listBackgroundProcesses", "getBackgroundProcess",
                    "killProcesses", "waitForBackgroundProcess", "sendBackgroundProcessInput",
                    "restartBackgroundProcess", "removeBackgroundProcesses", "searchBackgroundOutput" }, names)
      send { jsonrpc = "2.0", id = 3, method = "tools/call",
             params = { name = "createBackgroundProcess", arguments = { command = "sleep 1000", name = uniq("mcp-") } } }
      local created = await(3).result
      assert.is_false(created.isError)
      local rec = created.structuredContent
      assert.is_true(h.alive(rec.pid))
      -- the CLI sees the job in the same daemon
      assert.equal("running", show(d, rec.id).status)
      job:close_stdin()
      assert(h.pump(loop, function() return job:info().state ~= "running" end, 10000), "mcp did not exit on EOF")
      loop:close()
      assert.truthy(h.wait_until(function() return show(d, rec.id).status == "cancelled" end, 8000))
      assert.is_false(h.alive(rec.pid))
    end)
  end)
end)

-- ---- the environment the daemon was started with -----------------------------------------

describe("bgproc CLI: the job environment", function()
  local d
  setup(function()
    d = h.private_daemon()
    -- the daemon starts from a CLI whose environment has a variable...
    ok_run(d, { "daemon", "start" }, { CLI_SPEC_DAEMON_ONLY = "from-the-daemon" })
  end)
  teardown(function() d.stop() end)

  -- A job gets exactly the CLI's environment, nothing of the daemon's (regression).
  it("is the CLI's environment, not the daemon's", function()
    local r = start(d, { "--", "sh", "-c", 'echo "[${CLI_SPEC_DAEMON_ONLY-unset}]"' })
    finished(d, r.id)
    assert.equal("[unset]\n", logs(d, r.id))
  end)

  it("still includes the CLI's own variables", function()
    local r = start(d, { "--", "sh", "-c", 'echo "[$CLI_SPEC_MINE]"' }, { CLI_SPEC_MINE = "mine" })
    finished(d, r.id)
    assert.equal("[mine]\n", logs(d, r.id))
  end)
end)

-- ---- daemon start|stop|status|run --------------------------------------------------------

describe("bgproc daemon", function()
  local d
  setup(function() d = h.private_daemon() end)
  teardown(function() d.stop() end)
  before_each(function() ok_run(d, { "daemon", "stop" }) end)

  it("status, start and stop", function()
    local _, code, so = d.run { "daemon", "status" }
    assert.equal(1, code)
    assert.equal("not running (" .. d.socket .. ")\n", so)
    local _, jcode, jso = d.run { "daemon", "status", "--json" }
    assert.equal(1, jcode)
    assert.is_false(decode(jso).running)

    local so2 = ok_run(d, { "daemon", "start" })
    local pid = tonumber(so2:match("^started: pid (%d+), socket " .. d.socket:gsub("%p", "%%%0") .. "\n$"))
    assert.truthy(pid, so2)
    assert.is_true(h.alive(pid))
    assert.equal(("already running: pid %d, socket %s\n"):format(pid, d.socket), (ok_run(d, { "daemon", "start" })))

    local so3 = ok_run(d, { "daemon", "status" })
    assert.matches("^running: pid " .. pid .. ", %d+ jobs %(%d+ running%), %d+ sessions, %d+ clients, up %d+s\n", so3)
    local st = decode((ok_run(d, { "daemon", "status", "--json" })))
    assert.is_true(st.running)
    assert.equal(pid, st.pid)
    assert.equal(d.socket, st.socket)

    local r = start(d, { "--", "sleep", "1000" })
    assert.equal(("stopped (pid %d)\n"):format(pid), (ok_run(d, { "daemon", "stop" })))
    assert.is_true(h.wait_until(function() return not h.alive(pid) end, 5000))
    assert.is_false(h.alive(r.pid)) -- its jobs end with it
    assert.equal("not running\n", (ok_run(d, { "daemon", "stop" })))
  end)

  it("starts on demand for any command", function()
    assert.is_nil(uv.fs_stat(d.socket))
    local _, code, so = d.run { "--json", "list" }
    assert.equal(0, code)
    -- what ran under the daemon stopped before is history now: all of it ended
    for _, p in ipairs(decode(so).processes) do assert.equal("cancelled", p.status) end
    local _, code2 = d.run { "daemon", "status" }
    assert.equal(0, code2)
  end)

  it("run serves in the foreground until stopped; a second one refuses", function()
    local loop = core.new()
    local job = assert(loop:spawn { argv = { "lua5.4", BIN, "daemon", "run" }, env = d.env })
    assert.truthy(h.wait_until(function()
      loop:wait(0)
      return select(2, d.run { "daemon", "status" }) == 0
    end, 5000), "the foreground daemon never answered")
    local st = decode((ok_run(d, { "daemon", "status", "--json" })))
    assert.equal(job:pid(), st.pid)

    local out, code, _, se = d.run { "daemon", "run" }
    assert.equal(1, code, out)
    assert.matches("already running", se)
    local _, qcode, qso, qse = d.run { "daemon", "run", "--quiet-if-running" }
    assert.equal(0, qcode)
    assert.equal("", qso .. qse)

    ok_run(d, { "daemon", "stop" })
    assert(h.pump(loop, function() return job:info().state ~= "running" end, 10000), "daemon run did not exit")
    local ecode = job:exit()
    loop:close()
    assert.equal(0, ecode)
  end)
end)
