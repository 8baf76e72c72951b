-- Runs last (busted sorts spec files): the suite must leave no zombie and
-- no running child of the test process, and, under build/suite-runner, no
-- orphan that was re-parented away from it.
local h = require "helpers"

local function describe_pids(list)
  local out = {}
  for _, c in ipairs(list) do
    local f = io.open("/proc/" .. c.pid .. "/cmdline")
    local cmd = f and f:read("a"):gsub("%z", " ") or "?"
    if f then f:close() end
    out[#out + 1] = ("%d [%s] %s"):format(c.pid, c.state, cmd)
  end
  return table.concat(out, "\n")
end

describe("the suite", function()
  it("leaves no zombie and no running child of the test process", function()
    collectgarbage()
    collectgarbage()
    local me = h.self_pid()
    h.wait_until(function() return #h.children(me) == 0 end, 3000)
    local left = h.children(me)
    assert.equal(0, #left, "left behind:\n" .. describe_pids(left))
  end)

  it("leaves no orphaned process behind", function()
    local runner = tonumber(os.getenv("BGPROC_SUITE_RUNNER") or "")
    if not runner then
      pending("only checked under build/suite-runner (make test)")
      return
    end
    local me = h.self_pid()
    local function orphans()
      local out = {}
      for _, c in ipairs(h.children(runner)) do
        if c.pid ~= me and c.state ~= "Z" then out[#out + 1] = c end
      end
      return out
    end
    h.wait_until(function() return #orphans() == 0 end, 3000)
    local left = orphans()
    assert.equal(0, #left, "orphans:\n" .. describe_pids(left))
  end)
end)
