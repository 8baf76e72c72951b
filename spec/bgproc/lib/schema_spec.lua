-- bgproc.lib.schema: validation messages name the field and the expectation.
local schema = require "bgproc.lib.schema"
local json = require "bgproc.lib.json"

local S = {
  type = "object", additionalProperties = false, required = { "id" },
  properties = {
    id = { type = "string", minLength = 1, maxLength = 5 },
    n = { type = "integer", minimum = 0, maximum = 10 },
    x = { type = "number" },
    mode = { type = "string", enum = { "a", "b" } },
    list = { type = "array", maxItems = 2, items = { type = "string" } },
    either = { type = { "string", "array" }, items = { type = "string" } },
    env = { type = "object", additionalProperties = { type = "string" } },
    flag = { type = "boolean" },
  },
}

describe("bgproc.lib.schema", function()
  local function fails(v, pattern)
    local ok, err = schema.validate(S, v)
    assert.is_nil(ok)
    assert.matches(pattern, err)
  end

  it("accepts good input and normalizes integral floats", function()
    local v = assert(schema.validate(S, { id = "a", n = 3.0, x = 2.5, list = { "p" }, either = "s", env = { A = "1" }, flag = false }))
    assert.equal("integer", math.type(v.n))
    assert.equal(false, v.flag)
    assert.is_true(json.is_array(v.list))
  end)

  it("names unknown, missing and mistyped fields", function()
    fails({ id = "a", foo = 1 }, "unknown field 'foo' %(expected one of: either, env, flag, id, list, mode, n, x%)")
    fails({}, "missing required field 'id'")
    fails({ id = 5 }, "'id' must be a string, got number 5")
    fails({ id = "a", n = 1.5 }, "'n' must be an integer, got number 1.5")
    fails({ id = "a", n = "3" }, "'n' must be an integer, got string \"3\"")
    fails({ id = "a", flag = "yes" }, "'flag' must be a boolean")
    fails({ id = "a", either = 5 }, "'either' must be a string or an array")
  end)

  it("checks ranges, lengths, enums and items", function()
    fails({ id = "a", n = -1 }, "'n' must be >= 0, got %-1")
    fails({ id = "a", n = 11 }, "'n' must be <= 10, got 11")
    fails({ id = "" }, "'id' must be at least 1 character")
    fails({ id = "abcdef" }, "'id' must be at most 5 characters long, got 6")
    fails({ id = "a", mode = "c" }, "'mode' must be one of \"a\", \"b\", got string \"c\"")
    fails({ id = "a", list = { "x", 2 } }, "'list%[2%]' must be a string, got number 2")
    fails({ id = "a", list = { "x", "y", "z" } }, "'list' must have at most 2 item%(s%), got 3")
    fails({ id = "a", list = { a = 1 } }, "'list' must be an array, got object")
    fails({ id = "a", env = { A = 1 } }, "'env.A' must be a string, got number 1")
    fails({ id = "a", env = { "x" } }, "'env' must be an object, got array")
  end)

  it("treats JSON null as absent for optional fields, and nil args as {}", function()
    assert.truthy(schema.validate(S, { id = "a", n = json.null }))
    local ok, err = schema.validate(S, nil)
    assert.is_nil(ok)
    assert.matches("missing required field 'id'", err)
  end)
end)
