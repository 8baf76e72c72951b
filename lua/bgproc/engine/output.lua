-- Output: reads in record cursor space, and the cursor rules.
--
-- A cursor counts bytes from the job's first output and goes on across
-- restarts (rec.base is where the current run's ring starts). A reader
-- that comes back for more never gets part of something a later read
-- completes: that part is held back, and the cursor stays before it.
local history = require "bgproc.engine.history"
local states = require "bgproc.engine.states"
local text = require "bgproc.lib.text"

local output = {}
local methods = {}
output.methods = methods

-- Read a record's output from `since`. Returns data, next cursor, bytes
-- dropped since `since` (the ring overwrote them).
function methods:read(rec, since, max, stream)
  since = since or 0
  local src, base = history.source(self, rec)
  if not src then
    local _, head = history.window(rec)
    return "", head, math.max(0, head - since)
  end
  local lost = 0
  local local_since = since - base
  if local_since < 0 then
    lost = -local_since
    local_since = 0
  end
  local data, next, dropped = src:read(local_since, max, stream)
  return data, base + next, lost + dropped
end

-- Output after `since` for a reader that will come back for more (a
-- since-read). keep(data, cut) says how many bytes at its end a later
-- read completes (a character cut short, an escape sequence, an
-- unfinished line; cut: the read stopped at `max` with more output
-- already there); they are held back unless nothing can come after them:
-- the job was complete *before* the read (so the read saw all there will
-- be) and the read reached the end. Judging completeness after the read,
-- or ignoring a read cut short by `max`, split characters at random.
function methods:read_new(rec, since, max, stream, keep)
  local complete = states.complete(rec)
  local data, cursor, dropped = self:read(rec, since, max, stream)
  local _, total = history.window(rec)
  if complete and cursor >= total then return data, cursor, dropped end
  local n = keep(data, cursor < total)
  if n > 0 and n < #data then
    data, cursor = data:sub(1, -n - 1), cursor - n
  elseif n > 0 and n == #data and n < max then
    data, cursor = "", cursor - n
  end
  return data, cursor, dropped
end

-- The last `lines` lines of a stream, at most max bytes (raw).
function methods:tail(rec, lines, stream, max)
  local src = history.source(self, rec)
  if not src then return "" end
  return (src:tail(lines, stream, max))
end

-- The total output so far, in cursor space (what outputBytes says).
function methods:output_bytes(rec)
  return select(2, history.window(rec))
end

-- Complete lines of output after a cursor, cleaned, for pattern scanners.
-- A scanner is { rec, cursor, partial }; returns a list of
-- { line = ..., cursor = offset after the line }.
function methods:scan(scanner)
  local rec = scanner.rec
  local out = {}
  while true do
    local data, next = self:read(rec, scanner.cursor, 256 * 1024)
    if #data == 0 then break end
    local buf = scanner.partial .. data
    local base = next - #buf -- cursor of buf's first byte
    local pos = 1
    while true do
      local nl = buf:find("\n", pos, true)
      if not nl then break end
      out[#out + 1] = { line = text.clean(buf:sub(pos, nl - 1), true), cursor = base + nl }
      pos = nl + 1
    end
    scanner.partial = buf:sub(pos)
    if #scanner.partial > 65536 then -- a line with no end: judge what we have
      out[#out + 1] = { line = text.clean(scanner.partial, true), cursor = next }
      scanner.partial = ""
    end
    scanner.cursor = next
  end
  return out
end

-- When the job has finished and its output is complete, the partial last
-- line counts as a line.
function methods:scan_rest(scanner)
  if scanner.partial == "" then return nil end
  local line = { line = text.clean(scanner.partial, true), cursor = scanner.cursor }
  scanner.partial = ""
  return line
end

-- The first new line of a scanner that regex re matches ({ line, cursor }),
-- or nil. at_end: the output is complete, so the partial last line
-- counts too.
function methods:scan_match(scanner, re, at_end)
  local lines = self:scan(scanner)
  if at_end then lines[#lines + 1] = self:scan_rest(scanner) end
  for _, l in ipairs(lines) do
    if re:test(l.line) then return l end
  end
end

-- A scanner over a record's output from `since` (default: all of it).
function methods:scanner(rec, since)
  return { rec = rec, cursor = since or rec.base, partial = "" }
end

-- The job has reached a final state.
function methods:final(rec)
  return states.final(rec)
end

-- All of the job's output is in (its pipes reached EOF).
function methods:output_done(rec)
  return states.output_done(rec)
end

-- Ended with all its output in: nothing more will come.
function methods:complete(rec)
  return states.complete(rec)
end

return output
