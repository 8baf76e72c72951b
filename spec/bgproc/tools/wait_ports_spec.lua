-- Waits and readiness by port and URL (engine/probes.lua), and the
-- ports, CPU and memory of records (engine/metrics.lua).
local h = require "helpers"

local SERVER = h.root .. "/spec/fixtures/http_server.py"
local LISTEN = h.root .. "/spec/fixtures/listen.lua"

describe("ports, URLs and usage", function()
  after_each(function() h.cleanup() end)

  local function start(m, args) return h.ok(m, "createBackgroundProcess", args) end

  -- A job's first output line as a number (the fixtures print their port).
  local function port_of(m, id)
    local w = h.ok(m, "waitForBackgroundProcess", { processId = id, ["until"] = "output", pattern = "^[0-9]+",
                                                    timeoutMs = 15000 })
    assert.is_true(w.matched, "the fixture printed its port")
    return tonumber(w.line:match("^(%d+)"))
  end

  local function http(m, mode, extra)
    local args = { argv = { "python3", SERVER, "127.0.0.1", mode } }
    for k, v in pairs(extra or {}) do args[k] = v end
    local r = start(m, args)
    return r, port_of(m, r.id)
  end

  it("waits until a job (or a process of its group) listens on any port, or on one", function()
    local m = h.manager()
    -- (a background command's stdin is /dev/null unless given: fd 3 holds the pipe)
    local r = start(m, { command = "exec 3<&0; " .. h.lua .. " " .. LISTEN .. " tcp4 udp6 0<&3 & wait", stdin = "pipe" })
    local w = h.ok(m, "waitForBackgroundProcess", { processId = r.id, ["until"] = "port", timeoutMs = 15000 })
    assert.is_true(w.matched)
    assert.is_false(w.timedOut)
    -- the fixture prints its ports once both are open (the wait may come first)
    local printed = h.ok(m, "waitForBackgroundProcess", { processId = r.id, ["until"] = "output",
                                                          pattern = "^[0-9]+ [0-9]+$", timeoutMs = 15000 })
    assert.is_true(printed.matched)
    local ports = {}
    for p in printed.line:gmatch("%d+") do ports[#ports + 1] = tonumber(p) end
    local w2 = h.ok(m, "waitForBackgroundProcess", { processId = r.id, ["until"] = "port", port = ports[2],
                                                     timeoutMs = 15000 })
    assert.equal(ports[2], w2.port.port)
    assert.equal("udp", w2.port.protocol)
    assert.not_equal(r.pid, w2.port.pid, "the listener is the shell's child")
    local g = h.ok(m, "getBackgroundProcess", { processId = r.id })
    local got = {}
    for _, p in ipairs(g.ports) do got[#got + 1] = p.protocol .. ":" .. p.port end
    table.sort(got)
    local want = { "tcp:" .. ports[1], "udp:" .. ports[2] }
    table.sort(want)
    assert.same(want, got)
  end)

  it("waits until a URL answers below 500; a 500 keeps it waiting", function()
    local m = h.manager()
    local r, port = http(m, "http")
    local base = "http://localhost:" .. port
    local w = h.ok(m, "waitForBackgroundProcess", { processId = r.id, ["until"] = "url", url = base .. "/missing",
                                                    timeoutMs = 10000 })
    assert.is_true(w.matched)
    assert.matches("answered 404", w.line)
    local w5 = h.ok(m, "waitForBackgroundProcess", { processId = r.id, ["until"] = "url", url = base .. "/boom",
                                                     timeoutMs = 500 })
    assert.is_true(w5.timedOut)
    assert.is_false(w5.matched)
  end)

  it("looks at a URL less and less often: a wait does not flood the server's log", function()
    local m = h.manager()
    local r, port = http(m, "http", { env = { HTTP_LOG = "1" } })
    local w = h.ok(m, "waitForBackgroundProcess", { processId = r.id, ["until"] = "url",
                                                    url = ("http://127.0.0.1:%d/boom"):format(port), timeoutMs = 3000 })
    assert.is_true(w.timedOut)
    local _, gets = h.ok(m, "getBackgroundProcess", { processId = r.id }).output:gsub("GET /boom", "")
    -- every 100 ms at first, then half as often again each time, at most a
    -- second apart: 8 in 3 s (one a tick, 100 ms apart, would be 30)
    assert.is_true(gets >= 3 and gets <= 12, gets .. " GETs in 3 s")
  end)

  it("a port or url wait on a job that exits ends with its exit, not a timeout", function()
    local m = h.manager()
    for _, args in ipairs { { ["until"] = "port" }, { ["until"] = "url", url = "http://127.0.0.1:9/" } } do
      local r = start(m, { argv = { "sh", "-c", "exit 4" } })
      args.processId, args.timeoutMs = r.id, 20000
      local w = h.ok(m, "waitForBackgroundProcess", args)
      assert.is_false(w.timedOut)
      assert.is_false(w.matched)
      assert.equal("failed", w.status)
      assert.equal(4, w.exitCode)
    end
  end)

  it("refuses a URL that is not http(s) on loopback, naming url", function()
    local m = h.manager()
    local r = start(m, { argv = { "sleep", "60" } })
    for _, u in ipairs { "ftp://localhost/", "http://example.com/", "http://10.0.0.1:80/", "localhost:3000" } do
      assert.matches("'url'", h.fails(m, "invalid_argument", "waitForBackgroundProcess",
        { processId = r.id, ["until"] = "url", url = u }), u)
      assert.matches("'readyUrl'", h.fails(m, "invalid_argument", "createBackgroundProcess",
        { argv = { "true" }, readyUrl = u }), u)
    end
    assert.matches("'port' is only for", h.fails(m, "invalid_argument", "waitForBackgroundProcess",
      { processId = r.id, port = 80 }))
    assert.matches("needs 'url'", h.fails(m, "invalid_argument", "waitForBackgroundProcess",
      { processId = r.id, ["until"] = "url" }))
  end)

  it("readyPort and readyUrl make a job ready, and tell its owner", function()
    local m = h.manager()
    local seen = {}
    m:on_event(function(ev) if ev.event == "ready" then seen[ev.processId] = ev.line end end)
    local by_port = start(m, { argv = { "python3", SERVER, "127.0.0.1", "http" }, readyPort = 0 })
    assert.is_false(by_port.ready)
    local w = h.ok(m, "waitForBackgroundProcess", { processId = by_port.id, ["until"] = "ready", timeoutMs = 15000 })
    assert.is_true(w.matched)
    assert.matches("^listening on tcp 127%.0%.0%.1:%d+$", w.line)
    assert.equal(w.line, seen[by_port.id])
    local port = tonumber(w.line:match(":(%d+)$"))
    local by_url = start(m, { argv = { "sleep", "60" }, readyUrl = "http://127.0.0.1:" .. port .. "/ok" })
    w = h.ok(m, "waitForBackgroundProcess", { processId = by_url.id, ["until"] = "ready", timeoutMs = 15000 })
    assert.is_true(w.matched, "another process's server answers the URL")
    assert.matches("answered 200", w.line)
    -- localhost is tried on ::1 too (a server may listen there only)
    local six = start(m, { argv = { "python3", SERVER, "::1", "http" } })
    local port6 = port_of(m, six.id)
    local by_name = start(m, { argv = { "sleep", "60" }, readyUrl = ("http://localhost:%d/ok"):format(port6) })
    w = h.ok(m, "waitForBackgroundProcess", { processId = by_name.id, ["until"] = "ready", timeoutMs = 15000 })
    assert.is_true(w.matched, "a server on ::1 only answers http://localhost")
    assert.matches("give one of", h.fails(m, "invalid_argument", "createBackgroundProcess",
      { argv = { "true" }, readyPort = 1, readyPattern = "x" }))
  end)

  it("records carry CPU, memory and ports while running; a busy job's CPU shows", function()
    local m = h.manager()
    local busy = start(m, { argv = { h.lua, "-e", "while true do end" } })
    assert.is_number(h.ok(m, "getBackgroundProcess", { processId = busy.id }).cpuPercent, "from the first sample")
    local g
    assert.is_true(m:run_until(function()
      g = h.ok(m, "getBackgroundProcess", { processId = busy.id, lines = 0 })
      return (g.cpuPercent or 0) > 20 and g.cpuMs > 100
    end, 15000), "cpuPercent of a busy loop rises")
    assert.is_true(g.memoryBytes > 0)
    assert.is_true(g.memoryPeakBytes >= g.memoryBytes)
    assert.same({}, g.ports)
    local l = h.ok(m, "listBackgroundProcesses", {})
    assert.is_number(l.processes[1].cpuPercent)
    h.ok(m, "killProcesses", { processId = busy.id, graceMs = 0 })
    local fin = h.ok(m, "getBackgroundProcess", { processId = busy.id })
    assert.is_nil(fin.ports, "no ports once ended")
    assert.is_nil(fin.memoryBytes, "nor what it used at one moment")
    assert.is_nil(fin.cpuPercent)
    assert.is_number(fin.memoryPeakBytes)
    assert.is_true(fin.cpuMs > 100, "the last CPU seen stays")
  end)

  it("samples at most once a second per job", function()
    local m = h.manager()
    local r = start(m, { argv = { "sleep", "60" } })
    h.ok(m, "getBackgroundProcess", { processId = r.id })
    local at = m:get(r.id).m.at
    for _ = 1, 50 do h.ok(m, "listBackgroundProcesses", {}) end
    assert.equal(at, m:get(r.id).m.at)
  end)

  it("memoryMax stops a job that grows past it: failed, stopReason memory", function()
    local m = h.manager()
    local seen
    m:on_event(function(ev) if ev.event == "ended" then seen = ev end end)
    local r = start(m, { argv = { h.lua, "-e", "local t = {} for i = 1, 1e8 do t[i] = i end" },
                         memoryMax = 64 * 1024 * 1024 })
    local w = h.ok(m, "waitForBackgroundProcess", { processId = r.id, timeoutMs = 30000 })
    assert.equal("failed", w.status)
    assert.equal("memory", w.stopReason)
    assert.matches("memoryMax", w.error)
    assert.is_true(w.memoryPeakBytes > 64 * 1024 * 1024)
    assert.is_true(m:run_until(function() return seen ~= nil end, 5000))
    assert.is_true(require("bgproc.engine.notices").wanted(seen), "the owner is told")
    assert.matches(">= 1048576", h.fails(m, "invalid_argument", "createBackgroundProcess",
      { argv = { "true" }, memoryMax = 1024 }))
  end)
end)
