-- Benchmarks of the interfaces: the CLI, the MCP server and the daemon
-- under many clients. Each runs against a private daemon (its own socket
-- in a temporary directory), started and stopped by the bench.
local uv = require "luv"
local core = require "bgproc.core"
local json = require "bgproc.lib.json"
local common = require "common"

local benches = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local ROOT = uv.fs_realpath(here .. "/..")
local BIN = ROOT .. "/bin/bgproc"

local function private_env()
  local dir = os.tmpname()
  os.remove(dir)
  assert(uv.fs_mkdir(dir, tonumber("700", 8)))
  local cfgpath = dir .. "/config.lua"
  common.write_file(cfgpath, "return { plugins = {}, maxRunning = 2000 }\n")
  local env = {
    BGPROC_SOCKET = dir .. "/d.sock", BGPROC_CONFIG = cfgpath, XDG_STATE_HOME = dir .. "/state",
    LUA_PATH_5_4 = package.path, LUA_CPATH_5_4 = package.cpath,
  }
  return dir, env
end

-- Run argv to completion with env; returns wall ms, stdout.
local function run(loop, argv, env)
  local t0 = uv.hrtime()
  local job = assert(loop:spawn { argv = argv, env = env })
  common.finish(loop, job)
  local ms = (uv.hrtime() - t0) / 1e6
  local code = job:exit()
  assert(code == 0, table.concat(argv, " ") .. " failed: " .. (job:read(0)))
  return ms, (job:read(0, nil, "stdout"))
end

local function with_daemon(fn)
  local dir, env = private_env()
  for k, v in pairs(env) do uv.os_setenv(k, v) end
  local client = require "bgproc.client"
  local c = assert(client.connect { socket = env.BGPROC_SOCKET })
  local res = table.pack(pcall(fn, c, env, dir))
  c:call("daemon/stop", {}, 30000)
  c:close()
  client.pump(function() return not uv.fs_stat(env.BGPROC_SOCKET) end, 30000)
  os.execute("rm -rf " .. dir)
  assert(res[1], res[2])
  return table.unpack(res, 2, res.n)
end

local function start_jobs(c, n, sid)
  for i = 1, n do
    local r, err = c:call("tools/call", { name = "createBackgroundProcess", sessionId = sid,
      arguments = { argv = { "sleep", "1000" }, name = "job" .. i, tags = { i % 2 == 0 and "even" or "odd" } } })
    assert(r, err and err.message)
  end
end

-- A whole `bgproc --json list` process with 100 jobs in the daemon.
benches.cli_list = {
  title = "cli_list: a whole `bgproc --json list` process, 100 jobs",
  unit = "ms",
  target = "median <= 30 ms",
  lower_is_better = true,
  params = { jobs = 100, runs = 30 },
  run = function(p)
    return with_daemon(function(c, env)
      start_jobs(c, p.jobs, "bench")
      local loop = core.new()
      local times = {}
      for i = 1, p.runs do
        local ms, out = run(loop, { "lua5.4", BIN, "--json", "list" }, env)
        times[i] = ms
        assert(json.decode(out).count == p.jobs)
      end
      loop:close()
      return common.median(times)
    end)
  end,
  -- the floor: starting lua5.4 and loading luv, with no work
  baseline_title = "`lua5.4 -e \"require 'luv'\"`: starting Lua with luv, no work (not C)",
  baseline_fn = function(p)
    local loop = core.new()
    local times = {}
    for i = 1, p.runs do times[i] = run(loop, { "lua5.4", "-e", "require 'luv'" }, {}) end
    loop:close()
    return common.median(times)
  end,
  seed_na = "n/a (no CLI)",
  ok = function(r) return r.value <= 30 end,
}

