-- bgproc.tools.get: since-reads never split a character or a sequence,
-- whatever the timing (the cursor rules are engine/output.lua's).
local h = require "helpers"
local text = require "bgproc.lib.text"

describe("bgproc.tools.get", function()
  after_each(function() h.cleanup() end)

  -- Follow a job with since-reads of at most max bytes until it is
  -- complete and read to the end; returns the concatenated output.
  local function follow(m, id, max, strip)
    local parts, cursor = {}, 0
    while true do
      local g = h.ok(m, "getBackgroundProcess", { processId = id, since = cursor, maxBytes = max, stripAnsi = strip })
      assert.is_true(utf8.len(g.output) ~= nil, "valid UTF-8 in every chunk")
      assert.is_nil(g.output:find("\239\191\189", 1, true), ("no replacement character at cursor %d: %q %s"):format(cursor, g.output, g.status))
      parts[#parts + 1] = g.output
      assert.is_true(g.cursor >= cursor, "cursors never go back")
      if g.status ~= "running" and not g.truncated and g.output == "" then break end
      if g.cursor == cursor and g.status == "running" then m:step(10) end
      cursor = g.cursor
    end
    return table.concat(parts)
  end

  -- The race behind `w��rld`: the job completes while a follower is
  -- behind, so every read after that is of complete output and cut by
  -- maxBytes, often inside a character. Forced here: the follower starts
  -- only once the job is complete.
  it("reads of complete output cut by maxBytes hold back a character cut short", function()
    local m = h.manager()
    local line = ("wörld ✓ 𝄞 "):rep(40) .. "\n"
    local r = h.ok(m, "createBackgroundProcess", { argv = { "printf", "%s", line:rep(30) } })
    assert.is_true(m:run_until(function() return m:call("getBackgroundProcess", { processId = r.id, lines = 0 }).status
      == "completed" end, 10000))
    assert.is_true(m:run_until(function() return m:output_done(m:get(r.id)) end, 10000))
    for _, max in ipairs { 7, 13, 301, 4096 } do
      assert.equal(line:rep(30), follow(m, r.id, max, false), "maxBytes " .. max)
      assert.equal(line:rep(30), follow(m, r.id, max, true), "maxBytes " .. max .. ", cleaned")
    end
  end)

  it("a job that ends while it is followed: chunks join up to exactly what it printed", function()
    local m = h.manager()
    local printed = ("é\27[1;31mß\27[0m ✓ \r" .. "ok ✓\n"):rep(200)
    local r = h.ok(m, "createBackgroundProcess", { argv = { "printf", "%s", printed } })
    assert.equal(text.clean(printed, false), follow(m, r.id, 5, false))
    -- cleaned, a progress bar is held back whole when it fits in maxBytes
    assert.equal(text.clean(printed, true), follow(m, r.id, 64, true))
  end)

  it("a progress bar longer than maxBytes comes in pieces, never with a character cut", function()
    local m = h.manager()
    local printed = ("ü ✓ \r"):rep(500) .. "done\n"
    local r = h.ok(m, "createBackgroundProcess", { argv = { "printf", "%s", printed } })
    local got = follow(m, r.id, 11, true)
    assert.equal("done\n", got:sub(-5))
  end)

  it("answers invalid input with errors that name the field", function()
    local m = h.manager()
    local r = h.ok(m, "createBackgroundProcess", { argv = { "true" } })
    assert.truthy(h.fails(m, "invalid_argument", "getBackgroundProcess", { processId = r.id, since = -1 })
      :find("since", 1, true))
    assert.truthy(h.fails(m, "invalid_argument", "getBackgroundProcess", { processId = r.id, filter = "(" })
      :find("'filter'", 1, true))
    assert.truthy(h.fails(m, "not_found", "getBackgroundProcess", { processId = "nope" }):find("nope", 1, true))
  end)
end)
