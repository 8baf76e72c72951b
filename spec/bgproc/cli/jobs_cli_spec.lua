-- The CLI of issue 11's tools, end to end (bin/bgproc and a private
-- daemon): names as ids, start --unique, restart, rm, prune, wait --port
-- and --url, and the PORTS column.
local h = require "helpers"
local cjson = require "cjson"

local SERVER = h.root .. "/spec/fixtures/http_server.py"

describe("bgproc restart, rm, prune, wait --port/--url", function()
  local d
  setup(function() d = h.private_daemon() end)
  teardown(function() d.stop() end)
  after_each(function()
    d.run { "kill", "--all", "--grace", "500" }
    d.run { "prune" }
  end)

  -- `bgproc ARGS` that must exit `want` (default 0): stdout, stderr.
  local function run(args, want)
    local out, code, so, se = d.run(args)
    assert(code == (want or 0), ("bgproc %s exited %s, not %s:\n%s"):format(table.concat(args, " "),
      tostring(code), tostring(want or 0), out))
    return so, se
  end

  local function record(ref) return cjson.decode((run { "--json", "show", ref })) end

  it("starts a server, waits for its port and URL, lists its port, by name", function()
    local r = cjson.decode((run { "--json", "start", "--name", "web", "--", "python3", SERVER, "127.0.0.1", "http" }))
    local port = tonumber((run { "wait", "web", "--port", "--timeout", "15000" }))
    assert.is_number(port)
    assert.equal(("%d\n"):format(port), (run { "wait", "web", "--port", tostring(port) }))
    assert.matches("answered 200", (run { "wait", "web", "--url", ("http://localhost:%d/ok"):format(port) }))
    assert.equal(r.id, record("web").id)
    local ls = run { "ls" }
    assert.matches("PORTS", ls)
    assert.truthy(ls:find("web%s+running%s+%d+%s+" .. port), ls)
    local _, err = run({ "wait", "web", "--url", "http://example.com/" }, 2)
    assert.matches("%-%-url", err)
    _, err = run({ "wait", "web", "--port", "http" }, 2)
    assert.matches("%-%-port: expected a whole number", err)
  end)

  it("a port wait on a job that exits ends with its exit (1), not a timeout (124)", function()
    run { "start", "--name", "quick", "--", "sh", "-c", "exit 3" }
    local out = run({ "wait", "quick", "--port", "--timeout", "20000" }, 1)
    assert.matches("failed", out)
  end)

  it("restart keeps the id and gives a new pid; --unique reuse and replace", function()
    local first = cjson.decode((run { "--json", "start", "--name", "srv", "--", "sleep", "60" }))
    local again = cjson.decode((run { "--json", "restart", "srv" }))
    assert.equal(first.id, again.id)
    assert.not_equal(first.pid, again.pid)
    assert.equal(1, again.restarts)
    local reused = cjson.decode((run { "--json", "start", "--name", "srv", "--unique", "reuse", "--", "sleep", "61" }))
    assert.equal(again.pid, reused.pid)
    assert.is_true(reused.reused)
    local said = run { "start", "--name", "srv", "--unique", "reuse", "--", "sleep", "61" }
    assert.equal(1, said:find("reusing " .. first.id, 1, true), said)
    local replaced = cjson.decode((run { "--json", "start", "--name", "srv", "--unique", "replace", "--", "sleep", "62" }))
    assert.equal(first.id, replaced.id)
    assert.not_equal(again.pid, replaced.pid)
    assert.same({ "sleep", "62" }, record(first.id).argv)
    local _, err = run({ "start", "--unique", "reuse", "--", "true" }, 2)
    assert.matches("'%-%-unique' needs '%-%-name'", err)
  end)

  it("rm removes finished jobs by id or name, not running ones; prune selects", function()
    local done = cjson.decode((run { "--json", "start", "--name", "once", "--", "true" }))
    run { "wait", "once" }
    local bad = cjson.decode((run { "--json", "start", "--", "false" }))
    run({ "wait", bad.id }, 1)
    run { "start", "--name", "up", "--", "sleep", "60" }
    local out, err = run({ "rm", "once", "up" }, 1)
    assert.truthy(out:find("removed 1: " .. done.id, 1, true), out)
    assert.matches("is running: stop it first", out .. err)
    run({ "show", "once" }, 1)
    assert.matches("removed 0", (run { "prune", "--older-than", "1h" }))
    local pruned = run { "prune", "--status", "failed" }
    assert.truthy(pruned:find("removed 1: " .. bad.id, 1, true), pruned)
    assert.equal("running", record("up").status)
    _, err = run({ "prune", "--older-than", "3600" }, 2)
    assert.matches("%-%-older%-than: expected a duration", err)
  end)

  it("start --memory-max takes sizes, and refuses less than 1 MiB naming the flag", function()
    local r = cjson.decode((run { "--json", "start", "--memory-max", "512M", "--", "sleep", "60" }))
    assert.equal(512 * 1024 * 1024, r.memoryMax)
    local _, err = run({ "start", "--memory-max", "1K", "--", "true" }, 2)
    assert.matches("%-%-memory%-max", err)
  end)
end)
