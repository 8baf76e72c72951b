-- bgproc.lib.text: output made readable and valid UTF-8.
local text = require "bgproc.lib.text"

describe("bgproc.lib.text", function()
  it("strips ANSI colours, cursor moves, titles and links", function()
    assert.equal("red plain", text.strip_ansi("\27[31mred\27[0m plain"))
    assert.equal("ab", text.strip_ansi("a\27[2K\27[1Gb"))
    assert.equal("title gone", text.strip_ansi("\27]0;my title\7title gone"))
    assert.equal("link", text.strip_ansi("\27]8;;http://x\27\\link\27]8;;\27\\"))
    assert.equal("x", text.strip_ansi("\27(Bx"))
  end)

  it("collapses carriage-return progress bars to their last state", function()
    assert.equal("100%\ndone\n", text.collapse_cr("10%\r50%\r100%\ndone\n"))
    assert.equal("a\nb\n", text.collapse_cr("a\r\nb\r\n"))
    assert.equal("final", text.collapse_cr("one\rtwo\rfinal"))
  end)

  it("replaces invalid UTF-8 and NUL-free binary stays as it is", function()
    assert.equal("a\u{FFFD}b\u{FFFD}\u{FFFD}c", text.utf8("a\255b\192\193c"))
    assert.equal("ok é", text.utf8("ok é"))
    local bin = ""
    for i = 0, 255 do bin = bin .. string.char(i) end
    assert.truthy(utf8.len(text.utf8(bin)))
  end)

  it("splits lines and finds the last one", function()
    assert.same({ "a", "", "b" }, text.lines("a\n\nb"))
    assert.same({ "a" }, text.lines("a\n"))
    assert.equal("b", text.last_line("a\nb\n\n  \n"))
    assert.equal("xxx…", text.last_line("xxxxxxx", 3))
    assert.is_nil(text.last_line("\n\n"))
  end)

  -- regression: "[^\n]*$" and "[^\n]*\r" patterns took time quadratic in
  -- a line's length: a tail of a 50 MB line took 25 s, stalling the daemon
  it("takes time linear in the length of a line with no end", function()
    local long = ("x"):rep(8 << 20)
    local t0 = os.clock()
    assert.equal(1, #text.lines(long))
    assert.equal(#long, text.partial_len(long))
    assert.equal(#long, #text.collapse_cr("a\r\n" .. long) - 2)
    assert.equal(#long + 1, text.incomplete_tail(long .. "\r", true))
    assert.is_true(os.clock() - t0 < 2, "took " .. (os.clock() - t0) .. " s")
  end)

  it("holds back a progress bar's line and a CR that a \\n may follow, when collapsing", function()
    assert.equal(0, text.incomplete_tail("done\n50%"))
    assert.equal(0, text.incomplete_tail("done\n50%", true))
    assert.equal(4, text.incomplete_tail("done\n\r50%", true))
    assert.equal(4, text.incomplete_tail("done\none\r", true))
    assert.equal(0, text.incomplete_tail("done\none\r"))
  end)
end)
