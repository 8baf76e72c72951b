-- bgproc.cli.flags: the tool commands' flags, made from the tools' own
-- declarations, and the tool arguments made from what was parsed.
local argparse = require "argparse"
local flags = require "bgproc.cli.flags"
local tools = require "bgproc.tools"

describe("bgproc.cli.flags", function()
  -- Parse argv with a command holding tool `name`'s flags: parsed args,
  -- or nil and argparse's message.
  local function parse(name, argv)
    local p = argparse("t"):command_target("cmd")
    local cmd = p:command("c")
    cmd:argument("rest"):args("*")
    flags.add(cmd, name)
    local args = { "c" }
    for _, w in ipairs(argv) do args[#args + 1] = w end
    return p:pparse(args)
  end

  it("gives every tool that declares flags a command whose flags make its arguments", function()
    local ok, a = parse("createBackgroundProcess", { "--name", "web", "--tag", "a", "--tag", "b", "--global",
      "--env", "X=1", "--env", "Y=a=b", "--stdin", "--timeout", "500", "--output-bytes", "4096", "--ready", "up" })
    assert.is_true(ok, a)
    assert.same({ name = "web", tags = { "a", "b" }, global = true, env = { X = "1", Y = "a=b" }, stdin = "pipe",
                  timeoutMs = 500, outputBytes = 4096, readyPattern = "up" },
                flags.args("createBackgroundProcess", a))
    ok, a = parse("waitForBackgroundProcess", { "--for", "ready on", "--any", "--tag", "web" })
    assert.is_true(ok, a)
    assert.same({ pattern = "ready on", ["until"] = "output", mode = "any", tags = { "web" }, timeoutMs = 30000 },
                flags.args("waitForBackgroundProcess", a))
    ok, a = parse("killProcesses", { "--signal", "9", "--status", "running" })
    assert.same({ signal = 9, status = { "running" } }, flags.args("killProcesses", a))
    ok, a = parse("killProcesses", { "--signal", "HUP" })
    assert.equal("HUP", flags.args("killProcesses", a).signal)
  end)

  it("leaves out what was not given (an empty env stays an object)", function()
    local _, a = parse("listBackgroundProcesses", {})
    assert.same({}, flags.args("listBackgroundProcesses", a))
    _, a = parse("createBackgroundProcess", {})
    assert.same({ env = {} }, flags.args("createBackgroundProcess", a))
  end)

  it("refuses bad values naming the flag the user typed", function()
    local ok, msg = parse("createBackgroundProcess", { "--timeout", "soon" })
    assert.is_false(ok)
    assert.truthy(msg:find("--timeout: expected a whole number, got 'soon'", 1, true), msg)
    ok, msg = parse("listBackgroundProcesses", { "--status", "asleep" })
    assert.is_false(ok)
    assert.truthy(msg:find("'--status' must be one of 'pending'", 1, true), msg)
    ok, msg = parse("waitForBackgroundProcess", { "--for", "x", "--ready" })
    assert.is_false(ok, "--for and --ready exclude each other")
    local _, a = parse("createBackgroundProcess", { "--env", "NOEQUALS" })
    assert.equal("--env: expected NAME=VALUE, got 'NOEQUALS'", flags.check("createBackgroundProcess", a))
  end)

  it("names each field's flag, for messages", function()
    assert.equal("--tag", flags.flag_of("killProcesses", "tags"))
    assert.equal("--all-tags", flags.flag_of("listBackgroundProcesses", "allTags"))
    assert.is_nil(flags.flag_of("killProcesses", "processId"))
    for _, t in ipairs(tools.list) do
      for _, entry in ipairs(t.cli or {}) do assert.truthy(entry[2]:find("^%-%-%l"), entry[2]) end
    end
  end)
end)
