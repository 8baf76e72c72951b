-- bgproc.engine.config: defaults, then the user's file, then what the
-- embedder passes to bgproc.new{}; every value checked, every error naming
-- the source, the field and what was expected. Real files in a temporary
-- directory; what depends on the environment (XDG_*, HOME, BGPROC_CONFIG,
-- BGPROC_CGROUP) runs in a child lua5.4 with that environment.
local h = require "helpers"
local core = require "bgproc.core"
local cjson = require "cjson"
local config = require "bgproc.engine.config"

local dirs = {}
local function tmpdir()
  local d = h.tmpdir()
  dirs[#dirs + 1] = d
  return d
end

-- Write a config file; returns its path.
local function file(dir, name, text)
  local path = dir .. "/" .. name
  h.write_file(path, text)
  return path
end

-- config.load that must fail; returns the message.
local function load_fails(opts)
  local ok, err = pcall(config.load, opts)
  assert.is_false(ok, "config.load should have failed")
  assert.is_string(err)
  return err
end

-- Run script in a child lua5.4 with env (false removes a variable): its
-- stdout decoded as JSON (the script prints one JSON value).
local function in_child(script, env)
  local loop = core.new()
  local job = assert(loop:spawn { argv = { h.lua, "-e", script }, env = h.lua_env(env) })
  h.finish(loop, job, 10000)
  local out, err = (job:read(0, nil, "stdout")), (job:read(0, nil, "stderr"))
  local code = job:exit()
  loop:close()
  assert(code == 0, "the child failed: " .. err .. out)
  return cjson.decode(out)
end

-- The variables that choose files: all unset unless a test sets them.
local function env(extra)
  local e = { XDG_CONFIG_HOME = false, XDG_STATE_HOME = false, BGPROC_CONFIG = false, BGPROC_CGROUP = false,
              HOME = "/nonexistent/bgproc-spec-home" } -- never the user's own config
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local WHERE = [[
  local config = require "bgproc.engine.config"
  local paths = require "bgproc.lib.paths"
  local cfg = config.load()
  print(require("cjson").encode { dir = paths.config_dir() or false, state = paths.state_dir(),
    source = cfg.source, maxRunning = cfg.maxRunning, cgroup = cfg.cgroup == nil and "unset" or cfg.cgroup })
]]

describe("bgproc.engine.config", function()
  after_each(function()
    for i = #dirs, 1, -1 do
      h.sh("rm -rf " .. dirs[i])
      dirs[i] = nil
    end
    h.cleanup()
  end)

  describe("config.load", function()
    it("gives the defaults for an empty table, as copies", function()
      local cfg = config.load { config = {} }
      assert.equal("(table)", cfg.source)
      for k, v in pairs(config.defaults) do assert.same(v, cfg[k], k) end
      assert.equal(3000, cfg.graceMs)
      assert.same({ maxFinished = 1000, maxAgeMs = 86400000, maxDiskBytes = 1073741824 }, cfg.retention)
      -- changing one configuration changes neither the defaults nor another
      cfg.retention.maxFinished = 1
      table.insert(cfg.plugins, "x")
      assert.equal(1000, config.defaults.retention.maxFinished)
      assert.same({ "autotag", "stall", "restart" }, config.defaults.plugins)
      assert.equal(1000, config.load({ config = {} }).retention.maxFinished)
    end)

    it("merges tables key by key, replaces lists and scalars, and lets bgproc.new's options win", function()
      local cfg = config.load {
        config = { graceMs = 10, retention = { maxFinished = 5 }, plugins = { "stall" },
                   restart = { backoffMs = 7 } },
        graceMs = 20, retention = { maxAgeMs = 60 },
      }
      assert.equal(20, cfg.graceMs)
      assert.same({ maxFinished = 5, maxAgeMs = 60, maxDiskBytes = 1073741824 }, cfg.retention)
      assert.same({ "stall" }, cfg.plugins)
      assert.same({ backoffMs = 7 }, cfg.restart) -- a plugin's options pass through
      assert.same({}, config.load({ config = { plugins = {} } }).plugins) -- an empty list is a list
      -- an empty table of named keys changes none of them
      assert.same(config.defaults.retention, config.load({ config = { retention = {} } }).retention)
      assert.same({ maxFinished = 2, maxAgeMs = 86400000, maxDiskBytes = 1073741824 },
        config.load({ config = { retention = { maxFinished = 2 } }, retention = {} }).retention)
    end)

    it("keeps bgproc.new's tools out of the configuration plugins see", function()
      local m = h.manager()
      assert.is_nil(m:settings().tools)
    end)

    it("keeps the host's own options (luv, log, subreaper) out of the configuration", function()
      local cfg = config.load { config = {}, luv = false, log = print, subreaper = true, maxRunning = 3 }
      assert.is_nil(cfg.luv)
      assert.is_nil(cfg.log)
      assert.is_nil(cfg.subreaper)
      assert.equal(3, cfg.maxRunning)
      -- the store: a path, or the default a host gives (the daemon's), or none
      assert.is_nil(config.load({ config = {} }).store)
      assert.equal("/x/d.db", config.load({ config = {}, defaultStore = "/x/d.db" }).store)
      assert.is_nil(config.load({ config = { store = false }, defaultStore = "/x/d.db" }).store)
      assert.equal("/y.db", config.load({ config = { store = "/y.db" }, defaultStore = "/x/d.db" }).store)
      assert.is_nil(config.load({ config = {}, defaultStore = "/x/d.db" }).defaultStore)
    end)

    it("reads a file given by path, and names it as the source", function()
      local dir = tmpdir()
      local path = file(dir, "c.lua", "return { maxRunning = 2, retention = { maxFinished = 3 } }\n")
      local cfg = config.load { config = path }
      assert.equal(path, cfg.source)
      assert.equal(2, cfg.maxRunning)
      assert.same({ maxFinished = 3, maxAgeMs = 86400000, maxDiskBytes = 1073741824 }, cfg.retention)
    end)

    describe("refuses", function()
      -- { config table, the message expected (a pattern) }
      local cases = {
        { { graceMs = "soon" }, "'graceMs' must be a number, got string" },
        { { plugins = "stall" }, "'plugins' must be a table, got string" },
        { { pluginDirs = 1 }, "'pluginDirs' must be a table, got number" },
        { { retention = true }, "'retention' must be a table, got boolean" },
        { { tags = "x" }, "'tags' must be a table, got string" },
        { { cgroup = "yes" }, "'cgroup' must be a boolean, got string" },
        { { ringBytes = 0 }, "'ringBytes' must be an integer >= 1" },
        { { progressMs = 0 }, "'progressMs' must be an integer >= 1" },
        { { graceMs = -1 }, "'graceMs' must be an integer >= 0" },
        { { maxRunning = 1.5 }, "'maxRunning' must be an integer >= 0" },
        { { maxRingBytes = -4096 }, "'maxRingBytes' must be an integer >= 0" },
        { { retention = { maxFinished = -1 } }, "'retention.maxFinished' must be a non%-negative integer" },
        { { retention = { maxAgeMs = "soon" } }, "'retention.maxAgeMs' must be a non%-negative integer" },
        { { retention = { maxAgeMs = 0.5 } }, "'retention.maxAgeMs' must be a non%-negative integer" },
        { { retention = { maxDiskBytes = -1 } }, "'retention.maxDiskBytes' must be a non%-negative integer" },
        { { store = 5 }, "'store' must be a database path, \":memory:\" or false" },
        { { store = "" }, "'store' must be a database path" },
        { { store = true }, "'store' must be a database path" },
      }
      for _, case in ipairs(cases) do
        it(cjson.encode(case[1]) .. ", naming the field and what it must be", function()
          local err = load_fails { config = case[1] }
          assert.matches("^bgproc: config %(table%): " .. case[2], err)
          -- the same value from bgproc.new{} names that source
          local opts = { config = {} }
          for k, v in pairs(case[1]) do opts[k] = v end
          assert.matches("^bgproc: config bgproc%.new: " .. case[2], load_fails(opts))
        end)
      end

      it("a ringBytes over maxRingBytes, whichever source sets either", function()
        assert.matches("'ringBytes' %(2097152%) must be <= 'maxRingBytes' %(1048576%)",
          load_fails { config = { ringBytes = 2 * 1024 * 1024, maxRingBytes = 1024 * 1024 } })
        assert.matches("'ringBytes' %(67108865%) must be <= 'maxRingBytes'",
          load_fails { config = {}, ringBytes = 64 * 1024 * 1024 + 1 })
      end)

      it("infinite and NaN numbers, which no integer check may let through", function()
        for _, v in ipairs { math.huge, -math.huge, 0 / 0 } do
          assert.matches("'graceMs' must be an integer >= 0", load_fails { config = { graceMs = v } })
          assert.matches("'retention.maxAgeMs' must be a non%-negative integer",
            load_fails { config = { retention = { maxAgeMs = v } } })
        end
      end)

      it("a value that would break the engine, through bgproc.new", function()
        local ok, err = pcall(h.manager, { config = { progressMs = 0 } })
        assert.is_false(ok)
        assert.matches("'progressMs' must be an integer >= 1", err)
      end)

      it("a file that is missing, does not parse, fails, or returns no table, naming it", function()
        local dir = tmpdir()
        local missing = dir .. "/none.lua"
        assert.matches("^bgproc: config " .. missing:gsub("%p", "%%%0") .. ": cannot open",
          load_fails { config = missing })
        local syntax = file(dir, "syntax.lua", "return {")
        assert.matches("^bgproc: config " .. syntax:gsub("%p", "%%%0") .. ": .*expected", load_fails { config = syntax })
        local raises = file(dir, "raises.lua", "error('no config today')")
        assert.matches("^bgproc: config " .. raises:gsub("%p", "%%%0") .. ": .*no config today",
          load_fails { config = raises })
        local number = file(dir, "number.lua", "return 42")
        assert.equal("bgproc: config " .. number .. " must return a table, got number", load_fails { config = number })
        local bad = file(dir, "bad.lua", "return { graceMs = 'soon' }\n")
        assert.equal("bgproc: config " .. bad .. ": 'graceMs' must be a number, got string", load_fails { config = bad })
      end)
    end)
  end)

  describe("config.run_file", function()
    it("returns what a Lua file returns, and raises naming what it is and where", function()
      local dir = tmpdir()
      assert.same({ name = "p" }, config.run_file(file(dir, "p.lua", "return { name = 'p' }"), "plugin"))
      assert.is_nil(config.run_file(file(dir, "nil.lua", "local x = 1"), "plugin"))
      local broken = file(dir, "broken.lua", "return (")
      local ok, err = pcall(config.run_file, broken, "plugin")
      assert.is_false(ok)
      assert.matches("^bgproc: plugin " .. broken:gsub("%p", "%%%0") .. ": ", err)
      local ok2, err2 = pcall(config.run_file, file(dir, "raise.lua", "error({})"), "plugin")
      assert.is_false(ok2)
      assert.matches("^bgproc: plugin .*raise%.lua: table", err2)
      -- a binary chunk is refused (mode "t")
      local bin = dir .. "/bin.luac"
      h.write_file(bin, string.dump(function() return 1 end))
      local ok3, err3 = pcall(config.run_file, bin, "config")
      assert.is_false(ok3)
      assert.matches("^bgproc: config .*bin%.luac: .*binary", err3)
    end)
  end)

  describe("where it looks (a child process with its own environment)", function()
    it("reads $XDG_CONFIG_HOME/bgproc/init.lua, and bgproc.new uses it", function()
      local dir = tmpdir()
      assert(h.sh("mkdir -p " .. dir .. "/bgproc"))
      file(dir, "bgproc/init.lua", "return { maxRunning = 1, plugins = {} }\n")
      local got = in_child(WHERE, env { XDG_CONFIG_HOME = dir })
      assert.equal(dir .. "/bgproc", got.dir)
      assert.equal(dir .. "/bgproc/init.lua", got.source)
      assert.equal(1, got.maxRunning)
      local via_new = in_child([[
        local m = require("bgproc").new { luv = false }
        print(require("cjson").encode { maxRunning = m.cfg.maxRunning, source = m.cfg.source })
        m:shutdown()
      ]], env { XDG_CONFIG_HOME = dir })
      assert.same({ maxRunning = 1, source = dir .. "/bgproc/init.lua" }, via_new)
    end)

    it("falls back to $HOME/.config/bgproc, and to the defaults when there is no file", function()
      local home = tmpdir()
      local got = in_child(WHERE, env { HOME = home })
      assert.equal(home .. "/.config/bgproc", got.dir)
      assert.equal("(table)", got.source)
      assert.equal(512, got.maxRunning)
      assert(h.sh("mkdir -p " .. home .. "/.config/bgproc"))
      file(home, ".config/bgproc/init.lua", "return { maxRunning = 9 }\n")
      got = in_child(WHERE, env { HOME = home })
      assert.equal(home .. "/.config/bgproc/init.lua", got.source)
      assert.equal(9, got.maxRunning)
      -- an empty XDG_CONFIG_HOME counts as unset
      assert.equal(home .. "/.config/bgproc", in_child(WHERE, env { HOME = home, XDG_CONFIG_HOME = "" }).dir)
    end)

    it("has no config dir without HOME or XDG_CONFIG_HOME", function()
      local got = in_child(WHERE, env { HOME = false })
      assert.is_false(got.dir)
      assert.equal("(table)", got.source)
    end)

    it("prefers the file named by BGPROC_CONFIG; an empty one counts as unset", function()
      local dir = tmpdir()
      assert(h.sh("mkdir -p " .. dir .. "/bgproc"))
      file(dir, "bgproc/init.lua", "return { maxRunning = 1 }\n")
      local named = file(dir, "named.lua", "return { maxRunning = 2 }\n")
      local got = in_child(WHERE, env { XDG_CONFIG_HOME = dir, BGPROC_CONFIG = named })
      assert.equal(named, got.source)
      assert.equal(2, got.maxRunning)
      got = in_child(WHERE, env { XDG_CONFIG_HOME = dir, BGPROC_CONFIG = "" })
      assert.equal(dir .. "/bgproc/init.lua", got.source)
    end)

    it("keeps state in $XDG_STATE_HOME/bgproc, else ~/.local/state/bgproc, else under /tmp", function()
      assert.equal("/x/state/bgproc", in_child(WHERE, env { XDG_STATE_HOME = "/x/state" }).state)
      assert.equal("/h/.local/state/bgproc", in_child(WHERE, env { HOME = "/h" }).state)
      assert.equal("/h/.local/state/bgproc", in_child(WHERE, env { HOME = "/h", XDG_STATE_HOME = "" }).state)
      assert.equal("/tmp/.local/state/bgproc", in_child(WHERE, env { HOME = false }).state)
    end)

    it("turns cgroups off with BGPROC_CGROUP=0, whatever the file says", function()
      local dir = tmpdir()
      local path = file(dir, "c.lua", "return { cgroup = true }\n")
      assert.is_true(in_child(WHERE, env { BGPROC_CONFIG = path }).cgroup)
      assert.is_false(in_child(WHERE, env { BGPROC_CONFIG = path, BGPROC_CGROUP = "0" }).cgroup)
      assert.equal("unset", in_child(WHERE, env { HOME = dir, BGPROC_CGROUP = "1" }).cgroup)
    end)
  end)
end)
