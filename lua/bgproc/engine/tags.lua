-- Tag policy. Tags are short labels agents and people filter by ("server",
-- "test", "frontend"). They are normalized (trimmed, lower-cased) and
-- checked: a charset, a length limit, a count limit, no duplicates. Edit
-- the limits here or override them through the config (`tags = {...}`).
local tags = {}

tags.policy = {
  max_length = 32,
  max_count = 16,
  -- first character alphanumeric, then these
  charset = "a-z0-9._:/+-",
}

-- charset -> Lua pattern, built once per charset (one per policy, in practice)
local patterns = {}
local function pattern(policy)
  local cs = policy.charset
  local p = patterns[cs]
  if not p then
    p = "^[a-z0-9][" .. cs:gsub("%-$", "%%-") .. "]*$"
    patterns[cs] = p
  end
  return p
end

-- Normalize one tag: trimmed and lower-cased, or nil and why not.
function tags.normalize_one(tag, policy)
  policy = policy or tags.policy
  if type(tag) ~= "string" then
    return nil, ("tag %s is not a string"):format(tostring(tag))
  end
  local t = tag:match("^%s*(.-)%s*$"):lower()
  if t == "" then return nil, "empty tag" end
  if #t > policy.max_length then
    return nil, ("tag '%s' is longer than %d characters"):format(t, policy.max_length)
  end
  if not t:find(pattern(policy)) then
    return nil, ("tag '%s' must start with a letter or digit and use only %s"):format(
      tag, policy.charset)
  end
  return t
end

-- Normalize a list (or a single string): a new de-duplicated list in the
-- given order, or nil and a message naming the bad tag.
function tags.normalize(list, policy)
  policy = policy or tags.policy
  if list == nil then return {} end
  if type(list) == "string" then list = { list } end
  local out, seen = {}, {}
  for _, tag in ipairs(list) do
    local t, err = tags.normalize_one(tag, policy)
    if not t then return nil, err end
    if not seen[t] then
      seen[t] = true
      out[#out + 1] = t
    end
  end
  if #out > policy.max_count then
    return nil, ("too many tags: %d (at most %d)"):format(#out, policy.max_count)
  end
  return out
end

-- A set {tag = true} of a normalized list.
function tags.set(list)
  local s = {}
  for _, t in ipairs(list) do s[t] = true end
  return s
end

return tags
