-- Configuration: defaults, then the user's file, then what the embedder
-- passes to bgproc.new{}. The file is Lua returning a table:
--
--   -- $XDG_CONFIG_HOME/bgproc/init.lua (or the file named by BGPROC_CONFIG)
--   return {
--     plugins = { "autotag", "stall", "restart", "logfile" },
--     ringBytes = 1048576,          -- default output ring per job
--     maxRingBytes = 67108864,      -- the most a job may ask for (outputBytes)
--     graceMs = 3000,               -- TERM -> KILL when killing
--     maxRunning = 512,             -- running jobs at once
--     retention = { maxFinished = 1000, maxAgeMs = 86400000,  -- finished records kept,
--                   maxDiskBytes = 1073741824 },               -- and their output on disk
--     store = "/path/bgproc.db",    -- history on disk (the daemon's default:
--                                   -- $XDG_STATE_HOME/bgproc/bgproc.db); false: none
--     progressMs = 5000,            -- progress notifications while a wait runs
--     cgroup = true,                -- per-job cgroups where the machine allows
--                                   -- (BGPROC_CGROUP=0 in the environment: false)
--     restart = { maxRestarts = 5, backoffMs = 1000 },   -- a plugin's options
--   }
local paths = require "bgproc.lib.paths"

local config = {}

config.defaults = {
  plugins = { "autotag", "stall", "restart" },
  pluginDirs = {},
  ringBytes = 1024 * 1024,
  maxRingBytes = 64 * 1024 * 1024,
  graceMs = 3000,
  maxRunning = 512,
  retention = { maxFinished = 1000, maxAgeMs = 24 * 3600 * 1000, maxDiskBytes = 1024 * 1024 * 1024 },
  progressMs = 5000,
}

-- key -> expected Lua type, for the keys the engine itself reads
local types = {
  plugins = "table", pluginDirs = "table", ringBytes = "number", maxRingBytes = "number",
  graceMs = "number", maxRunning = "number", retention = "table", tags = "table",
  progressMs = "number", cgroup = "boolean",
}

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- Run a Lua file (a config, a plugin) and return what it returns. Raises
-- "bgproc: <what> <path>: ..." when it does not load or run: a bad file
-- should be fixed, not silently ignored.
function config.run_file(path, what)
  local chunk, err = loadfile(path, "t")
  if not chunk then error(("bgproc: %s %s: %s"):format(what, path, err), 0) end
  local ok, v = pcall(chunk)
  if not ok then error(("bgproc: %s %s: %s"):format(what, path, tostring(v)), 0) end
  return v
end

-- The user's config table. Raises on a file that does not load or does
-- not return a table.
local function load_file(path)
  local t = config.run_file(path, "config")
  if type(t) ~= "table" then
    error(("bgproc: config %s must return a table, got %s"):format(path, type(t)), 0)
  end
  return t
end

-- The defaults, copied: no configuration may share (and change) their tables.
local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return out
end

-- A table of named keys (retention), not a list (plugins).
local function is_map(t)
  return type(t) == "table" and #t == 0 and next(t) ~= nil
end

-- Merge from into into: a table of named keys merges key by key (so
-- `retention = {}` keeps both limits); anything else replaces.
local function merge(into, from)
  for k, v in pairs(from) do
    if type(v) == "table" and #v == 0 and (next(v) or is_map(into[k])) and type(into[k]) == "table" then
      local sub = {}
      for kk, vv in pairs(into[k]) do sub[kk] = vv end
      into[k] = merge(sub, v)
    else
      into[k] = v
    end
  end
  return into
end

local function check(cfg, source)
  for key, want in pairs(types) do
    if cfg[key] ~= nil and type(cfg[key]) ~= want then
      error(("bgproc: config %s: '%s' must be a %s, got %s"):format(
        source, key, want, type(cfg[key])), 0)
    end
  end
  for _, key in ipairs { "ringBytes", "maxRingBytes", "graceMs", "maxRunning", "progressMs" } do
    local v = cfg[key]
    local least = (key == "progressMs" or key == "ringBytes") and 1 or 0
    if v ~= nil and (math.tointeger(v) == nil or v < least) then
      error(("bgproc: config %s: '%s' must be an integer >= %d"):format(source, key, least), 0)
    end
  end
  if cfg.store ~= nil and cfg.store ~= false and (type(cfg.store) ~= "string" or cfg.store == "") then
    error(("bgproc: config %s: 'store' must be a database path, \":memory:\" or false"):format(source), 0)
  end
  local r = cfg.retention
  if r ~= nil then
    for _, key in ipairs { "maxFinished", "maxAgeMs", "maxDiskBytes" } do
      local v = r[key]
      if v ~= nil and (type(v) ~= "number" or math.tointeger(v) == nil or v < 0) then
        error(("bgproc: config %s: 'retention.%s' must be a non-negative integer"):format(source, key), 0)
      end
    end
  end
end

-- bgproc.new's options that are not settings.
local NOT_CONFIG = { config = true, luv = true, log = true, subreaper = true, tools = true, defaultStore = true }

-- The effective configuration. opts.config: a path or a table (else
-- BGPROC_CONFIG, else the file in the config dir if it exists).
function config.load(opts)
  opts = opts or {}
  local cfg = deep_copy(config.defaults)
  local source = opts.config
  if source == nil then
    source = os.getenv("BGPROC_CONFIG")
    if source == "" then source = nil end
    if not source then
      local dir = paths.config_dir()
      if dir and exists(dir .. "/init.lua") then source = dir .. "/init.lua" end
    end
  end
  local name = "(table)"
  if type(source) == "string" then
    name = source
    source = load_file(source)
  end
  if source then
    check(source, name)
    merge(cfg, source)
  end
  local overrides = {}
  for k, v in pairs(opts) do
    if not NOT_CONFIG[k] then overrides[k] = v end
  end
  check(overrides, "bgproc.new")
  merge(cfg, overrides)
  if cfg.ringBytes > cfg.maxRingBytes then
    error(("bgproc: config %s: 'ringBytes' (%d) must be <= 'maxRingBytes' (%d)"):format(
      name, cfg.ringBytes, cfg.maxRingBytes), 0)
  end
  if os.getenv("BGPROC_CGROUP") == "0" then cfg.cgroup = false end
  if cfg.store == nil then cfg.store = opts.defaultStore end
  if cfg.store == false then cfg.store = nil end
  cfg.source = name
  return cfg
end

return config
