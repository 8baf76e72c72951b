-- bgproc.engine.select: selectors over records.
local filter = require "bgproc.engine.select"
local tags = require "bgproc.engine.tags"

local function rec(t)
  t.tagset = tags.set(t.tags or {})
  t.name = t.name or t.id
  t.global = t.global or false
  return t
end

local R = {
  rec { id = "a", sessionId = "s1", status = "running", tags = { "server", "web" }, name = "Web server" },
  rec { id = "b", sessionId = "s1", status = "failed", tags = { "test" } },
  rec { id = "c", sessionId = "s2", status = "running", tags = { "server" }, global = true },
}

local function ids(sel)
  local pred = assert(filter.compile(sel))
  local out = {}
  for _, r in ipairs(R) do if pred(r) then out[#out + 1] = r.id end end
  return table.concat(out, ",")
end

describe("bgproc.engine.select", function()
  it("selects by each criterion, all of which must hold", function()
    assert.equal("a,b,c", ids {})
    assert.equal("b", ids { processId = "b" })
    assert.equal("a,b", ids { sessionId = "s1" })
    assert.equal("a,c", ids { status = "running" })
    assert.equal("a,b,c", ids { status = { "running", "failed" } })
    assert.equal("a,b,c", ids { tags = { "server", "test" } })
    assert.equal("a", ids { allTags = { "server", "web" } })
    assert.equal("a", ids { name = "WEB" })
    assert.equal("c", ids { global = true })
    assert.equal("a", ids { sessionId = "s1", tags = "SERVER" })
  end)

  it("rejects bad statuses and tags with a message", function()
    local ok, err = filter.compile { status = "runing" }
    assert.is_nil(ok)
    assert.matches("'status' must be one of pending, running", err)
    ok, err = filter.compile { tags = { "bad tag" } }
    assert.is_nil(ok)
    assert.matches("'tags': tag 'bad tag'", err)
  end)

  it("normalizes tags with the policy it is given", function()
    local policy = setmetatable({ max_length = 64 }, { __index = tags.policy })
    local long = ("x"):rep(40)
    assert.is_nil((filter.compile { tags = { long } }))
    assert.truthy(filter.compile({ tags = { long } }, policy))
  end)

  it("knows a selector that narrows nothing", function()
    assert.is_false(filter.selector({}).narrows)
    assert.is_false(filter.selector({ tags = {} }).narrows)
    assert.is_false(filter.selector({ allTags = {} }).narrows)
    assert.is_true(filter.selector({ status = "failed" }).narrows)
    assert.is_true(filter.selector({ status = {} }).narrows) -- (it matches nothing)
    assert.is_true(filter.selector({ global = false }).narrows)
  end)
end)