-- listBackgroundProcesses round trips over stdio with 100 jobs.
benches.mcp_call = {
  title = "mcp_call: listBackgroundProcesses over MCP stdio, 100 jobs",
  unit = "ms",
  target = "median <= 2 ms",
  lower_is_better = true,
  params = { jobs = 100, calls = 200 },
  run = function(p)
    return with_daemon(function(_, env)
      local loop = core.new()
      local mcp = assert(loop:spawn { argv = { "lua5.4", BIN, "mcp" }, env = env, stdin = "pipe" })
      local cursor, buf, next_id = 0, "", 0
      local function request(method, params)
        next_id = next_id + 1
        mcp:write(json.encode { jsonrpc = "2.0", id = next_id, method = method, params = params } .. "\n")
        while true do
          local nl = buf:find("\n", 1, true)
          if nl then
            local line = buf:sub(1, nl - 1)
            buf = buf:sub(nl + 1)
            local msg = assert(json.decode(line))
            if msg.id == next_id then return msg end
          else
            loop:wait(100)
            local data, nxt = mcp:read(cursor, nil, "stdout")
            cursor = nxt
            buf = buf .. data
            assert(mcp:alive(), "the mcp server exited: " .. (mcp:read(0, nil, "stderr")))
          end
        end
      end
      request("initialize", { protocolVersion = "2025-11-25", capabilities = {}, clientInfo = { name = "bench", version = "1" } })
      for i = 1, p.jobs do
        request("tools/call", { name = "createBackgroundProcess", arguments = { argv = { "sleep", "1000" }, name = "j" .. i } })
      end
      for _ = 1, 20 do request("tools/call", { name = "listBackgroundProcesses", arguments = {} }) end -- warm up
      local ms = common.median_ms(p.calls, function()
        local r = request("tools/call", { name = "listBackgroundProcesses", arguments = {} })
        assert(r.result.structuredContent.count == p.jobs)
      end)
      mcp:close_stdin()
      while mcp:alive() do loop:wait(100) end
      loop:close()
      return ms
    end)
  end,
  seed = { bench = "list_call", params = { jobs = 100, calls = 200 },
    note = "no MCP server, plugin only; nearest: its list tool's execute called in-process, 100 jobs" },
  ok = function(r) return r.value <= 2 end,
}

-- 50 clients at once, each starting and killing 20 jobs.
benches.daemon_clients = {
  title = "daemon_clients: 50 clients x 20 start+kill at once",
  unit = "ms",
  target = "all answered, 0 orphans",
  lower_is_better = true,
  params = { clients = 50, jobs = 20 },
  run = function(p)
    return with_daemon(function(c, env)
      local script = [[
        local client = require "bgproc.client"
        local c = assert(client.connect { autostart = false })
        local ok = 0
        for i = 1, JOBS do
          local r = c:call("tools/call", { name = "createBackgroundProcess",
            arguments = { command = "sleep 1000 & sleep 1000 & wait" } })
          if r then
            local k = c:call("tools/call", { name = "killProcesses", arguments = { processId = r.id, graceMs = 2000 } })
            if k and #k.killed == 1 then ok = ok + 1 end
          end
        end
        c:close()
        io.write(ok, "\n")
      ]]
      local loop = core.new()
      local t0 = uv.hrtime()
      local kids = {}
      for i = 1, p.clients do
        kids[i] = assert(loop:spawn { argv = { "lua5.4", "-e", (script:gsub("JOBS", p.jobs)) }, env = env })
      end
      local answered = 0
      for _, k in ipairs(kids) do
        common.finish(loop, k)
        local n = tonumber((k:read(0, nil, "stdout")):match("%d+"))
        if not n then io.stderr:write("client failed: ", (k:read(0, nil, "stderr")), "\n") end
        answered = answered + (n or 0)
      end
      local ms = (uv.hrtime() - t0) / 1e6
      loop:close()
      -- orphans: the daemon is the subreaper of its jobs, so anything left
      -- of them (alive or zombie) would be its child; only its guardian may be
      local status = assert(c:call("daemon/status", {}, 5000))
      local orphans = 0
      for _, comm in ipairs(common.children(status.pid, "comm")) do
        if comm ~= "bgproc-guardian" then orphans = orphans + 1 end
      end
      io.stderr:write(("daemon_clients: %d/%d kills answered, %d orphans, %.0f ms\n")
        :format(answered, p.clients * p.jobs, orphans, ms))
      assert(answered == p.clients * p.jobs, "not all answered")
      assert(orphans == 0, "orphans: " .. orphans)
      return ms, { answered = answered, calls = p.clients * p.jobs, orphans = orphans }
    end)
  end,
  seed_na = "n/a (no daemon)",
  ok = function(r) return r.value > 0 end,
}

-- `bgproc top` at 1 Hz over 500 jobs, against `bgproc ls` once a second
-- (bench/top.lua), on this file's private daemon.
benches.top = require "top" (with_daemon, start_jobs)

return benches
