-- listBackgroundProcesses through the engine's indexes (tag and session
-- rosters) and its cached public records: every filtered list must equal
-- what a scan of all records gives, whatever happened to the records
-- (tags added by a plugin later, retention removing them, restarts,
-- notes), and what a caller does to a returned record changes nothing.
local h = require "spec.helpers"

-- The ids of a list result, in order.
local function ids(list)
  local out = {}
  for i, p in ipairs(list.processes) do out[i] = p.id end
  return out
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

-- What `sel` should match, found by scanning the unfiltered list.
local function oracle(m, sel)
  local all = h.ok(m, "listBackgroundProcesses", {}).processes
  local out = {}
  for _, p in ipairs(all) do
    local tags = set_of(p.tags)
    local any = not sel.tags
    for _, t in ipairs(sel.tags or {}) do any = any or tags[t] end
    local every = true
    for _, t in ipairs(sel.allTags or {}) do every = every and tags[t] end
    if any and every and (not sel.sessionId or p.sessionId == sel.sessionId)
        and (not sel.status or p.status == sel.status) then
      out[#out + 1] = p.id
    end
  end
  if sel.limit then out = table.move(out, math.max(1, #out - sel.limit + 1), #out, 1, {}) end
  return out
end

local SELECTORS = {
  { tags = { "a" } }, { tags = { "b" } }, { tags = { "c" } }, { tags = { "a", "c" } },
  { allTags = { "a", "b" } }, { sessionId = "s1" }, { sessionId = "s2", tags = { "b" } },
  { tags = { "a" }, limit = 3 }, { sessionId = "s1", limit = 1 }, { tags = { "nobody" } },
  { sessionId = "nobody" }, { status = "completed", tags = { "b" } },
}

local function check_all(m)
  for _, sel in ipairs(SELECTORS) do
    local want = oracle(m, sel)
    local got = h.ok(m, "listBackgroundProcesses", sel)
    assert.same(want, ids(got), "selector " .. require("bgproc.lib.json").encode(sel))
  end
end

local function all_done(m)
  assert.is_true(m:run_until(function() return m.running == 0 end, 20000))
end

describe("list through the indexes", function()
  after_each(h.cleanup)

  it("matches a full scan, in creation order, with tags added later by a plugin", function()
    local m = h.manager()
    local api = require("bgproc.plugins.api").new(m)
    local made = {}
    for i = 1, 30 do
      local tags = ({ { "a" }, { "b" }, { "a", "b" } })[i % 3 + 1]
      local r = h.ok(m, "createBackgroundProcess", { argv = { "/bin/true" }, tags = tags },
                     { sessionId = i % 2 == 0 and "s1" or "s2" })
      made[i] = r.id
    end
    all_done(m)
    check_all(m)
    -- a plugin tags old records, out of creation order
    assert.is_true(api.add_tags(made[20], { "c" }))
    assert.is_true(api.add_tags(made[3], { "c", "a" }))
    assert.is_true(api.add_tags(made[11], { "c" }))
    assert.same({ made[3], made[11], made[20] }, ids(h.ok(m, "listBackgroundProcesses", { tags = { "c" } })))
    -- the cached public form shows the new tags too
    local one = h.ok(m, "listBackgroundProcesses", { tags = { "c" }, limit = 1 }).processes[1]
    assert.same({ made[20] }, { one.id })
    assert.is_true(set_of(one.tags).c)
    check_all(m)
  end)

  it("forgets records retention removes, and tags no record has any more", function()
    local m = h.manager { config = { retention = { maxFinished = 40 } } }
    for i = 1, 300 do
      -- "old" only on the first 100: all of them go
      local tags = i <= 100 and { "old", "a" } or (i % 2 == 0 and { "a" } or { "b" })
      h.ok(m, "createBackgroundProcess", { argv = { "/bin/true" }, tags = tags },
           { sessionId = i <= 150 and "s1" or "s2" })
      if i % 50 == 0 then all_done(m) end
    end
    all_done(m)
    assert.is_true(m:run_until(function()
      return h.ok(m, "listBackgroundProcesses", {}).total == 40
    end, 20000))
    assert.equal(0, h.ok(m, "listBackgroundProcesses", { tags = { "old" } }).total)
    assert.is_nil(m.by_tag.old)     -- no roster kept for a tag no record has
    assert.is_nil(m.by_session.s1)  -- nor for a session without records
    check_all(m)
    -- the 40 that finished last are left (jobs of a batch end in any order)
    local a = h.ok(m, "listBackgroundProcesses", { tags = { "a" } }).total
    local b = h.ok(m, "listBackgroundProcesses", { tags = { "b" }, sessionId = "s2" }).total
    assert.equal(40, a + b)
  end)

  it("keeps a restarted record findable, and shows its new state", function()
    local m = h.manager()
    local api = require("bgproc.plugins.api").new(m)
    local first = h.ok(m, "createBackgroundProcess", { argv = { "/bin/sh", "-c", "exit 3" }, tags = { "a" } },
                       { sessionId = "s1" })
    h.ok(m, "createBackgroundProcess", { argv = { "/bin/true" }, tags = { "a" } }, { sessionId = "s1" })
    all_done(m)
    local before = h.ok(m, "listBackgroundProcesses", { tags = { "a" } }).processes[1]
    assert.equal("failed", before.status)
    assert.is_true((api.respawn(first.id)))
    local after = h.ok(m, "listBackgroundProcesses", { tags = { "a" } })
    assert.equal(2, after.count)
    assert.equal(first.id, after.processes[1].id) -- still first: creation order
    assert.equal(1, after.processes[1].restarts)
    assert.is_not.equal("failed", after.processes[1].status)
    all_done(m)
    local again = h.ok(m, "listBackgroundProcesses", { sessionId = "s1" }).processes[1]
    assert.equal("failed", again.status)
    assert.equal(1, again.restarts)
    check_all(m)
  end)

  it("hands out copies: a caller changing a record changes no later answer", function()
    local m = h.manager()
    local api = require("bgproc.plugins.api").new(m)
    local r = h.ok(m, "createBackgroundProcess", { argv = { "/bin/echo", "hi" }, tags = { "a", "b" } })
    h.ok(m, "createBackgroundProcess", { argv = { "/bin/true" }, tags = { "solo" } })
    all_done(m)
    -- lists of one item are copied too
    local solo = h.ok(m, "listBackgroundProcesses", { tags = { "solo" } }).processes[1]
    solo.tags[1], solo.argv[1] = "zzz", "/bin/false"
    solo = h.ok(m, "listBackgroundProcesses", { tags = { "solo" } }).processes[1]
    assert.same({ "solo" }, solo.tags)
    assert.same({ "/bin/true" }, solo.argv)
    assert.is_true(m:run_until(function()
      return h.ok(m, "listBackgroundProcesses", {}).processes[1].lastLine == "hi"
    end, 5000))
    local p = h.ok(m, "listBackgroundProcesses", { tags = { "a" } }).processes[1]
    p.tags[1], p.argv[1], p.status, p.lastLine = "zzz", "/bin/false", "running", "changed"
    p.tags[3] = "c"
    local q = h.ok(m, "listBackgroundProcesses", { tags = { "a" } }).processes[1]
    assert.same({ "a", "b" }, q.tags)
    assert.same({ "/bin/echo", "hi" }, q.argv)
    assert.equal("completed", q.status)
    assert.equal("hi", q.lastLine)
    -- a note added after the job settled shows up, and copies of it too
    assert.is_true(api.note(r.id, "k", "v1"))
    q = h.ok(m, "listBackgroundProcesses", { tags = { "b" } }).processes[1]
    assert.same({ k = "v1" }, q.notes)
    for _ = 1, 2 do -- the first answer after a change is built, the next copied
      q = h.ok(m, "listBackgroundProcesses", { tags = { "b" } }).processes[1]
      q.notes.k = "mine"
      assert.same({ k = "v1" }, h.ok(m, "listBackgroundProcesses", {}).processes[1].notes)
    end
    assert.same({ k = "v1" }, h.ok(m, "getBackgroundProcess", { processId = r.id }).notes)
  end)

  it("gives the same public record from the kept form as built from the record", function()
    local m = h.manager()
    local api = require("bgproc.plugins.api").new(m)
    local dir = h.tmpdir()
    local made = {
      h.ok(m, "createBackgroundProcess", { command = "echo ready; echo last; exit 4", name = "Shell job",
                                           tags = { "a", "b" }, cwd = dir, readyPattern = "^ready" }),
      h.ok(m, "createBackgroundProcess", { argv = { "/bin/sh", "-c", "echo one" }, tags = { "a" } }),
      h.ok(m, "createBackgroundProcess", { argv = { "/bin/sleep", "30" }, readyPattern = "never" }),
    }
    assert.is_true(api.note(made[1].id, "why", "a note"))
    h.ok(m, "killProcesses", { processId = made[3].id, graceMs = 0 })
    for _, r in ipairs(made) do
      local rec = m:get(r.id)
      assert.is_true(m:run_until(function() return m:final(rec) and m:output_done(rec) end, 10000))
    end
    local built = h.ok(m, "listBackgroundProcesses", {}).processes -- builds, and keeps
    local copied = h.ok(m, "listBackgroundProcesses", {}).processes
    os.execute("rm -rf " .. dir)
    assert.same(built, copied)
    assert.equal(3, #copied)
    assert.equal("last", copied[1].lastLine)
    assert.equal(dir, copied[1].cwd)
    assert.same({ why = "a note" }, copied[1].notes)
    assert.is_true(copied[1].ready)
    assert.is_false(copied[3].ready)
    assert.equal("kill", copied[3].stopReason)
  end)
end)
