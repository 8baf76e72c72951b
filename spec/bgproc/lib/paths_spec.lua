-- bgproc.lib.paths: where the daemon's socket, lock and log live, and
-- mkdir -p with private modes. Real directories in a temporary directory;
-- what depends on the environment (BGPROC_SOCKET, XDG_RUNTIME_DIR,
-- XDG_STATE_HOME, HOME) runs in a child lua5.4 with that environment.
local h = require "helpers"
local uv = require "luv"
local core = require "bgproc.core"
local cjson = require "cjson"
local paths = require "bgproc.lib.paths"

local dirs = {}
local function tmpdir()
  local d = h.tmpdir()
  dirs[#dirs + 1] = d
  return d
end

local function mode_of(path)
  local st = uv.fs_stat(path)
  return st and ("%o"):format(st.mode & 511), st and st.type
end

-- paths.socket(), dir(), lock() and log() in a child with env (false
-- removes a variable; the variables that choose are unset unless given).
local function where(env)
  local e = { BGPROC_SOCKET = false, XDG_RUNTIME_DIR = false, XDG_STATE_HOME = false,
              HOME = "/nonexistent/bgproc-spec-home" }
  for k, v in pairs(env or {}) do e[k] = v end
  local loop = core.new()
  local job = assert(loop:spawn { argv = { h.lua, "-e", [[
    local paths = require "bgproc.lib.paths"
    print(require("cjson").encode { socket = paths.socket(), dir = paths.dir(), lock = paths.lock(), log = paths.log() })
  ]] }, env = h.lua_env(e) })
  h.finish(loop, job, 10000)
  local out, err = (job:read(0, nil, "stdout")), (job:read(0, nil, "stderr"))
  local code = job:exit()
  loop:close()
  assert(code == 0, "the child failed: " .. err .. out)
  return cjson.decode(out)
end

describe("bgproc.lib.paths", function()
  after_each(function()
    for i = #dirs, 1, -1 do
      h.sh("rm -rf " .. dirs[i])
      dirs[i] = nil
    end
  end)

  describe("the socket, its lock and the log", function()
    it("use BGPROC_SOCKET when it is set and not empty", function()
      assert.same({ socket = "/s/my.sock", dir = "/s", lock = "/s/my.sock.lock", log = "/st/bgproc/daemon.log" },
        where { BGPROC_SOCKET = "/s/my.sock", XDG_RUNTIME_DIR = "/run/user/9", XDG_STATE_HOME = "/st" })
      assert.equal("/run/user/9/bgproc/daemon.sock",
        where({ BGPROC_SOCKET = "", XDG_RUNTIME_DIR = "/run/user/9" }).socket)
    end)

    it("else live in $XDG_RUNTIME_DIR/bgproc", function()
      assert.same({ socket = "/run/user/9/bgproc/daemon.sock", dir = "/run/user/9/bgproc",
                    lock = "/run/user/9/bgproc/daemon.sock.lock", log = "/h/.local/state/bgproc/daemon.log" },
        where { XDG_RUNTIME_DIR = "/run/user/9", HOME = "/h" })
    end)

    it("else in /tmp/bgproc-<uid>, with the log under /tmp without a HOME", function()
      local uid = uv.getuid()
      local sock = ("/tmp/bgproc-%d/daemon.sock"):format(uid)
      assert.same({ socket = sock, dir = ("/tmp/bgproc-%d"):format(uid), lock = sock .. ".lock",
                    log = "/tmp/.local/state/bgproc/daemon.log" },
        where { XDG_RUNTIME_DIR = "", HOME = false })
    end)

    it("config_dir: $XDG_CONFIG_HOME/bgproc, else ~/.config/bgproc, else none; state_dir likewise, else under /tmp",
      function()
        local function dirs_in(env)
          local e = { XDG_CONFIG_HOME = false, XDG_STATE_HOME = false, HOME = false }
          for k, v in pairs(env) do e[k] = v end
          local loop = core.new()
          local job = assert(loop:spawn { argv = { h.lua, "-e", [[
            local paths = require "bgproc.lib.paths"
            print(require("cjson").encode { config = paths.config_dir() or false, state = paths.state_dir() })
          ]] }, env = h.lua_env(e) })
          local out = h.finish(loop, job, 10000)
          loop:close()
          return cjson.decode(out)
        end
        assert.same({ config = "/x/c/bgproc", state = "/x/s/bgproc" },
          dirs_in { XDG_CONFIG_HOME = "/x/c", XDG_STATE_HOME = "/x/s", HOME = "/h" })
        assert.same({ config = "/h/.config/bgproc", state = "/h/.local/state/bgproc" }, dirs_in { HOME = "/h" })
        assert.same({ config = "/h/.config/bgproc", state = "/h/.local/state/bgproc" },
          dirs_in { HOME = "/h", XDG_CONFIG_HOME = "", XDG_STATE_HOME = "" }) -- empty counts as unset
        assert.same({ config = false, state = "/tmp/.local/state/bgproc" }, dirs_in {})
      end)

    it("paths.dir and paths.lock of a given socket", function()
      assert.equal("/a/b", paths.dir("/a/b/c.sock"))
      assert.equal("rel/dir", paths.dir("rel/dir/x.sock"))
      assert.equal(".", paths.dir("x.sock"))
      assert.equal("/", paths.dir("/x.sock"))
      assert.equal("/a/b/c.sock.lock", paths.lock("/a/b/c.sock"))
      assert.equal(paths.socket() .. ".lock", paths.lock())
      assert.equal(paths.dir(paths.socket()), paths.dir())
    end)
  end)

  describe("paths.ensure_dir", function()
    it("makes every missing part, mode 0700, and leaves existing ones as they are", function()
      local base = tmpdir()
      assert(uv.fs_chmod(base, tonumber("755", 8)))
      local deep = base .. "/a/b/c"
      assert.is_true(paths.ensure_dir(deep))
      for _, p in ipairs { base .. "/a", base .. "/a/b", deep } do
        local mode, kind = mode_of(p)
        assert.equal("directory", kind, p)
        assert.equal("700", mode, p)
      end
      assert.equal("755", (mode_of(base)))
      -- again: nothing to do, nothing changed
      assert(uv.fs_chmod(base .. "/a", tonumber("711", 8)))
      assert.is_true(paths.ensure_dir(deep))
      assert.equal("711", (mode_of(base .. "/a")))
    end)

    it("uses the mode it is given for the parts it makes", function()
      local base = tmpdir()
      assert.is_true(paths.ensure_dir(base .. "/m/n", tonumber("750", 8)))
      assert.equal("750", (mode_of(base .. "/m")))
      assert.equal("750", (mode_of(base .. "/m/n")))
    end)

    it("makes a relative path under the current directory", function()
      local base = tmpdir()
      local loop = core.new()
      local job = assert(loop:spawn { argv = { h.lua, "-e", [[
        print(require("bgproc.lib.paths").ensure_dir("x/y"))
      ]] }, env = h.lua_env(), cwd = base })
      local out = h.finish(loop, job, 10000)
      loop:close()
      assert.equal("true\n", out)
      assert.equal("directory", select(2, mode_of(base .. "/x/y")))
    end)

    it("refuses a part that is a file, naming it", function()
      local base = tmpdir()
      h.write_file(base .. "/file", "x")
      local ok, err = paths.ensure_dir(base .. "/file/sub")
      assert.is_nil(ok)
      assert.equal(base .. "/file is not a directory", err)
      ok, err = paths.ensure_dir(base .. "/file")
      assert.is_nil(ok)
      assert.equal(base .. "/file is not a directory", err)
      assert.is_nil(uv.fs_stat(base .. "/file/sub"))
    end)

    it("returns the error of a mkdir that fails, naming the path", function()
      local ok, err = paths.ensure_dir("/proc/bgproc-spec-no/such")
      assert.is_nil(ok)
      assert.matches("^ENOENT: .*/proc/bgproc%-spec%-no$", err)
    end)
  end)
end)
