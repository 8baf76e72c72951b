-- What the tools share: schema pieces, the selector vocabulary's schemas,
-- the lookup of one job, and checks every tool words the same way.
local errors = require "bgproc.lib.errors"
local regex = require "bgproc.regex"
local schema = require "bgproc.lib.schema"
local selectors = require "bgproc.engine.select"
local states = require "bgproc.engine.states"
local stop = require "bgproc.engine.stop"

local common = {}

-- Whole numbers print as such even when they came through JSON as floats.
function common.int(v)
  return v and tostring(math.tointeger(v) or v) or "?"
end

function common.object(props, required)
  return { type = "object", properties = props, required = required, additionalProperties = false }
end

-- A copy of schema t with the fields of extra.
function common.with(t, extra)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  for k, v in pairs(extra or {}) do out[k] = v end
  return out
end

common.ID = { type = "string", minLength = 1, maxLength = 200,
              description = "The process id returned by createBackgroundProcess, or the job's name "
                .. "(the caller's running job of that name, else its newest)." }
common.TASK_ID = { type = "string", minLength = 1, maxLength = 100,
                   description = "Alias of processId (the seed plugin's name)." }
common.STRINGS = { type = { "string", "array" }, items = { type = "string", maxLength = 200 }, maxItems = 64 }
common.CURSOR = { type = "integer", minimum = 0, maximum = 1 << 53 }
common.SIGNAL = { type = { "string", "integer" }, description = "Signal name (TERM, INT, HUP, KILL, ...) or number." }
common.GRACE_MS = { type = "integer", minimum = 0, maximum = 600000,
                    description = "Milliseconds between the signal and KILL (default 3000)." }

-- A check of an optional `signal` argument: its name, or nil and an
-- invalid_argument error.
function common.signal(args)
  local num, name = stop.signal(args.signal or "TERM")
  if not num then return errors.fail("invalid_argument", "'signal': %s", name) end
  return name
end

-- The schema of each selector key (select.KEYS); a tool may word a
-- key's description its own way.
local SELECTOR_SCHEMA = {
  processId = common.ID,
  sessionId = { type = "string", minLength = 1, maxLength = 200 },
  status = { type = { "string", "array" }, maxItems = #states.STATUSES,
             items = { type = "string", enum = states.STATUSES },
             description = "One status or a list: " .. table.concat(states.STATUSES, ", ") .. "." },
  tags = common.STRINGS,
  allTags = common.STRINGS,
  name = { type = "string", minLength = 1, maxLength = 200, description = "Case-insensitive substring of the name." },
  global = { type = "boolean" },
}
for _, k in ipairs(selectors.KEYS) do assert(SELECTOR_SCHEMA[k], "no schema for selector key " .. k) end

-- Schema properties for the selector keys a tool takes, with its own
-- descriptions where given, added to props.
function common.selector_props(keys, descriptions, props)
  props = props or {}
  for _, k in ipairs(keys) do
    local d = descriptions and descriptions[k]
    props[k] = d and common.with(SELECTOR_SCHEMA[k], { description = d }) or SELECTOR_SCHEMA[k]
  end
  return props
end

-- "'processId', 'sessionId', 'status' or 'tags'": a list of fields for messages.
function common.either(keys)
  local quoted = {}
  for i, k in ipairs(keys) do quoted[i] = "'" .. k .. "'" end
  if #quoted < 2 then return quoted[1] or "" end
  return table.concat(quoted, ", ", 1, #quoted - 1) .. " or " .. quoted[#quoted]
end

-- The job processId (or its alias taskId) names, by id or by name (see
-- engine:resolve), for the caller of ctx: its record, or nil and an error.
function common.lookup(engine, args, ctx)
  local ref = args.processId or args.taskId
  if not ref then return errors.fail("invalid_argument", "missing required field 'processId'") end
  return engine:resolve(ref, ctx and ctx.sessionId, args.processId and "processId" or "taskId")
end

-- A regular expression from argument `field`: the compiled regex, or nil
-- and an invalid_argument error naming the field.
function common.regex(field, source)
  local re, err = regex.new(source)
  if not re then return errors.fail("invalid_argument", "'%s': %s", field, err) end
  return re
end

-- Compile a selector under the engine's tag policy: the selector, or nil
-- and an invalid_argument error.
function common.selector(engine, criteria)
  local s, err = engine:selector(criteria)
  if not s then return errors.fail("invalid_argument", "%s", err) end
  return s
end

-- A tool's arguments checked: against its inputSchema, then by its own
-- check(args, engine) for what a schema cannot say. The normalized
-- arguments, or nil and an invalid_argument error naming the field.
function common.validate(def, args, engine)
  if args ~= nil and type(args) ~= "table" then
    return errors.fail("invalid_argument", "%s: arguments must be an object, got %s", def.name, type(args))
  end
  local norm, err = schema.validate(def.inputSchema, args)
  if not norm then return errors.fail("invalid_argument", "%s: %s", def.name, err) end
  if def.check then
    local ok, cerr = def.check(norm, engine)
    if not ok then return nil, cerr end
  end
  return norm
end

return common
