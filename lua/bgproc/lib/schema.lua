-- A JSON Schema subset, enough for the tools' inputSchema: type (one or a
-- list), properties, required, additionalProperties (false or a schema), enum,
-- minimum/maximum, minLength/maxLength, items, minItems/maxItems.
--
-- validate() returns a normalized copy (integral floats made integers,
-- as JSON decoders produce floats) or nil and a message that names the
-- field and says what was expected.
local json = require "bgproc.lib.json"

local schema = {}

local function lua_type(v)
  local t = type(v)
  if t == "number" then
    -- integral and representable as a Lua integer (1e300 is not)
    return math.tointeger(v) and "integer" or "number"
  end
  if t == "table" then
    if json.is_list(v) then return "array" end -- as it would encode
    return next(v) == nil and "empty" or "object"
  end
  if v == json.null then return "null" end
  return t
end

local function describe(v)
  local t = lua_type(v)
  if t == "empty" then return "an empty table" end
  if t == "string" then
    local s = #v > 40 and v:sub(1, 37) .. "..." or v
    return ("string %q"):format(s)
  end
  if t == "integer" or t == "number" then return ("number %s"):format(tostring(v)) end
  return t
end

local function matches_type(want, actual)
  if want == actual then return true end
  if want == "number" and actual == "integer" then return true end
  if actual == "empty" and (want == "array" or want == "object") then return true end
  return false
end

local function type_ok(s, v)
  local want = s.type
  if want == nil then return true end
  local actual = lua_type(v)
  if type(want) == "string" then return matches_type(want, actual), want end
  for _, w in ipairs(want) do
    if matches_type(w, actual) then return true, w end
  end
  return false
end

local function type_words(want)
  local names = { integer = "an integer", number = "a number", string = "a string",
                  boolean = "a boolean", array = "an array", object = "an object" }
  if type(want) == "string" then return names[want] or want end
  local words = {}
  for i, w in ipairs(want) do words[i] = names[w] or w end
  return table.concat(words, " or ")
end

local validate

local function check_object(s, v, path)
  local out = {}
  if s.properties and s.additionalProperties == false then
    for k in pairs(v) do
      if type(k) ~= "string" or not s.properties[k] then
        local names = {}
        for name in pairs(s.properties) do names[#names + 1] = name end
        table.sort(names)
        return nil, ("unknown field '%s%s' (expected one of: %s)"):format(
          path, tostring(k), table.concat(names, ", "))
      end
    end
  end
  for _, name in ipairs(s.required or {}) do
    if v[name] == nil or v[name] == json.null then
      return nil, ("missing required field '%s%s'"):format(path, name)
    end
  end
  local extra = type(s.additionalProperties) == "table" and s.additionalProperties or nil
  for k, value in pairs(v) do
    local sub = s.properties and s.properties[k] or extra
    if extra and type(k) ~= "string" then
      return nil, ("'%s' must have string keys, got %s"):format(path:sub(1, -2), describe(k))
    end
    if value == json.null and not (sub and sub.type == "null") then
      -- a JSON null for an optional field means "not given"
    elseif sub then
      local norm, err = validate(sub, value, path .. k)
      if err then return nil, err end
      out[k] = norm
    else
      out[k] = value
    end
  end
  return out
end

local function check_array(s, v, path)
  local n = #v
  if s.minItems and n < s.minItems then
    return nil, ("'%s' must have at least %d item(s), got %d"):format(path, s.minItems, n)
  end
  if s.maxItems and n > s.maxItems then
    return nil, ("'%s' must have at most %d item(s), got %d"):format(path, s.maxItems, n)
  end
  local out = json.array()
  for i = 1, n do
    local norm, err = v[i], nil
    if s.items then norm, err = validate(s.items, v[i], ("%s[%d]"):format(path, i)) end
    if err then return nil, err end
    out[i] = norm
  end
  return out
end

function validate(s, v, path)
  local ok, as = type_ok(s, v)
  if not ok then
    return nil, ("'%s' must be %s, got %s"):format(path, type_words(s.type), describe(v))
  end
  if s.enum then
    local found = false
    for _, e in ipairs(s.enum) do
      if e == v then found = true break end
    end
    if not found then
      local words = {}
      for i, e in ipairs(s.enum) do words[i] = ("%q"):format(tostring(e)) end
      return nil, ("'%s' must be one of %s, got %s"):format(path, table.concat(words, ", "), describe(v))
    end
  end
  local t = lua_type(v)
  if t == "integer" or t == "number" then
    if as == "integer" then v = math.tointeger(v) or v end
    if s.minimum and v < s.minimum then
      return nil, ("'%s' must be >= %s, got %s"):format(path, tostring(s.minimum), tostring(v))
    end
    if s.maximum and v > s.maximum then
      return nil, ("'%s' must be <= %s, got %s"):format(path, tostring(s.maximum), tostring(v))
    end
    return v
  end
  if t == "string" then
    local len = utf8.len(v) or #v
    if s.minLength and len < s.minLength then
      return nil, ("'%s' must be at least %d character(s) long"):format(path, s.minLength)
    end
    if s.maxLength and len > s.maxLength then
      return nil, ("'%s' must be at most %d characters long, got %d"):format(path, s.maxLength, len)
    end
    return v
  end
  if as == "object" then
    return check_object(s, v, path == "" and "" or path .. ".")
  end
  if as == "array" then return check_array(s, v, path) end
  return v
end

-- Validate v against schema s. Returns the normalized value, or nil and a
-- message naming the field.
function schema.validate(s, v)
  if v == nil or v == json.null then v = {} end
  return validate(s, v, "")
end

return schema
