-- `bgproc top`'s terminal: raw mode, the alternate screen, keys, the
-- size, and drawing a frame by rewriting only the lines that changed.
-- Whatever happens, restore() puts the terminal back as it was.
local uv = require "luv"

local term = {}

-- ---- keys ----------------------------------------------------------------------------------

-- CSI and SS3 sequences of the keys top knows (xterm and its kin).
local FINAL = { A = "up", B = "down", C = "right", D = "left", H = "home", F = "end" }
local TILDE = { ["1"] = "home", ["7"] = "home", ["4"] = "end", ["8"] = "end", ["5"] = "pgup", ["6"] = "pgdn",
                ["3"] = "delete" }
local CONTROL = { [3] = "ctrl-c", [13] = "enter", [10] = "enter", [127] = "backspace", [8] = "backspace" }

-- An escape sequence at position i of s: the key's name (nil when top
-- does not know it) and the position after it. A lone ESC (nothing after
-- it in the same read) is the Esc key.
local function escape_at(s, i)
  local intro = s:sub(i + 1, i + 1)
  if intro ~= "[" and intro ~= "O" then return "esc", i + 1 end
  local params, final, after = s:match("^([0-9;]*)([@-~])()", i + 2)
  if not final then return nil, #s + 1 end -- cut short: dropped
  if final == "~" then return TILDE[params:match("^%d+") or ""], after end
  return FINAL[final], after
end

-- The keys in what one read returned: names ("up", "pgdn", "enter",
-- "esc", "backspace", "ctrl-c", ...) and printable characters as
-- themselves (UTF-8). Other control codes are dropped.
function term.keys(s)
  local keys, i = {}, 1
  while i <= #s do
    local b = s:byte(i)
    local key
    if b == 27 then
      key, i = escape_at(s, i)
    elseif b < 32 or b == 127 then
      key, i = CONTROL[b], i + 1
    else
      local j = s:match("^" .. utf8.charpattern .. "()", i)
      if j then key, i = s:sub(i, j - 1), j else i = i + 1 end
    end
    keys[#keys + 1] = key
  end
  return keys
end

-- ---- the terminal --------------------------------------------------------------------------

local Term = {}
Term.__index = Term

local ENTER = "\27[?1049h\27[?25l\27[H\27[2J" -- alternate screen, cursor hidden
local LEAVE = "\27[?25h\27[?1049l"             -- cursor shown, main screen back

-- Take over the terminal on stdin/stdout: raw mode (no echo, keys as they
-- come, Ctrl-C as a byte), the alternate screen. on_keys(bytes) gets
-- what is typed. Returns the Term, or nil and a message.
function term.open(on_keys)
  local input, ierr = uv.new_tty(0, true)
  if not input then return nil, "cannot use the terminal: " .. tostring(ierr) end
  local output, oerr = uv.new_tty(1, false)
  if not output then
    input:close()
    return nil, "cannot use the terminal: " .. tostring(oerr)
  end
  -- a frame goes out whole before the next is made: one write, no queue
  output:set_blocking(true)
  local self = setmetatable({ input = input, output = output, prev = {}, restored = false }, Term)
  local ok, merr = input:set_mode(1)
  if not ok then
    self:restore()
    return nil, "cannot put the terminal in raw mode: " .. tostring(merr)
  end
  self:write(ENTER)
  input:read_start(function(err, data)
    if data then on_keys(data) elseif err then on_keys(nil, err) end
  end)
  return self
end

-- Write s now. The output is blocking, so try_write takes all of it but
-- for a signal's interruption; what is left goes through a queued write.
function Term:write(s)
  while s ~= "" do
    local n = self.output:try_write(s)
    if not n or n <= 0 then
      self.output:write(s)
      return
    end
    s = s:sub(n + 1)
  end
end

-- Columns and rows (80x24 when the terminal will not say).
function Term:size()
  local w, h = self.output:get_winsize()
  if not w or w < 1 or not h or h < 1 then return 80, 24 end
  return w, h
end

-- The next draw repaints every line (after a resize or another screen).
function Term:invalidate()
  self.prev = {}
  self.clear = true
end

-- Draw lines (at most `height`): each changed line is cleared and
-- rewritten in place; the others are left alone.
function Term:draw(lines, height)
  local out = {}
  if self.clear then
    out[1] = "\27[H\27[2J"
    self.clear = false
  end
  local prev = self.prev
  for i = 1, height do
    local line = lines[i] or ""
    if prev[i] ~= line then
      out[#out + 1] = ("\27[%d;1H\27[2K"):format(i)
      out[#out + 1] = line
      prev[i] = line
    end
  end
  for i = height + 1, #prev do prev[i] = nil end
  self:write(table.concat(out))
end

-- Put the terminal back: cursor, main screen, cooked mode. Safe to call
-- more than once, and from any state open() reached.
function Term:restore()
  if self.restored then return end
  self.restored = true
  pcall(self.input.read_stop, self.input)
  uv.tty_reset_mode()
  pcall(self.write, self, LEAVE)
  for _, h in ipairs { self.input, self.output } do
    if not h:is_closing() then h:close() end
  end
end

return term
