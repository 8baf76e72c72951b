-- bgproc.jsonenc: the C JSON encoder (also run under ASan and valgrind).
local enc = require "bgproc.jsonenc"
local cjson = require "cjson"

local ARRAY = {}

describe("bgproc.jsonenc", function()
  it("encodes scalars", function()
    assert.equal('"a\\"b\\\\c\\n\\t\\u0001"', enc.encode('a"b\\c\n\t\1'))
    assert.equal("12", enc.encode(12))
    assert.equal("12", enc.encode(12.0))
    assert.equal("1.5", enc.encode(1.5))
    assert.equal("null", enc.encode(0 / 0))
    assert.equal("null", enc.encode(math.huge))
    assert.equal("true", enc.encode(true))
    assert.equal("null", enc.encode(nil))
    assert.equal("null", enc.encode(cjson.null))
    assert.equal("null", enc.encode(print))
  end)

  it("tells arrays from objects, by metatable or by shape", function()
    assert.equal("[1,2,3]", enc.encode({ 1, 2, 3 }, ARRAY))
    assert.equal("[]", enc.encode(setmetatable({}, ARRAY), ARRAY))
    assert.equal("{}", enc.encode({}, ARRAY))
    assert.equal('{"1":"a","x":1}', enc.encode({ "a", x = 1 }, ARRAY):gsub('"x":1,"1":"a"', '"1":"a","x":1'))
    assert.same({ a = { 1, { b = false } } }, cjson.decode(enc.encode({ a = { 1, { b = false } } }, ARRAY)))
  end)

  it("writes valid UTF-8 whatever the input", function()
    assert.equal('"caf\195\169"', enc.encode("caf\195\169"))
    assert.equal('"\240\159\152\128"', enc.encode("\240\159\152\128"))
    assert.equal('"a\239\191\189b"', enc.encode("a\255b"))
    assert.equal('"\239\191\189\239\191\189"', enc.encode("\237\160")) -- a lone surrogate half
    assert.equal('"\239\191\189"', enc.encode("\192")) -- truncated / overlong
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local s = enc.encode(table.concat(bytes):rep(100))
    assert.truthy(utf8.len(s))
    assert.is_string(cjson.decode(s))
  end)

  it("makes text valid UTF-8 with utf8(), like Lua's strict decoder would, byte by byte", function()
    local valid = "ok é ✓ 🎉"
    assert.is_true(rawequal(valid, enc.utf8(valid))) -- valid text is not copied
    assert.equal("a\u{FFFD}b\u{FFFD}\u{FFFD}c", enc.utf8("a\255b\192\193c"))
    assert.equal("\u{FFFD}\u{FFFD}\u{FFFD} \u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}", enc.utf8("\237\160\128 \244\144\128\128"))
    assert.equal("caf\u{FFFD}", enc.utf8("caf\195"))
    -- each invalid byte of 1 MiB of every byte value becomes one U+FFFD
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local all = table.concat(bytes):rep(4096)
    local out = enc.utf8(all)
    assert.truthy(utf8.len(out))
    local _, bad = out:gsub("\u{FFFD}", "")
    assert.equal(4096 * 128, bad) -- 128-255 never form a sequence here (each lead meets a lead)
  end)

  it("raises on nesting deeper than 64, and on a missing value", function()
    local t = {}
    local cur = t
    for _ = 1, 70 do cur[1] = {} cur = cur[1] end
    assert.has_error(function() enc.encode(t, ARRAY) end, "json: nesting too deep")
    assert.has_error(function() enc.encode() end)
  end)

  it("encodes big values", function()
    local big = ("x"):rep(1 << 20)
    assert.equal(#big + 2, #enc.encode(big))
    local list = {}
    for i = 1, 10000 do list[i] = { id = i, name = "n" .. i } end
    assert.equal(10000, #cjson.decode(enc.encode(list, ARRAY)))
  end)
end)
