-- bgproc.tools.create: one validation, run on the caller's arguments and
-- again on what a plugin's on_create returns.
local h = require "helpers"

describe("bgproc.tools.create", function()
  after_each(function() h.cleanup() end)

  -- A manager whose one plugin rewrites every create with rewrite(args).
  local function with_rewrite(rewrite)
    return h.manager { plugins = { { name = "rewrite", on_create = function(_, args) return rewrite(args) end } } }
  end

  local cases = {
    { "a NUL byte in argv", function(a) a.argv = { "echo", "a\0b" } return a end, "'argv[2]' must not contain NUL" },
    { "a NUL byte in an env value", function(a) a.env = { X = "a\0" } return a end, "'env.X' must not contain NUL" },
    { "an env name with '='", function(a) a.env = { ["A=B"] = "1" } return a end, "'env': variable name 'A=B'" },
    { "pty with stdin", function(a) a.pty, a.stdin = true, "pipe" return a end, "'stdin' and 'pty' exclude" },
    { "both command and argv", function(a) a.command = "echo hi" return a end, "exactly one of 'command'" },
    { "a command of the wrong type", function(a) a.argv, a.command = nil, 42 return a end, "command" },
    { "an unknown field", function(a) a.bogus = true return a end, "bogus" },
    { "a bad readyPattern", function(a) a.readyPattern = "(" return a end, "'readyPattern'" },
    { "an outputBytes over maxRingBytes", function(a) a.outputBytes = 1 << 30 return a end, "maxRingBytes" },
    { "a tag over the policy", function(a) a.tags = { ("x"):rep(300) } return a end, "tags" },
  }
  for _, case in ipairs(cases) do
    local what, rewrite, says = case[1], case[2], case[3]
    it("refuses " .. what .. " put in by on_create, as it refuses the caller's", function()
      local m = with_rewrite(rewrite)
      local msg = h.fails(m, "invalid_argument", "createBackgroundProcess", { argv = { "true" } })
      assert.truthy(msg:find(says, 1, true), msg)
      assert.truthy(msg:find("after the plugins' on_create", 1, true), "the plugins are named: " .. msg)
      assert.equal(0, #h.ok(m, "listBackgroundProcesses", {}).processes, "no record for a refused job")
      local plain = h.manager()
      local direct = rewrite { argv = { "true" } }
      local dmsg = h.fails(plain, "invalid_argument", "createBackgroundProcess", direct)
      assert.truthy(dmsg:find(says, 1, true), dmsg)
    end)
  end

  it("runs what on_create returns when it is valid", function()
    local m = with_rewrite(function(a) a.argv = { "echo", "rewritten" } return a end)
    local r = h.ok(m, "createBackgroundProcess", { argv = { "echo", "original" } })
    local w = h.ok(m, "waitForBackgroundProcess", { processId = r.id, timeoutMs = 10000 })
    assert.equal("completed", w.status)
    assert.equal("rewritten\n", h.ok(m, "getBackgroundProcess", { processId = r.id }).output)
  end)
end)
