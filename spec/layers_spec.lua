-- The layers hold in the tree: what each folder may require, what a tool
-- may touch, and files small enough to read.
local h = require "helpers"

-- The Lua files under dir (relative to the checkout), sorted.
local function lua_files(dir)
  local _, out = h.sh(("cd %s && find %s -name '*.lua' | sort"):format(h.root, dir))
  local files = {}
  for f in out:gmatch("[^\n]+") do files[#files + 1] = f end
  return files
end

local function source(file)
  return assert(h.read_file(h.root .. "/" .. file))
end

-- The bgproc modules a file requires.
local function requires(file)
  local mods = {}
  for mod in source(file):gmatch("require%s*%(?%s*[\"']([%w%._]+)[\"']") do
    if mod:find("^bgproc") then mods[#mods + 1] = mod end
  end
  return mods
end

-- Which modules each layer may require (patterns; the layer's own are allowed).
local ALLOWED = {
  ["lua/bgproc/lib"] = { "^bgproc%.lib%.", "^bgproc%.jsonenc$", "^bgproc%.sys$" },
  ["lua/bgproc/engine"] = { "^bgproc%.engine", "^bgproc%.lib%.", "^bgproc%.plugins%.", "^bgproc%.core$", "^bgproc%.sys$",
                            "^bgproc%.regex$", "^bgproc%.store" },
  ["lua/bgproc/store"] = { "^bgproc%.lib%.", "^bgproc%.sys$", "^bgproc%.store" },
  ["lua/bgproc/plugins"] = { "^bgproc%.engine", "^bgproc%.lib%.", "^bgproc%.plugins%." },
  ["lua/bgproc/tools"] = { "^bgproc%.engine", "^bgproc%.lib%.", "^bgproc%.tools", "^bgproc%.regex$" },
}

describe("the layers", function()
  for dir, allowed in pairs(ALLOWED) do
    it(dir .. " requires only what its layer may", function()
      local files = lua_files(dir)
      assert.is_true(#files > 0, dir .. " has Lua files")
      for _, file in ipairs(files) do
        for _, mod in ipairs(requires(file)) do
          local ok = false
          for _, pat in ipairs(allowed) do ok = ok or mod:find(pat) ~= nil end
          assert.is_true(ok, ("%s requires %s"):format(file, mod))
        end
      end
    end)
  end

  it("tools reach jobs through engine methods only", function()
    for _, file in ipairs(lua_files("lua/bgproc/tools")) do
      local src = source(file)
      for _, pat in ipairs { "%.job[%.:]", "engine%.cfg", "engine%.sched", "engine%.jobs", "engine%.core",
                             "rec%.[%w_]+_re%f[^%w_]", "rec%.ready" } do
        assert.is_nil(src:find(pat), ("%s touches %s"):format(file, pat))
      end
    end
  end)

  it("no Lua file is over 500 lines", function()
    for _, file in ipairs(lua_files("lua plugins")) do
      local n = select(2, source(file):gsub("\n", ""))
      assert.is_true(n <= 500, ("%s has %d lines"):format(file, n))
    end
  end)

  it("each tool declares its vocabulary once: json's array keys come from the tools", function()
    local json = require "bgproc.lib.json"
    local tools = require "bgproc.tools"
    for _, t in ipairs(tools.list) do
      for _, k in ipairs(t.arrays or {}) do assert.is_true(json.ARRAY_KEYS[k], t.name .. ": " .. k) end
      for _, k in ipairs(t.selects or {}) do assert.truthy(t.inputSchema.properties[k], t.name .. ": " .. k) end
      for _, flag in ipairs(t.cli or {}) do
        assert.truthy(t.inputSchema.properties[flag[1]], t.name .. ": cli field " .. flag[1])
      end
    end
    local src = source("lua/bgproc/lib/json.lua")
    assert.is_nil(src:find("processes = true", 1, true), "no hand-kept list of array keys in json.lua")
  end)

  it("the OpenCode plugin's tool catalog is generated from the tools, and current", function()
    local ok, out = h.sh(("cd %s && %s tools/opencode-catalog.lua --check 2>&1"):format(h.root, h.lua))
    assert.is_true(ok, out)
    for _, file in ipairs { "integrations/opencode/index.js", "integrations/opencode/lib/client.js" } do
      assert.is_nil(source(file):find('"sendBackgroundProcessInput"', 1, true), "no hand-kept list of tools in " .. file)
      assert.is_nil(source(file):find('"listBackgroundProcesses"', 1, true), "no hand-kept list of tools in " .. file)
    end
  end)
end)
