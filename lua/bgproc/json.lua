-- JSON for bgproc: decode with lua-cjson (fast, C); encode here, because the
-- cjson in Debian cannot tell an empty array from an empty object. Tables
-- made with json.array() always encode as arrays; other tables encode as
-- arrays when they are non-empty sequences, else as objects.
local cjson = require "cjson"

local json = {}

json.null = cjson.null

local array_mt = { __name = "json.array" }

-- Mark t (a new table if nil) as a JSON array.
function json.array(t)
  return setmetatable(t or {}, array_mt)
end

function json.is_array(t)
  return getmetatable(t) == array_mt
end

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
for i = 0, 31 do
  local c = string.char(i)
  escapes[c] = escapes[c] or ("\\u%04x"):format(i)
end
escapes["\127"] = "\\u007f"

local function valid_utf8(s)
  if not s:find("[\128-\255]") then return s end
  if utf8.len(s) then return s end
  local out, i = {}, 1
  while i <= #s do
    local ok, bad = utf8.len(s, i)
    if ok then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, bad - 1)
    out[#out + 1] = "\u{FFFD}"
    i = bad + 1
  end
  return table.concat(out)
end

local function quote(s)
  s = valid_utf8(s)
  if s:find('[%c"\\\127]') then s = s:gsub('[%c"\\\127]', escapes) end
  return '"' .. s .. '"'
end

local function number(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v or v == math.huge or v == -math.huge then return "null" end
  local i = math.tointeger(v)
  if i then return tostring(i) end
  return ("%.17g"):format(v)
end

local encode_value

local function is_sequence(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do
    count = count + 1
    if count > n then return false end
  end
  return count == n
end

local function encode_table(t, buf, depth)
  if depth > 64 then error("json: nesting too deep", 0) end
  if getmetatable(t) == array_mt or is_sequence(t) then
    buf[#buf + 1] = "["
    for i = 1, #t do
      if i > 1 then buf[#buf + 1] = "," end
      encode_value(t[i], buf, depth + 1)
    end
    buf[#buf + 1] = "]"
    return
  end
  buf[#buf + 1] = "{"
  local first = true
  for k, v in pairs(t) do
    if type(k) == "number" then k = number(k):gsub('"', "") end
    if type(k) == "string" then
      if not first then buf[#buf + 1] = "," end
      first = false
      buf[#buf + 1] = quote(k)
      buf[#buf + 1] = ":"
      encode_value(v, buf, depth + 1)
    end
  end
  buf[#buf + 1] = "}"
end

function encode_value(v, buf, depth)
  local t = type(v)
  if t == "string" then buf[#buf + 1] = quote(v)
  elseif t == "number" then buf[#buf + 1] = number(v)
  elseif t == "boolean" then buf[#buf + 1] = v and "true" or "false"
  elseif t == "table" then encode_table(v, buf, depth)
  else buf[#buf + 1] = "null" end -- nil, json.null, functions, userdata
end

-- Encode v; raises only on tables nested deeper than 64.
function json.encode(v)
  local buf = {}
  encode_value(v, buf, 0)
  return table.concat(buf)
end

-- Keys whose values are always arrays in bgproc's messages: an empty one
-- decodes as a plain table, and is marked again by normalize().
json.ARRAY_KEYS = {
  tags = true, argv = true, processes = true, killed = true, alreadyFinished = true,
  errors = true, tools = true, content = true, allTags = true,
}

-- After decoding: integral numbers become integers, and empty tables under
-- json.ARRAY_KEYS become arrays again. Modifies v in place; returns it.
function json.normalize(v, key, depth)
  local t = type(v)
  if t == "number" then
    return math.tointeger(v) or v
  end
  if t ~= "table" or (depth or 0) > 64 then return v end
  if key and json.ARRAY_KEYS[key] and next(v) == nil then return json.array(v) end
  for k, x in pairs(v) do
    v[k] = json.normalize(x, k, (depth or 0) + 1) -- assigning existing keys is safe in pairs
  end
  return v
end

local decoder = cjson.new()
decoder.decode_max_depth(64)

-- Decode s: value, or nil and a message.
function json.decode(s)
  local ok, v = pcall(decoder.decode, s)
  if not ok then return nil, (tostring(v):gsub("^.-:%d+: ", "")) end
  return v
end

return json
