-- bgproc.lib.json: arrays stay arrays, output is always valid JSON and UTF-8.
local json = require "bgproc.lib.json"
local cjson = require "cjson"

describe("bgproc.lib.json", function()
  it("encodes marked empty arrays as [] and plain empty tables as {}", function()
    assert.equal("[]", json.encode(json.array()))
    assert.equal("{}", json.encode({}))
    assert.equal('{"tags":[]}', json.encode({ tags = json.array() }))
  end)

  it("round-trips through cjson", function()
    local v = { a = 1, b = "x\ny\"z\\", c = { 1, 2, 3 }, d = true, e = 1.5, f = { g = false } }
    assert.same(v, cjson.decode(json.encode(v)))
  end)

  it("writes integral floats as integers and non-finite numbers as null", function()
    assert.equal("[5,1.5,null,null]", json.encode({ 5.0, 1.5, 0 / 0, math.huge }))
  end)

  it("escapes control characters and replaces invalid UTF-8", function()
    assert.equal('"\\u0001\\t\\u007f"', json.encode("\1\t\127"))
    assert.equal('"a\u{FFFD}b"', json.encode("a\255b"))
    assert.equal('"été"', json.encode("été"))
  end)

  it("decodes, reporting errors as values", function()
    assert.same({ x = { 1, 2 } }, json.decode('{"x":[1,2]}'))
    local v, err = json.decode('{"x":')
    assert.is_nil(v)
    assert.is_string(err)
    assert.is_nil(json.decode(("["):rep(100) .. ("]"):rep(100)))
  end)

  -- Found by bench/fuzz.lua: cjson took these by default, and an id NaN
  -- was answered with id null.
  it("decodes JSON only: no NaN, Infinity or hex numbers", function()
    for _, s in ipairs { "NaN", "[Infinity]", '{"id":-Infinity}', "0x10", "[-nan]", "+1", "01" } do
      local v, err = json.decode(s)
      assert.is_nil(v, s)
      assert.is_string(err, s)
    end
    assert.equal(1e300, json.decode("1e300"))
  end)

  it("encodes the same in C and in Lua", function()
    local v = { a = { 1, 2.5, "x\0y", json.array(), {} }, b = "caf\195\169 \255", c = json.null, d = -0.0 }
    assert.same(cjson.decode(json.lua_encode(v)), cjson.decode(json.encode(v)))
    for _, s in ipairs { "plain", "quo\"te", "back\\slash", "\1\31\127", "\240\159\152\128", "\237\160\128" } do
      assert.equal(json.lua_encode(s), json.encode(s))
    end
  end)

  it("normalizes decoded values: integers, empty arrays under known keys", function()
    require "bgproc.tools" -- declares the tools' array keys
    local v = json.normalize(json.decode('{"pid":12.0,"tags":{},"x":{"argv":[]},"f":1.5}'))
    assert.equal("integer", math.type(v.pid))
    assert.equal("[]", json.encode(v.tags))
    assert.equal("[]", json.encode(v.x.argv))
    assert.equal(1.5, v.f)
  end)

  it("knows the array keys the tools and the protocol declare, and no others", function()
    require "bgproc.tools"
    require "bgproc.rpc"
    for _, k in ipairs { "tags", "argv", "allTags", "processIds", "processes", "killed", "alreadyFinished",
                         "errors", "escaped", "done", "pending", "tools", "content", "events", "sessionIds" } do
      assert.is_true(json.ARRAY_KEYS[k], k)
    end
    for _, k in ipairs { "env", "notes", "pid", "output" } do assert.is_nil(json.ARRAY_KEYS[k], k) end
    local v = json.normalize(json.decode('{"env":{},"notes":{}}'))
    assert.equal('{}', json.encode(v.env))
  end)

  it("refuses absurd nesting when encoding", function()
    local t = {}
    local cur = t
    for _ = 1, 100 do cur.x = {} cur = cur.x end
    assert.has_error(function() json.encode(t) end, "json: nesting too deep")
  end)
end)
