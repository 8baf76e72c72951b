-- Bad input at scale, the short version: bench/fuzz.lua sends 2,000
-- fuzzed JSON-RPC lines (a fixed seed) to `bgproc mcp` (through the
-- daemon, and standalone) and to the daemon, each with a private daemon,
-- and checks that every request got exactly one answer in time, that
-- nothing died or hung, that a valid call still works at the end, and
-- that nothing the jobs started outlived the daemon. A second, shorter run
-- takes its seed from the clock (printed on failure: rerun it with
-- `lua5.4 bench/fuzz.lua --seed N`).
local h = require "helpers"
local core = require "bgproc.core"
local cjson = require "cjson"

-- Run the fuzzer to the end: its exit code and one report per target.
local function fuzz(lines, seed)
  local loop = core.new()
  local job = assert(loop:spawn {
    argv = { "lua5.4", h.root .. "/bench/fuzz.lua", "--lines", tostring(lines), "--seed", tostring(seed),
             "--target", "all", "--json" },
  })
  local ok = h.pump(loop, function()
    local info = job:info()
    return info.state ~= "running" and info.eof
  end, 120000)
  if not ok then job:kill("KILL") end
  local stdout = (job:read(0, nil, "stdout"))
  local stderr = (job:read(0, nil, "stderr"))
  local code = job:exit()
  loop:close()
  assert(ok, "the fuzzer did not finish in 120 s (seed " .. seed .. ")")
  local reports = {}
  for line in stdout:gmatch("[^\n]+") do
    local okj, r = pcall(cjson.decode, line)
    assert(okj and type(r) == "table", ("seed %d: not a report line: %s\nstderr: %s"):format(seed, line, stderr))
    reports[r.target] = r
  end
  return code, reports, stdout .. stderr
end

local function check(lines, seed)
  local code, reports, out = fuzz(lines, seed)
  local why = ("seed %d (rerun: lua5.4 bench/fuzz.lua --lines %d --seed %d):\n%s"):format(seed, lines, seed, out)
  for _, target in ipairs { "mcp", "daemon", "standalone" } do
    local r = reports[target]
    assert.is_table(r, "no report for " .. target .. ": " .. why)
    assert.equal(lines, r.items, why)
    assert.equal(0, r.crashes, why)
    assert.equal(0, r.hangs, why)
    assert.equal(0, r.unexpected, why)
    assert.equal(0, r.bad_json, why)
    assert.equal(0, r.unclear, why)
    assert.equal(0, r.strays, why)
    assert.equal(0, r.log_errors, why)
    assert.is_true(r.final_call_ok, why)
    -- every request owed an answer got one (a cancelled MCP call may not)
    assert.equal(r.owed, r.answers + r.unanswered_cancelled, why)
    -- the corpus reached the servers: requests, results and each error kind
    assert.is_true(r.owed > lines * 0.8, why)
    assert.is_true(r.results > lines * 0.2, why)
    assert.is_true((r.jobs_started or 0) > 10, why)
    for _, c in ipairs { "-32700", "-32600", "-32601", "-32602" } do
      assert.is_true((r.errors[c] or 0) > 0, "no error " .. c .. " seen: " .. why)
    end
  end
  assert.equal(0, code, why)
end

describe("fuzzed JSON-RPC input", function()
  it("2,000 lines (seed 20251125): every request answered, no crash, no hang, no stray", function()
    check(2000, 20251125)
  end)

  it("1,000 lines with a seed from the clock", function()
    check(1000, os.time())
  end)
end)
