-- The rockspec builds with `luarocks make` and installs a working module.
local h = require "helpers"

local sh = h.sh

describe("bgproc-scm-1.rockspec", function()
  local tmp

  setup(function()
    tmp = h.tmpdir()
  end)

  teardown(function()
    os.execute("rm -rf " .. tmp)
  end)

  it("lists every module of the source tree", function()
    local spec = assert(io.open(h.root .. "/bgproc-scm-1.rockspec")):read("a")
    local _, files = sh("cd " .. h.root .. " && { find core -name '*.c'; find lua bin plugins -type f ! -name '*.so'; } 2>/dev/null")
    for file in files:gmatch("[^\n]+") do
      assert.truthy(spec:find('"' .. file .. '"', 1, true), file .. " is missing from the rockspec")
    end
  end)

  it("builds and installs with luarocks make into a fresh tree", function()
    if not os.execute("command -v luarocks >/dev/null") then
      pending("luarocks is not installed")
      return
    end
    local src = tmp .. "/src"
    assert(os.execute(("mkdir -p %s && cp -r %s/. %s/ && rm -rf %s/build %s/node_modules %s/lua/bgproc/*.so")
      :format(src, h.root, src, src, src, src)))
    local ok, out = sh(("cd %s && HOME=%s luarocks --lua-version=5.4 make --deps-mode=none --tree=%s/tree bgproc-scm-1.rockspec")
      :format(src, tmp, tmp))
    assert.is_true(ok, out)
    local probe = [[
      assert(package.searchpath("bgproc.core", package.cpath):find("/tree/", 1, true))
      assert(package.searchpath("bgproc", package.path):find("/tree/", 1, true))
      local m = require("bgproc").new { config = { plugins = { "autotag" } }, luv = false }
      local r = assert(m:call("createBackgroundProcess", { argv = { "echo", "installed" } }))
      m:call("waitForBackgroundProcess", { processId = r.id })
      io.write(m:call("getBackgroundProcess", { processId = r.id }).output)
      m:shutdown()
    ]]
    ok, out = sh(("cd / && LUA_CPATH_5_4='%s/tree/lib/lua/5.4/?.so;;' LUA_PATH_5_4='%s/tree/share/lua/5.4/?.lua;%s/tree/share/lua/5.4/?/init.lua;;' lua5.4 -e '%s'")
      :format(tmp, tmp, tmp, probe))
    assert.is_true(ok, out)
    assert.equal("installed\n", out)
    -- and the command, through the wrapper luarocks writes (a tree of your
    -- own needs its paths: `luarocks path`, as for any rock in that tree)
    ok, out = sh(("cd / && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 HOME=%s sh -c "
      .. "'eval \"$(luarocks --lua-version=5.4 path --tree=%s/tree)\" && %s/tree/bin/bgproc version'")
      :format(tmp, tmp, tmp))
    assert.is_true(ok, out)
    assert.matches("^bgproc %d+%.%d+%.%d+\n$", out)
  end)
end)
