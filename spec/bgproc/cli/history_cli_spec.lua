-- History through the daemon, end to end (bin/bgproc and a private
-- daemon): jobs and output outlive a stop and a SIGKILL, rerun, grep,
-- what daemon status says, and secrets that never reach the disk.
local h = require "helpers"
local cjson = require "cjson"

describe("bgproc history: after the daemon, rerun, grep", function()
  local d
  setup(function() d = h.private_daemon() end)
  teardown(function() d.stop() end)
  after_each(function()
    d.run { "kill", "--all", "--grace", "500" }
    d.run { "prune" }
  end)

  -- `bgproc ARGS` that must exit `want` (default 0): stdout, stderr.
  local function run(args, want, env)
    local out, code, so, se = d.run(args, env)
    assert(code == (want or 0), ("bgproc %s exited %s, not %s:\n%s"):format(table.concat(args, " "),
      tostring(code), tostring(want or 0), out))
    return so, se
  end
  local function json(args, want) return cjson.decode((run({ "--json", table.unpack(args) }, want))) end
  local state = function() return d.dir .. "/state/bgproc" end
  local function daemon_pid() return math.tointeger(json({ "daemon", "status" }).pid) end

  it("keeps jobs and their output across a daemon stop, and no inherited secret on disk", function()
    local secret = "tok-" .. h.new_marker()
    local r = json({ "start", "--name", "hist", "--tag", "h1", "--env", "GIVEN=yes", "--",
                     "sh", "-c", 'echo "given=$GIVEN"' },
                   0, nil)
    run({ "wait", r.id }, 0)
    run { "daemon", "stop" }
    -- the caller's environment held the secret (d.run's env below did not: see the next start)
    local r2 = cjson.decode((run({ "--json", "start", "--name", "sec", "--", "sh", "-c",
                                    'test -n "$SECRET_TOKEN" && echo has-secret' }, 0,
                                  { SECRET_TOKEN = secret })))
    run { "wait", r2.id }
    assert.equal("has-secret\n", (run { "logs", r2.id }))
    -- the first job is back, with its output
    local back = json { "show", r.id }
    assert.equal("completed", back.status)
    assert.same({ "h1" }, back.tags)
    assert.equal("given=yes\n", (run { "logs", "hist" }))
    local ls = run { "ls" }
    assert.truthy(ls:find(r.id, 1, true), ls)
    assert.truthy(ls:find(r2.id, 1, true), ls)
    run { "daemon", "stop" }
    local _, where = h.sh(("grep -r -a -l %q %s"):format(secret, state()))
    assert.equal("", where, "no file under the state directory holds the secret")
    local _, modes = h.sh(("stat -c '%%a %%n' %s %s/bgproc.db %s/output"):format(state(), state(), state()))
    assert.equal(("700 %s\n600 %s/bgproc.db\n700 %s/output\n"):format(state(), state(), state()), modes)
  end)

  it("lists a job that ran when the daemon was killed as failed (daemon-died), with its output", function()
    local r = json { "start", "--name", "victim", "--", "sh", "-c", "echo before-crash; exec sleep 600" }
    run { "wait", r.id, "--for", "before-crash", "--timeout", "10000" }
    local file = state() .. "/output/" .. r.id .. ".log"
    assert.is_true(h.wait_until(function() return h.read_file(file) == "before-crash\n" end, 5000),
      "flushed within a second")
    local pid = daemon_pid()
    local job_pid = math.tointeger(r.pid)
    assert.is_true(h.alive(job_pid))
    assert.is_true(os.execute("kill -KILL " .. pid))
    assert.is_true(h.wait_until(function() return not h.alive(pid) end, 5000))
    assert.is_true(h.wait_until(function() return not h.alive(job_pid) end, 10000), "the guardian ended the job")
    local g = json { "show", r.id }
    assert.equal("failed", g.status)
    assert.equal("daemon-died", g.stopReason)
    assert.matches("daemon ended", g.endReason)
    assert.equal("before-crash\n", (run { "logs", r.id }))
  end)

  it("reruns a job from its stored spec: a new id, same name, tags, cwd and given env", function()
    local dir = h.tmpdir()
    local r = json { "start", "--name", "again", "--tag", "x", "--cwd", dir, "--env", "WHO=first", "--",
                     "sh", "-c", 'echo "$WHO in $(pwd)"' }
    run { "wait", r.id }
    run { "daemon", "stop" }
    local rr = json { "rerun", "again" }
    assert.not_equal(r.id, rr.id)
    assert.equal("again", rr.name)
    assert.same({ "x" }, rr.tags)
    run { "wait", rr.id }
    assert.equal(("first in %s\n"):format(dir), (run { "logs", rr.id }))
    local _, err = run({ "rerun", "no-such-job" }, 1)
    assert.matches("ID|NAME", err, 1, true)
    os.execute("rm -rf " .. dir)
  end)

  it("greps across jobs, running and finished, with context; exit 1 when nothing matches", function()
    local a = json { "start", "--name", "ga", "--tag", "g", "--", "sh", "-c", "printf 'one\\nERROR two\\nthree\\n'" }
    run { "wait", a.id }
    local b = json { "start", "--name", "gb", "--tag", "g", "--", "sh", "-c", "echo 'error four'; exec sleep 600" }
    run { "wait", b.id, "--for", "four", "--timeout", "10000" }
    local out = run { "grep", "/error/i", "--tag", "g" }
    assert.equal(("%s:1: error four\n%s:2: ERROR two\n"):format(b.id, a.id), out)
    assert.equal(("%s:1- one\n%s:2: ERROR two\n%s:3- three\n"):format(a.id, a.id, a.id),
      (run { "grep", "ERROR", "-C", "1", "--name", "ga" }))
    local r = json { "grep", "two", "--status", "completed" }
    assert.equal(1, r.count)
    assert.equal(a.id, r.matches[1].processId)
    assert.equal(2, r.matches[1].line)
    assert.equal("", (run({ "grep", "nothing-like-this" }, 1)))
    assert.equal("", (run({ "grep", "four", "--tag", "no-such-tag" }, 1)))
    local _, err = run({ "grep", "(" }, 2)
    assert.matches("PATTERN", err)
  end)

  it("says in daemon status where history is kept", function()
    local out = run { "daemon", "status" }
    assert.truthy(out:find("history: " .. state() .. "/bgproc.db", 1, true), out)
  end)
end)
