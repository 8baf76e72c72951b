-- bgproc.regex: PCRE2 with JavaScript-style input, bounded matching.
local regex = require "bgproc.regex"
local uv = require "luv"

local function elapsed_since(t0) return (uv.hrtime() - t0) / 1e9 end

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
  describe("line search", function()
    -- The lines found as { start, stop, line, text }.
    local function found(list, s)
      local out = {}
      for i, l in ipairs(list) do out[i] = { l.start, l.stop, l.line, s:sub(l.start + 1, l.stop) } end
      return out
    end
    local function search(pattern, s, opts, flags)
      local re = assert(regex.new(pattern, flags or "m"))
      local list, more, searched = re:search(s, opts)
      assert(list, more)
      return found(list, s), more, searched
    end

    local tmp = {}
    local function tmpfile(data)
      local path = os.tmpname()
      tmp[#tmp + 1] = path
      local f = assert(io.open(path, "wb"))
      f:write(data)
      f:close()
      return path
    end
    after_each(function()
      for _, path in ipairs(tmp) do os.remove(path) end
      tmp = {}
    end)

    it("reports each matching line once: its bytes and its number", function()
      local s = "error one\nfine\nerror two error three\n\nlast error"
      local lines, more, searched = search("error", s)
      assert.same({
        { 0, 9, 1, "error one" },
        { 15, 36, 3, "error two error three" },
        { 38, 48, 5, "last error" },
      }, lines)
      assert.is_false(more)
      assert.equal(#s, searched)
      -- a trailing "\n" ends the last line, it starts no other
      assert.same({ { 0, 1, 1, "x" } }, (search("x", "x\n")))
      assert.same({}, (search("x", "")))
    end)

    it("sees empty lines and anchors ^ and $ on each line", function()
      local s = "a\n\nb\n\n"
      assert.same({ { 2, 2, 2, "" }, { 5, 5, 4, "" } }, (search("^$", s)))
      assert.same({ { 10, 13, 3, "foo" } }, (search("^foo$", "xfoo\nfoox\nfoo\n")))
      -- an empty match is a matching line: every line, none after the last
      assert.equal(4, #search("x*", s))
      -- without "m" ^ is the subject's start
      assert.same({ { 0, 3, 1, "foo" } }, (search("^foo", "foo\nfoo\n", nil, "")))
    end)

    it("keeps a CR in the line (CRLF output)", function()
      assert.same({ { 3, 5, 2, "b\r" } }, (search("b", "a\r\nb\r\n")))
      assert.same({}, (search("b$", "a\r\nb\r\n")))
      assert.same({ { 3, 5, 2, "b\r" } }, (search("b\\r?$", "a\r\nb\r\n")))
    end)

    it("reports a match that spans lines on the line where it starts", function()
      assert.same({ { 2, 3, 2, "b" } }, (search("b\\s+c", "a\nb\nc\nd")))
    end)

    it("stops at max and says whether another line matches", function()
      local s = "x1\nx2\ny\nx3\n"
      local lines, more, searched = search("x", s, { max = 2 })
      assert.same({ { 0, 2, 1, "x1" }, { 3, 5, 2, "x2" } }, lines)
      assert.is_true(more)
      assert.equal(11, searched) -- up to the end of the line that showed more
      lines, more, searched = search("x", s, { max = 3 })
      assert.equal(3, #lines)
      assert.is_false(more)
      assert.equal(#s, searched)
      lines, more = search("x", s, { max = 0 })
      assert.same({}, lines)
      assert.is_true(more)
      -- going on after the last line reported, numbered on
      lines, more = search("x", s, { offset = 6, line = 3 })
      assert.same({ { 8, 10, 4, "x3" } }, lines)
      assert.is_false(more)
      -- the default is 1000 lines
      lines, more = search("x", ("x\n"):rep(1001))
      assert.equal(1000, #lines)
      assert.is_true(more)
    end)

    it("starts at offset as if the subject began there, lines counted from the start", function()
      local s = "ab\ncd\nab\n"
      assert.same({ { 6, 8, 3, "ab" } }, (search("ab", s, { offset = 1 })))
      -- mid-line: that line starts at offset (^ matches there)
      assert.same({ { 1, 2, 1, "b" }, { 6, 8, 3, "ab" } }, (search("^a?b", s, { offset = 1 })))
      assert.same({ { 6, 8, 10, "ab" } }, (search("ab", s, { offset = 6, line = 10 })))
      assert.same({ { 6, 8, 11, "ab" } }, (search("ab", s, { offset = 5, line = 10 })))
      local lines, more, searched = search("ab", s, { offset = 100 })
      assert.same({}, lines)
      assert.is_false(more)
      assert.equal(0, searched)
      assert.same({ { 0, 2, 7, "ab" } }, (search("ab", s, { line = 7, max = 1 })))
    end)

    it("searches past invalid UTF-8", function()
      local s = "\255\254 ok \192\n\128\nzz ok\255"
      assert.same({ { 0, 7, 1, "\255\254 ok \192" }, { 10, 16, 3, "zz ok\255" } }, (search("ok", s)))
      assert.same({ { 2, 7, 2, "\195\169t\195\169" } }, (search("^.{3}$", "a\n\195\169t\195\169\n\255\n")))
    end)

    it("takes case-insensitive patterns", function()
      local s = "Error: x\nno\nWARN y\n"
      local re = assert(regex.new("/error|warn/im"))
      assert.same({ { 0, 8, 1, "Error: x" }, { 12, 18, 3, "WARN y" } }, found((re:search(s)), s))
    end)

    it("returns the match limit as an error", function()
      local re = assert(regex.new("^(a+)+$", "m"))
      local ok, err = re:search("ok\n" .. ("a"):rep(30) .. "b\n")
      assert.is_nil(ok)
      assert.matches("limit", err)
      ok, err = re:search_file(tmpfile(("a"):rep(30) .. "b\n"))
      assert.is_nil(ok)
      assert.matches("limit", err)
    end)

    it("finds in a file what it finds in its contents", function()
      local parts = {}
      for i = 1, 3000 do
        parts[i] = i % 7 == 0 and ("%d ERROR timeout %dms\r"):format(i, i) or (i % 11 == 0 and "" or "line " .. i)
      end
      local s = table.concat(parts, "\n") .. "\n\255 ERROR timeout 5ms"
      local path = tmpfile(s)
      local re = assert(regex.new("error.*timeout \\d+ms", "mi"))
      for _, opts in ipairs { {}, { max = 10 }, { offset = 1000 }, { offset = 1000, line = 1 }, { max = 5000 } } do
        assert.same({ re:search(s, opts) }, { re:search_file(path, opts) })
      end
      local list = re:search_file(path, { max = 5000 })
      assert.equal(3000 // 7 + 1, #list)
      assert.equal(3001, list[#list].line)
    end)

    it("reads a large file in pieces, lines longer than a piece included", function()
      -- pieces are 4 MiB: lines cross their ends, one line spans two
      local hay = ("hay "):rep(24)
      local parts = {}
      for i = 1, 45000 do parts[i] = i % 997 == 0 and ("needle %d"):format(i) or hay .. i end
      parts[#parts + 1] = ("x"):rep(9 << 19) .. " needle long"
      for i = 1, 3000 do parts[#parts + 1] = i % 997 == 0 and ("needle %d"):format(i) or hay .. i end
      local s = table.concat(parts, "\n")
      local path = tmpfile(s)
      local re = assert(regex.new("needle", "m"))
      local list = re:search_file(path)
      assert.equal(45000 // 997 + 1 + 3000 // 997, #list)
      assert.equal(45001, list[45000 // 997 + 1].line)
      assert.equal(45001 + 3000 // 997 * 997, list[#list].line)
      for _, opts in ipairs { {}, { max = 30 }, { offset = 4 << 20 } } do
        assert.same({ re:search(s, opts) }, { re:search_file(path, opts) })
      end
    end)

    it("finds nothing in an empty file, and names a file it cannot read", function()
      local re = assert(regex.new("x*", "m"))
      local list, more, searched = re:search_file(tmpfile(""))
      assert.same({}, list)
      assert.is_false(more)
      assert.equal(0, searched)
      local missing = os.tmpname()
      os.remove(missing)
      local ok, err, name = re:search_file(missing)
      assert.is_nil(ok)
      assert.equal("ENOENT", name)
      assert.matches("^ENOENT: open '" .. missing:gsub("%p", "%%%0") .. "'", err)
      ok, err, name = re:search_file("/")
      assert.is_nil(ok)
      assert.equal("EISDIR", name)
    end)

    it("searches many files on several threads, each as search_file would", function()
      local paths, want = {}, {}
      local re = assert(regex.new("needle \\d+", "m"))
      for i = 1, 40 do
        local lines = {}
        for j = 1, 200 + i do lines[j] = (j % (i + 3) == 0) and ("needle %d"):format(j) or "hay " .. j end
        paths[i] = tmpfile(table.concat(lines, "\n"))
        local list, more, searched = re:search_file(paths[i], { max = 20 })
        want[i] = { lines = list, more = more, searched = searched }
      end
      local missing = os.tmpname()
      os.remove(missing)
      paths[41], want[41] = missing, nil
      for _, threads in ipairs { 1, 3 } do
        local got = regex.search_files(re, paths, { max = 20, threads = threads })
        assert.equal(41, #got)
        for i = 1, 40 do assert.same(want[i], got[i]) end
        assert.equal("ENOENT", got[41].errname)
        assert.matches("^ENOENT: open", got[41].error)
      end
      -- a method too; a pattern is compiled with "m"
      assert.same(regex.search_files(re, paths), re:search_files(paths))
      local got = regex.search_files("^needle 4$", { paths[1] })
      assert.same({ { start = 18, stop = 26, line = 4 } }, got[1].lines)
      local ok, err = regex.search_files("(", paths)
      assert.is_nil(ok)
      assert.matches("missing closing parenthesis", err)
      assert.same({}, regex.search_files(re, {}))
      -- the match limit is that file's error
      local bad = assert(regex.new("^(a+)+$", "m"))
      got = bad:search_files { tmpfile(("a"):rep(30) .. "b"), paths[1] }
      assert.matches("limit", got[1].error)
      assert.same({}, got[2].lines)
    end)

    it("raises on bad arguments", function()
      local re = assert(regex.new("x", "m"))
      assert.has_error(function() re:search() end)
      assert.has_error(function() re:search({}) end)
      assert.has_error(function() re:search("x", 5) end)
      assert.has_error(function() re:search("x", { max = -1 }) end)
      assert.has_error(function() re:search("x", { max = 1.5 }) end)
      assert.has_error(function() re:search("x", { offset = "a" }) end)
      assert.has_error(function() re:search("x", { offset = -1 }) end)
      assert.has_error(function() re:search("x", { limit = 3 }) end,
        "search: unknown option 'limit' (expected max, offset, line, timeout_ms)")
      for _, bad in ipairs { -1, 1.5, "10", true, {} } do
        assert.has_error(function() re:search("x", { timeout_ms = bad }) end)
        assert.has_error(function() re:search_file("/x", { timeout_ms = bad }) end)
        assert.has_error(function() regex.search_files(re, {}, { timeout_ms = bad }) end)
      end
      assert.has_error(function() re:search("x", { timeout_ms = -1 }) end,
        "search: option 'timeout_ms' must be at least 0, got -1")
      assert.has_error(function() regex.search_files(re, {}, { timeout = 1 }) end,
        "search_files: unknown option 'timeout' (expected max, threads, timeout_ms)")
      assert.has_error(function() re:search_file() end)
      assert.has_error(function() re:search_file("/x", { line = -1 }) end)
      assert.has_error(function() regex.search_files(re) end)
      assert.has_error(function() regex.search_files(re, { 5 }) end)
      assert.has_error(function() regex.search_files(re, {}, { threads = 0 }) end)
      assert.has_error(function() regex.search_files(re, {}, { offset = 1 }) end)
      assert.has_error(function() regex.search_files(5, {}) end)
      assert.has_error(function() regex.new("x").search("x") end)
    end)

    describe("timeout_ms", function()
      -- Lines of 11 "x"s: (x+x+)+[yz] backtracks through every way to split
      -- each one before it fails (10 us a line with the JIT, 0.1 ms without
      -- it, some ms under valgrind), and finds a line ending in "y" (every
      -- 50th) at once. 8 MiB of them take 7 s with the JIT.
      local SLOW = "(x+x+)+[yz]"
      local function slow_subject(bytes)
        return (("xxxxxxxxxxx\n"):rep(49) .. "xxxxxxxxxxy\n"):rep(bytes // 600)
      end

      it("cuts a pathological search short, with the lines found so far", function()
        local s = slow_subject(8 << 20)
        local re = assert(regex.new(SLOW, "m"))
        local t0 = uv.hrtime()
        local list, more, searched, timedout = re:search(s, { timeout_ms = 1000, max = 1e9 })
        local took = elapsed_since(t0)
        assert.is_true(timedout)
        assert.is_true(more)
        assert.is_true(took >= 0.99 and took < 3, "took " .. took .. " s")
        assert.is_true(searched > 0 and searched < #s)
        assert.equal("\n", s:sub(searched, searched)) -- whole lines
        -- every matching line before searched, and none after
        assert.equal(searched // 12 // 50, #list)
        for i, l in ipairs(list) do
          assert.same({ start = (50 * i - 1) * 12, stop = (50 * i - 1) * 12 + 11, line = 50 * i }, l)
        end
        -- going on from there: the rest, numbered on (a fast pattern here)
        local fast = assert(regex.new("y$", "m"))
        local rest = fast:search(s, { offset = searched, max = 1e9 })
        assert.equal(#s // 12 // 50, #list + #rest)
        assert.equal(#list * 50 + 50, rest[1].line)
        -- a file, too
        local path = tmpfile(s)
        t0 = uv.hrtime()
        local flist, fmore, fsearched, ftimedout = re:search_file(path, { timeout_ms = 1000, max = 1e9 })
        took = elapsed_since(t0)
        assert.is_true(ftimedout)
        assert.is_true(fmore)
        assert.is_true(took < 3, "took " .. took .. " s")
        assert.equal("\n", s:sub(fsearched, fsearched))
        assert.equal(fsearched // 12 // 50, #flist)
        -- from an offset: searched counts from there
        list, more, searched, timedout = re:search(s, { offset = 12 * 1000, timeout_ms = 300, max = 1e9 })
        assert.is_true(timedout and more)
        assert.equal("\n", s:sub(12 * 1000 + searched, 12 * 1000 + searched))
        if list[1] then assert.same({ start = 1049 * 12, stop = 1049 * 12 + 11, line = 1050 }, list[1]) end
        assert.equal((1000 + searched // 12) // 50 - 20, #list)
      end)

      it("changes nothing for a search that ends in time", function()
        -- 3 MiB of 64-byte lines: the windows (1, 4, 16, 64 KiB, then 256
        -- KiB) all end at multiples of 1 KiB, where the lines around are
        -- needles: the first and the last of a window, and lookbehind
        -- across its start.
        local n = 3 * 16384
        local t, want = {}, {}
        for i = 1, n do
          local needle = i % 16 == 0 or i % 16 == 1
          t[i] = (needle and ("needle %d"):format(i) or ("hay %d"):format(i)) .. ("."):rep(63)
          t[i] = t[i]:sub(1, 63)
          if needle then want[#want + 1] = { start = (i - 1) * 64, stop = i * 64 - 1, line = i } end
        end
        local s = table.concat(t, "\n") -- the last line ends the subject
        local path = tmpfile(s)
        local function check(pattern, flags, expect)
          local re = assert(regex.new(pattern, flags))
          local list, more, searched, timedout = re:search(s, { max = 1e9 })
          assert.same(expect, list)
          assert.is_false(more)
          assert.equal(#s, searched)
          assert.is_false(timedout)
          assert.same({ list, more, searched, timedout }, { re:search(s, { max = 1e9, timeout_ms = 60000 }) })
          assert.same({ list, more, searched, timedout }, { re:search_file(path, { max = 1e9, timeout_ms = 60000 }) })
          for _, opts in ipairs { { max = 100 }, { offset = 5000 }, { offset = 87040, max = 10, line = 3 } } do
            local plain = { re:search(s, opts) }
            opts.timeout_ms = 60000
            assert.same(plain, { re:search(s, opts) })
            assert.same(plain, { re:search_file(path, opts) })
          end
        end
        check("needle", "m", want)
        check("^needle \\d+\\.+$", "m", want)
        local after = {} -- lines after one that ends in "."s: all but the first
        for i, l in ipairs(want) do if l.line > 1 then after[#after + 1] = want[i] end end
        check("(?<=\\.\\n)needle", "m", after)
        -- $ and \Z without "m": only at the subject's end, not a window's
        local last = { want[#want] }
        check("needle \\d+\\.*$", "", last)
        check("needle \\d+\\.*\\Z", "", last)
      end)

      it("bounds search_files as a whole: files cut short, files not started", function()
        local path = tmpfile(slow_subject(8 << 20))
        local small = tmpfile("xxxxxxxxxxy\nxx\n")
        local re = assert(regex.new(SLOW, "m"))
        local t0 = uv.hrtime()
        local got = regex.search_files(re, { path, path, path, path, path },
          { timeout_ms = 1000, threads = 2, max = 1e9 })
        local took = elapsed_since(t0)
        assert.is_true(took < 3, "took " .. took .. " s")
        assert.equal(5, #got)
        local cut, unstarted = 0, 0
        for _, r in ipairs(got) do
          assert.is_true(r.timedOut)
          assert.is_true(r.more)
          if r.searched == 0 and #r.lines == 0 then
            unstarted = unstarted + 1
            assert.same({ lines = {}, more = true, searched = 0, timedOut = true }, r)
          else
            cut = cut + 1
            assert.equal(r.searched // 12 // 50, #r.lines)
          end
        end
        assert.is_true(cut >= 1 and cut <= 2, "cut " .. cut)
        assert.is_true(unstarted >= 3, "unstarted " .. unstarted)
        -- in time: as without it, no timedOut
        local want = regex.search_files(re, { small, small })
        assert.same({ lines = { { start = 0, stop = 11, line = 1 } }, more = false, searched = 15 }, want[1])
        assert.same(want, regex.search_files(re, { small, small }, { timeout_ms = 60000 }))
        assert.same(want, regex.search_files(SLOW, { small, small }, { timeout_ms = 60000, threads = 1 }))
      end)
    end)
  end)
end)
