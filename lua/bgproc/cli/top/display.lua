-- Text as a terminal shows it, for `bgproc top`: display width (UTF-8,
-- wide and zero-width characters), cutting to a width with "…", padding,
-- and making a job's text safe to print.
local text = require "bgproc.lib.text"

local display = {}

-- ---- display width -------------------------------------------------------------------------

-- Codepoint ranges a terminal draws two columns wide (East Asian wide and
-- full-width, emoji) and zero wide (combining marks, zero-width spaces).
local WIDE = {
  { 0x1100, 0x115F }, { 0x2E80, 0x303E }, { 0x3041, 0x33FF }, { 0x3400, 0x4DBF }, { 0x4E00, 0x9FFF },
  { 0xA000, 0xA4CF }, { 0xAC00, 0xD7A3 }, { 0xF900, 0xFAFF }, { 0xFE30, 0xFE4F }, { 0xFF00, 0xFF60 },
  { 0xFFE0, 0xFFE6 }, { 0x1F300, 0x1F64F }, { 0x1F680, 0x1F6FF }, { 0x1F900, 0x1FAFF }, { 0x20000, 0x3FFFD },
}
local ZERO = { { 0x0300, 0x036F }, { 0x200B, 0x200F }, { 0x20D0, 0x20FF }, { 0xFE00, 0xFE0F } }

local function in_ranges(cp, ranges)
  for _, r in ipairs(ranges) do
    if cp >= r[1] and cp <= r[2] then return true end
  end
  return false
end

local function cp_width(cp)
  if cp < 0x300 then return 1 end
  if in_ranges(cp, ZERO) then return 0 end
  return in_ranges(cp, WIDE) and 2 or 1
end

-- Columns s takes on a terminal (s is valid UTF-8 without control codes).
function display.width(s)
  if not s:find("[\128-\255]") then return #s end
  local w = utf8.len(s) or #s -- one a character, then corrected where wider or narrower
  for seq in s:gmatch("[\204-\244][\128-\191]*") do -- from U+0300: all others are one wide
    w = w + cp_width(utf8.codepoint(seq)) - 1
  end
  return w
end
local width = display.width

-- s cut to at most n columns; a cut is marked with "…".
function display.clip(s, n)
  if n <= 0 then return "" end
  if not s:find("[\128-\255]") then
    if #s <= n then return s end
    return s:sub(1, n - 1) .. "…"
  end
  if width(s) <= n then return s end
  local w = 0
  for pos, cp in utf8.codes(s) do
    w = w + cp_width(cp)
    if w > n - 1 then return s:sub(1, pos - 1) .. "…" end
  end
  return s
end
local clip = display.clip

-- s clipped to n columns and padded to exactly n (right-aligned: padded
-- on the left).
local function fit(s, n, right)
  s = clip(s, n)
  local pad = (" "):rep(n - width(s))
  return right and pad .. s or s .. pad
end
display.fit = fit

-- Text from a job made safe to print: valid UTF-8, tabs as spaces, other
-- control codes (an escape would drive the terminal) as "?".
function display.sanitize(s)
  if s == nil then return "" end
  s = tostring(s)
  if s:find("[%c\127-\255]") then
    s = text.utf8(s):gsub("\t", "  "):gsub("[%c\127]", "?")
  end
  return s
end

return display
