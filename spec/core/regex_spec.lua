-- bgproc.regex: PCRE2 with JavaScript-style input, bounded matching.
local regex = require "bgproc.regex"

describe("bgproc.regex", function()
  it("matches with PCRE2 syntax", function()
    local re = assert(regex.new([[^\s*(error|warn(ing)?)\b:\s+\w+]]))
    assert.is_true(re:test("  warning: unused"))
    assert.is_false(re:test("info: fine"))
    assert.same({ 1, 17 }, { re:find("  warning: unused") })
  end)

  it("takes flags, and JavaScript's /body/flags form", function()
    assert.is_true(assert(regex.new("ERROR", "i")):test("an error"))
    assert.is_true(assert(regex.new("/ERROR/i")):test("an error"))
    assert.is_true(assert(regex.new("/ready on port \\d+/gi")):test("Ready on port 3000"))
    -- a slash inside without trailing flags is just a pattern
    assert.is_true(assert(regex.new("a/b")):test("xa/by"))
  end)

  it("reads \\u escapes as code points and matches UTF-8", function()
    assert.is_true(assert(regex.new("\\u00e9t\\u00e9")):test("un été"))
    assert.is_true(assert(regex.new("^.{3}$")):test("été"))
  end)

  it("never fails on invalid UTF-8 in the subject", function()
    local re = assert(regex.new("ok"))
    assert.is_true(re:test("\255\254 ok \192"))
    assert.is_false(re:test("\255\254\192"))
  end)

  it("returns an error naming the problem for a malformed pattern", function()
    local re, err = regex.new("(unclosed")
    assert.is_nil(re)
    assert.matches("missing closing parenthesis at offset 9", err)
    re, err = regex.new("x", "q")
    assert.is_nil(re)
    assert.matches("unknown regex flag 'q'", err)
  end)

  it("stops a catastrophic pattern with an error instead of hanging", function()
    local re = assert(regex.new("^(a+)+$"))
    local ok, err = re:test(("a"):rep(30) .. "b")
    assert.is_nil(ok)
    assert.matches("limit", err)
  end)

  it("finds from an offset and past the end", function()
    local re = assert(regex.new("o"))
    assert.same({ 8, 8 }, { re:find("hello world", 6) })
    assert.is_nil(re:find("hello", 10))
  end)

  it("raises on misuse", function()
    assert.has_error(function() regex.new() end)
    assert.has_error(function() assert(regex.new("x")):test(5 > 3) end)
  end)
end)
