-- JSON for bgproc: decode with lua-cjson (fast, C); encode here, because the
-- cjson in Debian cannot tell an empty array from an empty object. Tables
-- made with json.array() always encode as arrays; other tables encode as
-- arrays when they are non-empty sequences, else as objects.
local cjson = require "cjson"
local text = require "bgproc.lib.text"

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

local valid_utf8 = text.utf8

local function quote(s)
  if s:find('[%c"\\\127-\255]') then -- rare: escapes or non-ASCII
    s = valid_utf8(s)
    if s:find('[%c"\\\127]') then s = s:gsub('[%c"\\\127]', escapes) end
  end
  return '"' .. s .. '"'
end

-- Object keys repeat (every record has the same ones): quote each once,
-- for a bounded number of distinct keys.
local key_cache, cached = {}, 0
local function key(k)
  local q = key_cache[k]
  if q then return q end
  q = quote(k) .. ":"
  if cached < 4096 then
    key_cache[k] = q
    cached = cached + 1
  end
  return q
end

local mtype, tointeger, format, tostring_ = math.type, math.tointeger, string.format, tostring

local function number(v)
  if mtype(v) == "integer" then return tostring_(v) end
  if v ~= v or v == math.huge or v == -math.huge then return "null" end
  local i = tointeger(v)
  if i then return tostring_(i) end
  return format("%.17g", v)
end

local encode_value

local function is_sequence(t, n)
  local count = 0
  for _ in pairs(t) do
    count = count + 1
    if count > n then return false end
  end
  return count == n
end

-- Whether t encodes as an array: made with json.array(), or a non-empty
-- sequence (other tables, the empty one too, encode as objects).
local function is_list(t, n)
  return getmetatable(t) == array_mt or (n > 0 and is_sequence(t, n))
end

function json.is_list(t)
  return is_list(t, #t)
end

-- Append t's encoding to buf from index i; returns the next free index.
local function encode_table(t, buf, i, depth)
  if depth > 64 then error("json: nesting too deep", 0) end
  local n = #t
  if is_list(t, n) then
    if n == 0 then
      buf[i] = "[]"
      return i + 1
    end
    buf[i] = "["
    i = i + 1
    for k = 1, n do
      if k > 1 then
        buf[i] = ","
        i = i + 1
      end
      i = encode_value(t[k], buf, i, depth + 1)
    end
    buf[i] = "]"
    return i + 1
  end
  buf[i] = "{"
  i = i + 1
  local first = true
  for k, v in pairs(t) do
    local tk = type(k)
    if tk == "number" then k, tk = number(k), "string" end
    if tk == "string" then
      if first then first = false else
        buf[i] = ","
        i = i + 1
      end
      buf[i] = key(k)
      i = encode_value(v, buf, i + 1, depth + 1)
    end
  end
  buf[i] = "}"
  return i + 1
end

function encode_value(v, buf, i, depth)
  local t = type(v)
  if t == "string" then buf[i] = quote(v)
  elseif t == "number" then buf[i] = number(v)
  elseif t == "boolean" then buf[i] = v and "true" or "false"
  elseif t == "table" then return encode_table(v, buf, i, depth)
  else buf[i] = "null" end -- nil, json.null, functions, userdata
  return i + 1
end

local function lua_encode(v)
  local buf = {}
  encode_value(v, buf, 1, 0)
  return table.concat(buf)
end

-- The C encoder when it is built (make, luarocks); this file's otherwise.
local has_c, jsonenc = pcall(require, "bgproc.jsonenc")
local c_encode = has_c and jsonenc.encode

-- Encode v as JSON text; raises only on tables nested deeper than 64.
function json.encode(v)
  if c_encode then return c_encode(v, array_mt) end
  return lua_encode(v)
end

-- Same as json.encode, always in Lua (for tests comparing both).
json.lua_encode = lua_encode

-- v as indented JSON with sorted keys: the same bytes on every run, for
-- files generated from Lua tables and kept in git.
function json.pretty(v, indent)
  indent = indent or ""
  if type(v) ~= "table" then return json.encode(v) end
  local inner = indent .. "  "
  local parts = {}
  if json.is_list(v) then
    if #v == 0 then return "[]" end
    for i, x in ipairs(v) do parts[i] = inner .. json.pretty(x, inner) end
    return "[\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  if #keys == 0 then return "{}" end
  table.sort(keys)
  for i, k in ipairs(keys) do parts[i] = inner .. json.encode(k) .. ": " .. json.pretty(v[k], inner) end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end

-- Keys whose values are always arrays in bgproc's messages: an empty one
-- decodes as a plain table, and is marked again by normalize(). The
-- modules that define the messages declare them (tools/init.lua for
-- tool arguments and results, rpc.lua for the protocol's own).
json.ARRAY_KEYS = {}

function json.array_keys(list)
  for _, k in ipairs(list) do json.ARRAY_KEYS[k] = true end
end

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
-- JSON as RFC 8259 has it: no NaN, Infinity or hex numbers (cjson takes
-- them by default, and they would come back as null: an id NaN would be
-- answered with id null)
decoder.decode_invalid_numbers(false)

-- JSON that keeps every string's bytes as they are, valid UTF-8 or not
-- (json.encode makes them valid): for what bgproc stores and reads back
-- itself, such as a command to run again. Raises on what JSON cannot say.
local exact = cjson.new()
exact.encode_sparse_array(true)
json.encode_exact = exact.encode

-- Decode s: value, or nil and a message.
function json.decode(s)
  local ok, v = pcall(decoder.decode, s)
  if not ok then return nil, (tostring(v):gsub("^.-:%d+: ", "")) end
  return v
end

return json
