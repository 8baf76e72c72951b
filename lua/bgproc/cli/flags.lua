-- The flags of the subcommands that call a tool, made from what each tool
-- declares (its `cli` list, lua/bgproc/tools/): one entry per flag,
--   { field, flag, help, argname = "<ms>", value = v, also = { k = v },
--     mutex = "group", default = "30000", parse = "duration" | "bytes",
--     args = "?" }
-- The tool's inputSchema says the rest: a boolean (or an entry with a
-- `value`) is a flag; a list is a repeatable option, with the schema's
-- enum as its choices; an integer is checked, and its error names the
-- flag. `parse` reads "15m" or "512M"; `args = "?"` makes the value
-- optional (an integer, 0 when left out). Parsed values land under the
-- tool's field names.
local tools = require "bgproc.tools"
local units = require "bgproc.lib.units"

local flags = {}

-- A converter for an integer flag whose error names the flag.
function flags.integer(flag)
  return function(s)
    local n = math.tointeger(tonumber(s))
    if n then return n end
    return nil, ("%s: expected a whole number, got '%s'"):format(flag, s)
  end
end

local function types_of(prop)
  local set = {}
  for _, t in ipairs(type(prop.type) == "table" and prop.type or { prop.type }) do set[t] = true end
  return set
end

-- Converters for entries with `parse`: what the flag's value means, and
-- how its error says what was expected.
local PARSE = {
  duration = { units.duration_ms, "a duration like 500ms, 30s, 15m, 2h or 7d" },
  bytes = { units.bytes, "a size like 1048576, 512K, 256M or 2G" },
}

local function parser_of(entry)
  local fn, expected = table.unpack(PARSE[entry.parse])
  return function(s)
    local v = fn(s)
    if v then return v end
    return nil, ("%s: expected %s, got '%s'"):format(entry[2], expected, s)
  end
end

-- A number where one is given ("9" -> 9, "TERM" stays): for fields that
-- take a name or a number.
local function number_or_string(s)
  return math.tointeger(tonumber(s)) or s
end

-- Add entry's option to argparse command cmd; returns it.
local function add(cmd, entry, prop)
  local field, flag, help = entry[1], entry[2], entry[3]
  local names = entry.short and (entry.short .. " " .. flag) or flag -- (messages name the long one)
  local types = types_of(prop)
  if entry.value ~= nil or types.boolean then return cmd:flag(names, help):target(field) end
  local opt
  if entry.parse then
    opt = cmd:option(names, help, entry.default, parser_of(entry))
  elseif entry.args then -- an optional value ("--port" or "--port 3000"): a list of 0 or 1
    opt = cmd:option(names, help):args(entry.args)
  elseif types.array or types.object then
    opt = cmd:option(names, help):count("*"):init({})
    local enum = prop.items and prop.items.enum
    if enum then opt:choices(enum) end
  elseif types.integer and not types.string then
    opt = cmd:option(names, help, entry.default, flags.integer(flag))
  elseif types.integer then
    opt = cmd:option(names, help, entry.default, number_or_string)
  else
    opt = cmd:option(names, help, entry.default)
    if prop.enum then opt:choices(prop.enum) end
  end
  if entry.argname then opt:argname(entry.argname) end
  return opt:target(field)
end

-- Add the flags tool `name` declares to cmd, in their order; flags of one
-- mutex group exclude each other.
function flags.add(cmd, name)
  local def = tools.by_name[name]
  local groups, order = {}, {}
  for _, entry in ipairs(def.cli) do
    local opt = add(cmd, entry, def.inputSchema.properties[entry[1]])
    if entry.mutex then
      if not groups[entry.mutex] then
        groups[entry.mutex] = {}
        order[#order + 1] = entry.mutex
      end
      table.insert(groups[entry.mutex], opt)
    end
  end
  for _, g in ipairs(order) do cmd:mutex(table.unpack(groups[g])) end
end

-- An object field given as NAME=VALUE (repeatable): the table, or nil
-- and what is wrong.
local function pairs_of(list, flag)
  local t = {}
  for _, kv in ipairs(list) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then return nil, ("%s: expected NAME=VALUE, got '%s'"):format(flag, kv) end
    t[k] = v
  end
  return t
end

local function is_object(def, field)
  return types_of(def.inputSchema.properties[field]).object
end

-- What is wrong with the parsed flags of tool `name` that argparse cannot
-- tell (NAME=VALUE pairs), or nil.
function flags.check(name, a)
  local def = tools.by_name[name]
  for _, entry in ipairs(def.cli) do
    local v = a[entry[1]]
    if is_object(def, entry[1]) then
      local _, err = pairs_of(v, entry[2])
      if err then return err end
    elseif entry.args and type(v) == "table" and v[1] then
      local _, err = flags.integer(entry[2])(v[1])
      if err then return err end
    end
  end
end

-- The tool's arguments from parsed flags a (fields not given stay nil).
function flags.args(name, a)
  local def = tools.by_name[name]
  local args = {}
  for _, entry in ipairs(def.cli) do
    local field, v = entry[1], a[entry[1]]
    if entry.args and type(v) == "table" then v = math.tointeger(tonumber(v[1] or 0)) end -- "--port": 0, any
    if is_object(def, field) then v = next(v) ~= nil and pairs_of(v, entry[2]) or {} end
    if type(v) == "table" and next(v) == nil and not is_object(def, field) then v = nil end -- not given
    if v == false then v = nil end
    if v ~= nil then
      if entry.value ~= nil then v = entry.value end
      args[field] = v
      for k, x in pairs(entry.also or {}) do args[k] = x end
    end
  end
  return args
end

-- How a user names field of tool `name` on the command line ("--tag").
function flags.flag_of(name, field)
  for _, entry in ipairs(tools.by_name[name].cli) do
    if entry[1] == field then return entry[2] end
  end
end

return flags
