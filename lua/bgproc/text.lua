-- Output as text for people and models: ANSI escapes removed, carriage-
-- return progress bars collapsed to their final state, valid UTF-8 (bad
-- bytes become U+FFFD), and line helpers.
local text = {}

local REPLACEMENT = "\u{FFFD}"

-- Valid UTF-8: every invalid byte replaced by U+FFFD.
function text.utf8(s)
  if not s:find("[\128-\255]") or utf8.len(s) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local ok, bad = utf8.len(s, i)
    if ok then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, bad - 1)
    out[#out + 1] = REPLACEMENT
    i = bad + 1
  end
  return table.concat(out)
end

-- Remove terminal escape sequences: CSI (colours, cursor moves), OSC
-- (titles, hyperlinks), and two-byte escapes.
function text.strip_ansi(s)
  if not s:find("\27", 1, true) then return s end
  s = s:gsub("\27%[[0-?]*[ -/]*[@-~]", "")
  s = s:gsub("\27%][^\7\27]*\7", ""):gsub("\27%][^\7\27]*\27\\", "")
  s = s:gsub("\27[PX^_][^\27]*\27\\", "")
  s = s:gsub("\27[%(%)][%w]", ""):gsub("\27[@-Z\\-_]", "")
  return s
end

-- "50%\r75%\r100%\n" -> "100%\n": each line keeps what is after its last CR.
function text.collapse_cr(s)
  if not s:find("\r", 1, true) then return s end
  s = s:gsub("\r+\n", "\n")
  return (s:gsub("[^\n]*\r([^\r\n]*)", "%1"))
end

-- The cleaned text of raw output.
function text.clean(s, strip)
  if strip then s = text.collapse_cr(text.strip_ansi(s)) end
  return text.utf8(s)
end

-- How many bytes at the end of s begin something a later read completes:
-- a UTF-8 character cut short, or an escape sequence without its end.
function text.incomplete_tail(s)
  local n = #s
  -- a UTF-8 lead byte in the last 3 whose sequence runs past the end
  for back = 1, math.min(3, n) do
    local b = s:byte(n - back + 1)
    if b >= 0xC0 then
      local need = b >= 0xF0 and 4 or b >= 0xE0 and 3 or 2
      return need > back and back or 0
    end
    if b < 0x80 then break end
  end
  -- an ESC in the last 64 bytes not followed by a final byte yet
  local esc = s:find("\27[^\27]*$", math.max(1, n - 63))
  if esc then
    local rest = s:sub(esc)
    if rest == "\27" or rest:find("^\27%[[0-?]*[ -/]*$") or rest:find("^\27%][^\7]*$") then
      return #rest
    end
  end
  return 0
end

-- Where the text after the last "\n" begins (1 if there is none). Linear:
-- s:match("[^\n]*$") is tried from every position, which is quadratic-ish
-- on long output (a quarter of a second for 1 MB of short lines).
function text.last_line_start(s)
  local start, at = 1, 1
  while true do
    local nl = s:find("\n", at, true)
    if not nl then return start end
    start, at = nl + 1, nl + 1
  end
end

-- Split into lines; a final line without "\n" is a line too.
function text.lines(s)
  local out = {}
  for line in s:gmatch("([^\n]*)\n") do out[#out + 1] = line end
  local rest = s:sub(text.last_line_start(s))
  if rest ~= "" then out[#out + 1] = rest end
  return out
end

-- The last non-empty line, trimmed, at most max characters.
function text.last_line(s, max)
  local last
  for line in s:gmatch("[^\n]+") do
    if line:find("%S") then last = line end
  end
  if not last then return nil end
  last = last:match("^%s*(.-)%s*$")
  if max and utf8.len(last) and utf8.len(last) > max then
    last = last:sub(1, utf8.offset(last, max + 1) - 1) .. "…"
  end
  return last
end

return text
