-- The rock: `luarocks make` of bgproc-scm-1.rockspec into a fresh tree
-- installs every module of the source tree and a bgproc command that
-- works; and bin/bgproc without its modules says what to do.
local h = require "helpers"

local sh = h.sh

-- Lines of a shell command's output.
local function lines(cmd)
  local ok, out = sh(cmd)
  assert(ok, out)
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = line end
  return list
end

describe("bgproc-scm-1.rockspec", function()
  local tmp, src, tree

  setup(function()
    tmp = h.tmpdir()
    src, tree = tmp .. "/src", tmp .. "/tree"
  end)

  teardown(function()
    os.execute("rm -rf " .. tmp)
  end)

  it("lists no file by hand: the Makefile builds and installs", function()
    local spec = {}
    assert(loadfile(h.root .. "/bgproc-scm-1.rockspec", "t", spec))()
    assert.equal("make", spec.build.type)
    assert.is_nil(spec.build.modules)
    assert.same({ bgproc = "bin/bgproc" }, spec.build.install.bin)
  end)

  it("installs every module of the tree, and a working bgproc, with luarocks make into a fresh tree", function()
    if not os.execute("command -v luarocks >/dev/null") then
      pending("luarocks is not installed")
      return
    end
    -- the tree as git has it, without build output
    assert(os.execute(("mkdir -p %s && cd %s && git ls-files -z --cached --others --exclude-standard"
      .. " | xargs -0 sh -c 'for f; do [ -f \"$f\" ] && printf \"%%s\\0\" \"$f\"; done' sh"
      .. " | tar --null -T - -cf - | tar -C %s -xf -"):format(src, h.root, src)))
    local ok, out = sh(("cd %s && HOME=%s luarocks --lua-version=5.4 make --deps-mode=none --tree=%s bgproc-scm-1.rockspec")
      :format(src, tmp, tree))
    assert.is_true(ok, out)

    -- every Lua file of lua/bgproc, every shipped plugin, one .so per C folder
    local want = {}
    for _, f in ipairs(lines("cd " .. src .. "/lua && find bgproc -name '*.lua'")) do
      want[#want + 1] = "share/lua/5.4/" .. f
    end
    for _, f in ipairs(lines("cd " .. src .. " && ls plugins/*.lua")) do
      want[#want + 1] = "share/lua/5.4/bgproc/" .. f
    end
    for _, d in ipairs(lines("cd " .. src .. "/core && ls -d */")) do
      local mod = d:gsub("/$", ""):gsub("^bgproc$", "core")
      want[#want + 1] = "lib/lua/5.4/bgproc/" .. mod .. ".so"
    end
    assert.is_true(#want > 20)
    for _, f in ipairs(want) do
      local found = io.open(tree .. "/" .. f)
      assert.truthy(found, f .. " is not installed")
      found:close()
    end

    -- the installed modules, from the tree alone, run a job
    local probe = [[
      assert(package.searchpath("bgproc.core", package.cpath):find("/tree/", 1, true))
      assert(package.searchpath("bgproc.sys", package.cpath):find("/tree/", 1, true))
      assert(package.searchpath("bgproc", package.path):find("/tree/", 1, true))
      assert(package.searchpath("bgproc.plugins.autotag", package.path):find("/tree/", 1, true))
      local m = require("bgproc").new { config = { plugins = { "autotag" } }, luv = false }
      local r = assert(m:call("createBackgroundProcess", { argv = { "echo", "installed" } }))
      m:call("waitForBackgroundProcess", { processId = r.id })
      io.write(m:call("getBackgroundProcess", { processId = r.id }).output)
      m:shutdown()
    ]]
    ok, out = sh(("cd / && LUA_CPATH_5_4='%s/lib/lua/5.4/?.so;;' LUA_PATH_5_4='%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;;' lua5.4 -e '%s'")
      :format(tree, tree, tree, probe))
    assert.is_true(ok, out)
    assert.equal("installed\n", out)

    -- and the command, through the wrapper luarocks writes (a tree of your
    -- own needs its paths: `luarocks path`, as for any rock in that tree)
    ok, out = sh(("cd / && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 HOME=%s sh -c "
      .. "'eval \"$(luarocks --lua-version=5.4 path --tree=%s)\" && %s/bin/bgproc version'")
      :format(tmp, tree, tree))
    assert.is_true(ok, out)
    assert.matches("^bgproc %d+%.%d+%.%d+\n$", out)

    -- without them, it says what to do
    ok, out = sh(("cd / && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 %s/bin/bgproc version"):format(tree))
    assert.falsy(ok)
    assert.matches("^bgproc: cannot load the bgproc Lua modules .*luarocks %-%-lua%-version=5%.4 path", out)
  end)
end)

describe("bin/bgproc without its modules", function()
  local tmp

  setup(function() tmp = h.tmpdir() end)
  teardown(function() os.execute("rm -rf " .. tmp) end)

  -- A copy away from the checkout, so that it cannot find lua/ beside it.
  local function run(env)
    assert(os.execute(("cp %s/bin/bgproc %s/bgproc"):format(h.root, tmp)))
    local p = assert(io.popen(("cd / && env %s %s/bgproc version 2>&1; echo \"exit $?\"")
      :format(env, tmp)))
    local out = p:read("a")
    p:close()
    return out:match("^(.*)exit (%d+)\n$")
  end

  it("says which module is missing and how to set the paths, and exits 1", function()
    local out, code = run("LUA_PATH_5_4='/nowhere/?.lua' LUA_CPATH_5_4='/nowhere/?.so'")
    assert.equal("1", code)
    assert.equal("bgproc: cannot load the bgproc Lua modules (module 'luv' not found). "
      .. "If bgproc was installed with luarocks, run: eval \"$(luarocks --lua-version=5.4 path)\" "
      .. "(with --tree=DIR for a tree of your own), then try again.\n", out)
  end)

  it("names bgproc.cli when only luv is found", function()
    local out, code = run("LUA_PATH_5_4='/nowhere/?.lua' LUA_CPATH_5_4=';;'")
    assert.equal("1", code)
    assert.matches("^bgproc: cannot load the bgproc Lua modules %(module 'bgproc%.cli' not found%)%. "
      .. "If bgproc was installed with luarocks, run: eval", out)
    assert.not_matches("internal error", out)
    assert.not_matches("traceback", out)
  end)
end)
