-- getBackgroundProcess: one job's record and output, the last lines or
-- what came after a cursor.
local common = require "bgproc.tools.common"
local errors = require "bgproc.lib.errors"
local text = require "bgproc.lib.text"

local int = common.int

local TAIL_SCAN_BYTES = 4 * 1024 * 1024 -- how far back a filtered tail looks

local get = {
  name = "getBackgroundProcess",
  description = "Get one background process: its record and its output. Without `since`, the last "
    .. "`lines` lines (default 100). With `since` (the `cursor` of an earlier answer), only newer "
    .. "output. `filter` (a regular expression) keeps only matching lines in this answer. "
    .. "Output is cleaned of ANSI codes unless stripAnsi is false.",
  annotations = { readOnlyHint = true },
}

-- The lines of out that regex re matches, or nil and a message.
local function filter_lines(out, re)
  local kept = {}
  for _, line in ipairs(text.lines(out)) do
    local ok, err = re:test(line)
    if ok == nil then return nil, err end
    if ok then kept[#kept + 1] = line end
  end
  return kept
end

-- Output after args.since: what a later read completes is held back (a
-- character, an escape sequence, a progress bar when stripping, a line
-- when filtering; see engine/output.lua).
local function read_since(engine, rec, args, o)
  local function keep(raw, cut)
    -- an unfinished line is held back when filtering, and when cleaning
    -- if more is already there (a CR in it may redraw the line); one the
    -- job is still writing shows as it is (a prompt waiting for input)
    local n = (o.re or (cut and o.strip)) and text.partial_len(raw) or text.incomplete_tail(raw, o.strip)
    -- all of a full read awaits more (a bar or a line longer than
    -- maxBytes): hold back no more than a character or sequence cut short
    if n >= #raw and #raw >= o.max then n = text.incomplete_tail(raw, false) end
    return n
  end
  local raw, cursor, dropped = engine:read_new(rec, args.since, o.max, o.stream, keep)
  local output = text.clean(raw, o.strip)
  if o.re then
    local kept, err = filter_lines(output, o.re)
    if not kept then return errors.fail("invalid_argument", "'filter': %s", err) end
    output = #kept > 0 and table.concat(kept, "\n") .. "\n" or ""
  end
  return { output = output, cursor = cursor, dropped = dropped, truncated = cursor < o.total }
end

-- The last args.lines lines (matching ones with a filter).
local function read_tail(engine, rec, args, o)
  local wanted = args.lines or 100
  local raw
  if o.re then -- the last N *matching* lines: scan up to 4 MiB back
    raw = engine:read(rec, math.max(0, o.total - TAIL_SCAN_BYTES), TAIL_SCAN_BYTES, o.stream)
  else
    raw = engine:tail(rec, wanted, o.stream, o.max)
  end
  local cleaned = text.clean(raw, o.strip)
  local all, err
  if o.re then all, err = filter_lines(cleaned, o.re) else all = text.lines(cleaned) end
  if not all then return errors.fail("invalid_argument", "'filter': %s", err) end
  local first = math.max(1, #all - wanted + 1)
  local output = wanted > 0 and table.concat(all, "\n", first) or ""
  if output ~= "" and (o.re or raw:sub(-1) == "\n") then output = output .. "\n" end
  local truncated = first > 1 or (not o.re and #raw >= o.max)
  if #output > o.max then
    output = text.utf8(output:sub(-o.max))
    truncated = true
  end
  return { output = output, cursor = o.total, dropped = 0, truncated = truncated }
end

get.inputSchema = common.object {
  processId = common.ID, taskId = common.TASK_ID,
  lines = { type = "integer", minimum = 0, maximum = 100000, description = "Last N lines (default 100)." },
  since = common.with(common.CURSOR, { description = "A cursor from an earlier answer: only newer output." }),
  maxBytes = { type = "integer", minimum = 1, maximum = 16 * 1024 * 1024,
               description = "At most this many bytes of output (default 65536)." },
  filter = { type = "string", minLength = 1, maxLength = 1000,
             description = "Regular expression (PCRE/JavaScript syntax, /re/i allowed): only matching lines." },
  stream = { type = "string", enum = { "both", "stdout", "stderr" } },
  stripAnsi = { type = "boolean", description = "Remove colour codes and collapse progress bars (default true)." },
}

function get.handler(engine, args, ctx)
  local rec, err = common.lookup(engine, args, ctx)
  if not rec then return nil, err end
  local re
  if args.filter then
    re, err = common.regex("filter", args.filter)
    if not re then return nil, err end
  end
  local r = engine:public(rec)
  local o = { re = re, max = args.maxBytes or 65536, strip = args.stripAnsi ~= false,
              stream = args.stream or "both", total = r.outputBytes }
  local out
  if args.since then out, err = read_since(engine, rec, args, o) else out, err = read_tail(engine, rec, args, o) end
  if not out then return nil, err end
  r.output, r.cursor, r.dropped, r.truncated = out.output, out.cursor, out.dropped, out.truncated
  return r
end

function get.text(r)
  local head = ("%s %s (%s)%s"):format(r.id, r.status, r.name,
    r.exitCode and (" exit " .. int(r.exitCode)) or r.signal and (" signal " .. r.signal) or "")
  return head .. "\n" .. (r.output ~= "" and r.output or "(no output)\n")
    .. ("[cursor %s%s]"):format(int(r.cursor), r.dropped > 0 and (", " .. int(r.dropped) .. " bytes dropped") or "")
end

return get
