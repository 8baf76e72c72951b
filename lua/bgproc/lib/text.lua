-- Output as text for people and models: ANSI escapes removed, carriage-
-- return progress bars collapsed to their final state, valid UTF-8 (bad
-- bytes become U+FFFD), and line helpers.
local text = {}

local REPLACEMENT = "\u{FFFD}"

-- A run of bytes >= 0x80 (a multibyte character never leaves one),
-- each invalid byte replaced; nil when it is valid.
local function repair_run(run)
  if utf8.len(run) then return nil end
  local out, i, n = {}, 1, #run
  while i <= n do
    local ok, bad = utf8.len(run, i)
    if ok then
      out[#out + 1] = run:sub(i)
      break
    end
    out[#out + 1] = run:sub(i, bad - 1)
    out[#out + 1] = REPLACEMENT
    i = bad + 1
  end
  return table.concat(out)
end

-- The C version, when built (it is, but for a bare Lua checkout): output
-- of binary has an invalid byte every few bytes.
local has_c, jsonenc = pcall(require, "bgproc.jsonenc")

-- Valid UTF-8: every invalid byte replaced by U+FFFD.
function text.utf8(s)
  if not s:find("[\128-\255]") then return s end
  if has_c then return jsonenc.utf8(s) end
  if utf8.len(s) then return s end
  return (s:gsub("[\128-\255]+", repair_run))
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

-- Where the unfinished last line of s starts (after its last "\n"),
-- looked for in ever larger windows at the end. "\n[^\n]*$" costs
-- time linear in the window, while "[^\n]*$" alone would be quadratic in
-- the length of a long line (and output has 50 MB lines).
local function last_line_start(s)
  local window = 256
  while true do
    local from = math.max(1, #s - window + 1)
    local nl = s:find("\n", from, true) -- (plain: fast over a long line)
    if nl then return s:find("\n[^\n]*$", nl) + 1 end
    if from == 1 then return 1 end
    window = window * 4
  end
end

-- "50%\r75%\r100%\n" -> "100%\n": each line keeps what is after its last
-- CR; CRs right before a "\n" only end the line. Plain searches, in time
-- linear in #s: "[^\n]*\r" would be quadratic in a long line's length.
function text.collapse_cr(s)
  local cr = s:find("\r", 1, true)
  if not cr then return s end
  local out, pos, n = {}, 1, #s
  while cr do
    -- lines before the one holding cr have no CR: as they are
    local start, nl = pos, s:find("\n", pos, true)
    while nl and nl < cr do
      start = nl + 1
      nl = s:find("\n", start, true)
    end
    out[#out + 1] = s:sub(pos, start - 1)
    local stop = nl or n + 1 -- the line is [start, stop)
    local e = stop - 1
    if nl then
      while e >= cr and s:byte(e) == 13 do e = e - 1 end
    end
    local last = start - 1 -- the line's last CR before e
    while cr and cr <= e do
      last = cr
      cr = s:find("\r", cr + 1, true)
    end
    out[#out + 1] = s:sub(last + 1, e)
    if nl then out[#out + 1] = "\n" end
    if cr and cr < stop then cr = s:find("\r", stop, true) end
    pos = stop + 1
  end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

-- The cleaned text of raw output.
function text.clean(s, strip)
  if strip then s = text.collapse_cr(text.strip_ansi(s)) end
  return text.utf8(s)
end

-- How many bytes at the end of s a later read completes: a UTF-8
-- character cut short, or an escape sequence without its end.
local function cut_short(s)
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

-- How many bytes at the end of s begin something a later read completes
-- (see cut_short). With `collapse` (progress bars collapsed), so is an
-- unfinished line holding a carriage return: the next CR redraws it, or
-- a "\n" makes a CR-LF of its last CR; cleaned alone, it would come out
-- as a stale state of the bar, or as nothing.
function text.incomplete_tail(s, collapse)
  local keep = cut_short(s)
  if collapse then
    local start = last_line_start(s)
    if s:find("\r", start, true) then keep = math.max(keep, #s - start + 1) end
  end
  return keep
end

-- Split into lines; a final line without "\n" is a line too.
function text.lines(s)
  local out, pos = {}, 1
  local nl = s:find("\n", 1, true)
  while nl do
    out[#out + 1] = s:sub(pos, nl - 1)
    pos = nl + 1
    nl = s:find("\n", pos, true)
  end
  if pos <= #s then out[#out + 1] = s:sub(pos) end
  return out
end

-- The length of the unfinished last line of s (what follows its last "\n").
function text.partial_len(s)
  return #s - last_line_start(s) + 1
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
