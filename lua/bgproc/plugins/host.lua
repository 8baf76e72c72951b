-- Plugins: Lua files (or tables) with hooks the engine calls.
--
--   -- plugins/example.lua
--   return {
--     name = "example",
--     setup = function(api, opts) end,              -- once, with config[name]
--     on_create = function(api, args, ctx) end,      -- return new args, or false, "why"
--     on_start = function(api, record) end,
--     on_output = function(api, job, chunk) end,     -- only plugins that define it
--     on_exit = function(api, record) end,
--     on_session_start = function(api, sessionId) end,
--     on_session_end = function(api, sessionId, records) end, -- return ids to keep
--     on_shutdown = function(api) end,
--   }
--
-- `record` is a public record (as tools return it); `job` in on_output is
-- a light one: id, name, status, pid, sessionId, global, stdin, tags
-- (api.record(id) has the rest). The api (plugins/api.lua):
--   log(level, msg)  after(ms, fn)  every(ms, fn)   timers, with :cancel()
--   record(id)  records(pred)      public records (pred gets each)
--   jobs(pred)                     light records, cheap enough for a timer
--   output(id, lines, max_bytes)   the last lines, cleaned (10, 64 KiB)
--   silent_ms(id)  note(id, key, value)  add_tags(id, list)  respawn(id)
--   state_dir  config  tag_policy (max_length, max_count, charset)
--
-- Names are looked up in the user's plugin dir ($XDG_CONFIG_HOME/bgproc/
-- plugins), the dirs in config.pluginDirs, then the shipped plugins/. A
-- hook that raises is reported and skipped; the engine carries on.
local config = require "bgproc.engine.config"

local plugins = {}
local Host = {}
Host.__index = Host

plugins.HOOKS = { "on_create", "on_start", "on_output", "on_exit", "on_session_start",
                  "on_session_end", "on_shutdown" }

-- The shipped plugins/ next to lua/ in a checkout; when installed they are
-- modules named bgproc.plugins.NAME.
local function shipped_dir()
  local path = debug.getinfo(1, "S").source:match("^@(.*)$") or ""
  local root = path:match("^(.*)/lua/bgproc/plugins/host%.lua$")
    or (path == "lua/bgproc/plugins/host.lua" and ".")
  return root and root .. "/plugins" or nil
end

function plugins.new(api, log, dirs)
  return setmetatable({ api = api, log = log, dirs = dirs or {}, list = {}, by_hook = {} }, Host)
end

-- The file of a plugin given by name or path, or nil and where we looked:
-- the configured dirs, the shipped one, then installed modules.
local function find(self, name)
  if name:find("/", 1, true) then return name end
  local dirs = table.move(self.dirs, 1, #self.dirs, 1, {})
  dirs[#dirs + 1] = shipped_dir()
  for _, dir in ipairs(dirs) do
    local path = dir .. "/" .. name .. ".lua"
    local f = io.open(path)
    if f then f:close() return path end
  end
  local path = package.searchpath("bgproc.plugins." .. name, package.path)
  if path then return path end
  if not shipped_dir() then dirs[#dirs + 1] = "bgproc.plugins.*" end
  return nil, table.concat(dirs, ", ")
end

-- Load and register one plugin (a name, a path or a table); its options
-- are options[its name] (the config), known once it is loaded: a plugin
-- given by path is named by its table or its file. Raises with a clear
-- message when it cannot be found or loaded: a bad config should be
-- fixed, not silently ignored.
function Host:add(spec, options)
  local plugin = spec
  if type(spec) == "string" then
    local path, looked = find(self, spec)
    if not path then error(("bgproc: plugin '%s' not found (looked in %s)"):format(spec, looked), 0) end
    plugin = config.run_file(path, "plugin")
  end
  if type(plugin) ~= "table" then
    error(("bgproc: plugin %s must return a table of hooks, got %s"):format(
      tostring(spec), type(plugin)), 0)
  end
  local name = plugin.name or (type(spec) == "string" and spec:match("([^/]+)%.lua$") or spec)
  plugin.name = tostring(name)
  if plugin.setup then
    -- by its name; a name that differs from the one configured also works
    local opts = options and (options[plugin.name] or (type(spec) == "string" and options[spec]))
    local ok, err = pcall(plugin.setup, self.api, opts or {})
    if not ok then error(("bgproc: plugin %s: setup failed: %s"):format(plugin.name, tostring(err)), 0) end
  end
  self.list[#self.list + 1] = plugin
  for _, hook in ipairs(plugins.HOOKS) do
    if plugin[hook] then
      local list = self.by_hook[hook] or {}
      list[#list + 1] = plugin
      self.by_hook[hook] = list
    end
  end
  return plugin
end

function Host:has(hook)
  return self.by_hook[hook] ~= nil
end

-- Call hook on every plugin that has it; errors are logged and skipped.
-- Returns the list of { plugin, results... } of the calls that succeeded.
function Host:call(hook, ...)
  local list = self.by_hook[hook]
  if not list then return {} end
  local out = {}
  for _, plugin in ipairs(list) do
    local res = table.pack(pcall(plugin[hook], self.api, ...))
    if res[1] then
      out[#out + 1] = { plugin = plugin, table.unpack(res, 2, res.n) }
    else
      self.log("error", ("plugin %s: %s failed: %s"):format(plugin.name, hook, tostring(res[2])))
    end
  end
  return out
end

-- on_create: each plugin may replace the args or refuse.
function Host:create(args, ctx)
  local list = self.by_hook.on_create
  if not list then return args end
  for _, plugin in ipairs(list) do
    local ok, res, why = pcall(plugin.on_create, self.api, args, ctx)
    if not ok then
      self.log("error", ("plugin %s: on_create failed: %s"):format(plugin.name, tostring(res)))
    elseif res == false then
      return nil, ("refused by plugin %s: %s"):format(plugin.name, tostring(why or "no reason given"))
    elseif type(res) == "table" then
      args = res
    end
  end
  return args
end

return plugins
