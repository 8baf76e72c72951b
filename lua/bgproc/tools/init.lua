-- The tools: one file each beside this one, a table with its name,
-- description, JSON Schema (inputSchema), handler and text, and what it
-- declares once for everyone else:
--   check    what the schema cannot say (run on every call, and again on
--            what a plugin's on_create returns)
--   waits    the handler waits (kill, wait): it runs as a task
--   selects  the selector keys it takes (engine/select.lua's KEYS)
--   arrays   the keys of its result that are always arrays
--   cli      its `bgproc` flags: { field, flag, help, argname=, value=, short= }
--   annotations  MCP's hints: readOnlyHint (safe to retry), destructiveHint
-- The same tables feed the Lua API (m:call), the daemon protocol, the
-- CLI and the MCP server.
local common = require "bgproc.tools.common"
local config = require "bgproc.engine.config"
local errors = require "bgproc.lib.errors"
local json = require "bgproc.lib.json"
local records = require "bgproc.engine.records"

local tools = {}

-- In the order tools/list gives them.
local FILES = { "create", "list", "get", "kill", "wait", "send", "restart", "remove", "search" }

tools.list, tools.by_name = {}, {}
for i, file in ipairs(FILES) do
  local t = require("bgproc.tools." .. file)
  tools.list[i], tools.by_name[t.name] = t, t
end

-- Keys whose values are always JSON arrays in tool arguments and
-- results: the records' lists, each tool's result arrays, and its
-- arguments that may be lists. Decoding marks empty ones as arrays again.
local function array_keys()
  local keys = {}
  for _, k in ipairs(records.ARRAYS) do keys[#keys + 1] = k end
  for _, t in ipairs(tools.list) do
    for _, k in ipairs(t.arrays or {}) do keys[#keys + 1] = k end
    for k, prop in pairs(t.inputSchema.properties) do
      local types = type(prop.type) == "table" and prop.type or { prop.type }
      for _, ty in ipairs(types) do if ty == "array" then keys[#keys + 1] = k end end
    end
  end
  return keys
end
json.array_keys(array_keys())

-- Validate args for tool `name`: the tool and normalized args, or nil
-- and an error. engine: for the checks that depend on its settings.
function tools.check(name, args, engine)
  local def = tools.by_name[name]
  if not def then
    local names = {}
    for i, t in ipairs(tools.list) do names[i] = t.name end
    return errors.fail("not_found", "unknown tool '%s' (tools: %s)", tostring(name), table.concat(names, ", "))
  end
  local norm, err = common.validate(def, args, engine)
  if not norm then return nil, err end
  return def, norm
end

-- Definitions for MCP's tools/list: name, description, inputSchema,
-- annotations.
function tools.definitions()
  local out = json.array()
  for i, t in ipairs(tools.list) do
    out[i] = { name = t.name, description = t.description, inputSchema = t.inputSchema,
               annotations = t.annotations }
  end
  return out
end

-- What a client needs when it cannot ask the daemon (the OpenCode
-- plugin's integrations/opencode/lib/tools.json is made from it by
-- tools/opencode-catalog.lua): the definitions, and the defaults that
-- bound how long a call may take.
function tools.catalog()
  return {
    tools = tools.definitions(),
    defaults = {
      waitTimeoutMs = tools.by_name.waitForBackgroundProcess.DEFAULT_TIMEOUT_MS,
      graceMs = config.defaults.graceMs,
      maxGraceMs = tools.by_name.killProcesses.inputSchema.properties.graceMs.maximum,
    },
  }
end

-- A short text for a result (MCP content), or the error's message.
function tools.summary(name, result, err)
  if err then return ("error (%s): %s"):format(err.code, err.message) end
  local def = tools.by_name[name]
  local ok, s = pcall(def.text, result)
  return ok and s or json.encode(result)
end

return tools
