-- The pure parts of `bgproc top`: its screens as text (cli/top/layout),
-- the cells and order of jobs (cli/top/jobs), display widths
-- (cli/top/display) and the decoding of keys (cli/top/term), checked on
-- their own at every width, without a terminal.
local display = require "bgproc.cli.top.display"
local jobs = require "bgproc.cli.top.jobs"
local layout = require "bgproc.cli.top.layout"
local term = require "bgproc.cli.top.term"

-- A line as the terminal shows it: SGR codes removed.
local function plain(line)
  return (line:gsub("\27%[[0-9;]*m", ""))
end

local NOW = 1800000000 -- 2027-01-15T08:00:00Z

local function iso(epoch)
  return os.date("!%Y-%m-%dT%H:%M:%S.000Z", epoch)
end

local function job(id, over)
  local p = { id = id, name = "job " .. id, status = "running", pid = 1000 + #id, startedAt = iso(NOW - 90),
              tags = {}, lastLine = "last line of " .. id, command = "sleep 600" }
  for k, v in pairs(over or {}) do p[k] = v end
  return p
end

local function ids(list)
  local out = {}
  for i, p in ipairs(list) do out[i] = p.id end
  return out
end

local function model(procs, over)
  local m = { procs = procs, total = #procs, running = #procs, sort = "cpu", filter = "", selected = 1, offset = 1,
              now = NOW, interval = 1 }
  for k, v in pairs(over or {}) do m[k] = v end
  return m
end

