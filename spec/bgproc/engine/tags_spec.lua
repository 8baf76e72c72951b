-- bgproc.engine.tags: the tag policy.
local tags = require "bgproc.engine.tags"

describe("bgproc.engine.tags", function()
  it("trims, lower-cases and de-duplicates, keeping order", function()
    assert.same({ "server", "web", "api:v2" }, tags.normalize { " Server ", "web", "SERVER", "api:v2" })
    assert.same({ "one" }, tags.normalize("One"))
    assert.same({}, tags.normalize(nil))
  end)

  it("names the bad tag", function()
    local ok, err = tags.normalize { "good", "bad tag" }
    assert.is_nil(ok)
    assert.matches("tag 'bad tag' must start with a letter or digit", err)
    ok, err = tags.normalize { "-dash" }
    assert.is_nil(ok)
    assert.matches("'%-dash'", err)
    ok, err = tags.normalize { ("x"):rep(33) }
    assert.matches("longer than 32", err)
    ok, err = tags.normalize { "  " }
    assert.matches("empty tag", err)
    ok, err = tags.normalize { 5 }
    assert.matches("tag 5 is not a string", err)
  end)

  it("limits the count", function()
    local many = {}
    for i = 1, 17 do many[i] = "t" .. i end
    local ok, err = tags.normalize(many)
    assert.is_nil(ok)
    assert.matches("too many tags: 17 %(at most 16%)", err)
  end)

  it("follows an edited policy", function()
    local policy = setmetatable({ max_count = 1 }, { __index = tags.policy })
    assert.is_nil((tags.normalize({ "a", "b" }, policy)))
  end)
end)