describe("bgproc.cli.top.display, jobs and layout", function()
  describe("display width and clipping", function()
    it("counts columns, not bytes: accents one, CJK two, combining marks none", function()
      assert.equal(5, display.width("hello"))
      assert.equal(7, display.width("ünïcode"))
      assert.equal(4, display.width("漢字"))
      assert.equal(1, display.width("e\u{301}"))
      assert.equal(2, display.width("🚀"))
    end)

    it("cuts at the width with an ellipsis, never splitting a character", function()
      assert.equal("hello", display.clip("hello", 5))
      assert.equal("hel…", display.clip("hello", 4))
      assert.equal("…", display.clip("hello", 1))
      assert.equal("", display.clip("hello", 0))
      assert.equal("漢…", display.clip("漢字漢字", 4)) -- a wide character does not fit the last column
      assert.equal("ab漢…", display.clip("ab漢字漢字", 5))
      assert.equal("ü…", display.clip("ünïcode", 2))
    end)

    it("pads to an exact width, on the left for right-aligned cells", function()
      assert.equal("ab   ", display.fit("ab", 5))
      assert.equal("   ab", display.fit("ab", 5, true))
      assert.equal("漢字 ", display.fit("漢字", 5))
    end)

    it("makes a job's text safe: no escape reaches the terminal, tabs become spaces, bad UTF-8 is replaced", function()
      assert.equal("?[31mred?[0m", display.sanitize("\27[31mred\27[0m"))
      assert.equal("a  b", display.sanitize("a\tb"))
      assert.equal("a\u{FFFD}b", display.sanitize("a\255b"))
      assert.equal("", display.sanitize(nil))
    end)
  end)

  describe("cells", function()
    it("prints memory in human units", function()
      assert.equal("-", jobs.bytes(nil))
      assert.equal("512B", jobs.bytes(512))
      assert.equal("1.5K", jobs.bytes(1536))
      assert.equal("21M", jobs.bytes(21688320))
      assert.equal("3.0G", jobs.bytes(3 * 1024 ^ 3))
    end)

    it("prints ports once each, udp marked, '-' when unknown", function()
      assert.equal("-", jobs.ports(nil))
      assert.equal("", jobs.ports({}))
      assert.equal("3000,5173,53/udp", jobs.ports {
        { protocol = "tcp", address = "0.0.0.0", port = 3000 }, { protocol = "tcp", address = "::", port = 3000 },
        { protocol = "tcp", address = "127.0.0.1", port = 5173 }, { protocol = "udp", address = "0.0.0.0", port = 53 },
      })
    end)

    it("prints ages in the largest whole unit, from ISO times in UTC whatever the local zone", function()
      assert.equal("45s", jobs.age(45))
      assert.equal("3m", jobs.age(200))
      assert.equal("2h", jobs.age(7300))
      assert.equal("4d", jobs.age(4 * 86400 + 5))
      assert.equal(0, jobs.epoch("1970-01-01T00:00:00Z"))
      assert.equal(NOW, jobs.epoch(iso(NOW)))
      assert.equal(951782400.5, jobs.epoch("2000-02-29T00:00:00.5Z"))
      assert.is_nil(jobs.epoch("yesterday"))
    end)
  end)

  describe("select", function()
    local records = {
      job("a", { name = "web", tags = { "Dev" }, cpuPercent = 5, memoryBytes = 100, startedAt = iso(NOW - 10) }),
      job("b", { name = "Api", cpuPercent = 50, memoryBytes = 300, startedAt = iso(NOW - 300) }),
      job("c", { name = "build", status = "failed", cpuPercent = 90, memoryBytes = 900, startedAt = iso(NOW - 30) }),
      job("d", { name = "db", cpuPercent = 1, memoryBytes = 200, startedAt = iso(NOW - 1000) }),
    }

    it("sorts by CPU and memory (highest first, a finished job's last sample counting for nothing)", function()
      assert.same({ "b", "a", "d", "c" }, ids(jobs.select(records, "", "cpu")))
      assert.same({ "b", "d", "a", "c" }, ids(jobs.select(records, "", "memory")))
    end)

    it("sorts by age (oldest first), name, and status (running first)", function()
      assert.same({ "d", "b", "c", "a" }, ids(jobs.select(records, "", "age")))
      assert.same({ "b", "c", "d", "a" }, ids(jobs.select(records, "", "name")))
      assert.equal("c", jobs.select(records, "", "status")[4].id)
    end)

    it("filters on a substring of the name, id or a tag, ignoring case", function()
      assert.same({ "a" }, ids(jobs.select(records, "WE", "cpu")))
      assert.same({ "a" }, ids(jobs.select(records, "dev", "cpu")))
      assert.same({ "c" }, ids(jobs.select(records, "BU", "cpu")))
      assert.same({}, ids(jobs.select(records, "nothing", "cpu")))
    end)
  end)

  describe("the list screen", function()
    local procs = {}
    for i = 1, 60 do
      procs[i] = job(("j%d"):format(i), {
        name = i % 7 == 0 and "漢字の名前 with a long name, longer than any column" or "job" .. i,
        cpuPercent = i / 3, memoryBytes = i * 1e6,
        ports = i % 5 == 0 and { { protocol = "tcp", address = "0.0.0.0", port = 3000 + i } } or {},
        lastLine = i % 3 == 0 and ("x"):rep(300) or "ready on http://localhost:" .. (3000 + i) .. " ✓",
      })
    end

    it("never makes a line wider than the screen, from 20 to 250 columns and 1 to 50 rows", function()
      for w = 20, 250, 11 do
        for _, h in ipairs { 1, 2, 3, 4, 5, 8, 10, 13, 30, 50 } do
          for _, color in ipairs { true, false } do
            local lines = layout.list(model(procs, { selected = 30, filter = "j", status = ("s"):rep(400) }),
              { width = w, height = h, color = color, marker = true })
            assert.is_true(#lines <= h, ("%d lines on %d rows"):format(#lines, h))
            for _, line in ipairs(lines) do
              assert.is_true(display.width(plain(line)) <= w,
                ("%d columns: a line of %d: %s"):format(w, display.width(plain(line)), plain(line)))
            end
          end
        end
      end
    end)

    it("fills the screen: title, keys, column titles, rows, status line", function()
      local lines = layout.list(model(procs), { width = 120, height = 30, color = false, marker = true })
      assert.equal(30, #lines)
      assert.matches("^60/60 running  sort: cpu", lines[1])
      assert.matches("q quit", lines[2])
      assert.matches("^ ID +NAME +STATUS +PID +CPU%% +MEM +PORTS +AGE +LAST LINE", lines[3])
      assert.matches("^>j1 +job1 +running", lines[4])
      assert.matches("^j1: sleep 600", lines[30])
    end)

    it("drops the last line first, then ports, age, memory, pid, as the width shrinks", function()
      local function titles(w)
        local lines = layout.list(model(procs), { width = w, height = 10, color = false, marker = true })
        return lines[3]
      end
      assert.matches("LAST LINE", titles(120))
      local seen = {} -- the widest screen without each column
      for w = 120, 20, -1 do
        local t = titles(w)
        for _, col in ipairs { "LAST LINE", "PORTS", "AGE", "MEM", "PID", "CPU%" } do
          if not t:find(col, 1, true) then seen[col] = seen[col] or w end
        end
      end
      assert.is_true(seen["LAST LINE"] > seen.PORTS and seen.PORTS > seen.AGE and seen.AGE > seen.MEM
        and seen.MEM > seen.PID and seen.PID > seen["CPU%"])
      local forty = titles(40)
      assert.matches("ID +NAME +STATUS", forty)
      assert.is_nil(forty:find("LAST LINE"))
    end)

    it("paints only with colour on: the status, the selected row in reverse", function()
      local coloured = table.concat((layout.list(model(procs), { width = 100, height = 10, color = true, marker = true })))
      assert.truthy(coloured:find("\27[7m", 1, true))
      assert.truthy(coloured:find("\27[32m", 1, true))
      local bare = table.concat((layout.list(model(procs), { width = 100, height = 10, color = false, marker = true })))
      assert.is_nil(bare:find("\27", 1, true))
    end)

    it("scrolls to keep the selected row on screen, as little as it must", function()
      local lines, offset, rows = layout.list(model(procs, { selected = 40, offset = 1 }),
        { width = 80, height = 12, color = false, marker = true })
      assert.equal(8, rows)
      assert.equal(33, offset)
      assert.matches("^>j40 ", lines[#lines - 1])
      local _, again = layout.list(model(procs, { selected = 36, offset = offset }),
        { width = 80, height = 12, color = false, marker = true })
      assert.equal(33, again)
    end)

    it("shows the filter being typed, a message, or says why nothing is listed", function()
      local lines = layout.list(model({}, { filter = "zz", prompt = "we" }),
        { width = 60, height = 8, color = false, marker = true })
      assert.matches("no job matches the filter", table.concat(lines, "\n"))
      assert.matches("^/we_", lines[#lines])
      lines = layout.list(model({}, { status = "kill j1: not_found" }), { width = 60, height = 8, color = false })
      assert.matches("no background processes", table.concat(lines, "\n"))
      assert.equal("kill j1: not_found", lines[#lines])
    end)

    it("prints every row without a height (--once), with no key help or status line", function()
      local lines = layout.list(model(procs), { width = 200, color = false, marker = false })
      assert.equal(62, #lines)
      assert.matches("^ID ", lines[2])
    end)
  end)

  describe("the logs screen", function()
    it("shows the last lines that fit, each cut at the width", function()
      local out = {}
      for i = 1, 50 do out[i] = ("line %d %s"):format(i, ("y"):rep(i)) end
      local lines = layout.logs({ id = "j1", name = "web", status = "running", output = table.concat(out, "\n") .. "\n" },
        { width = 30, height = 10, color = false })
      assert.equal(10, #lines)
      assert.matches("^logs of j1 web", lines[1])
      assert.matches("^line 43 ", lines[2])
      assert.matches("^line 50 ", lines[9])
      for _, l in ipairs(lines) do assert.is_true(display.width(l) <= 30) end
    end)
  end)
end)

describe("bgproc.cli.top.term keys", function()
  it("decodes arrows, pages, Home/End in both CSI and SS3 forms", function()
    assert.same({ "up", "down", "pgup", "pgdn", "home", "end", "up", "home", "end" },
      term.keys("\27[A\27[B\27[5~\27[6~\27[H\27[F\27OA\27[1~\27[4~"))
  end)

  it("tells Esc, Enter, Backspace and Ctrl-C; printable characters come as themselves", function()
    assert.same({ "q", "/", "w", "é", "enter", "backspace", "ctrl-c" }, term.keys("q/wé\r\127\3"))
    assert.same({ "esc" }, term.keys("\27"))
  end)

  it("drops what it does not know", function()
    assert.same({ "x" }, term.keys("\27[99~\1x\27[12"))
  end)
end)
