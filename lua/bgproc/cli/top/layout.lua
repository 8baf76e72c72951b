-- `bgproc top`'s screens as text: job records in, screen lines out. Pure
-- (no terminal, no clock, no daemon), so a spec can check every width.
-- A line never exceeds the width given, counted in display columns.
local display = require "bgproc.cli.top.display"
local jobs = require "bgproc.cli.top.jobs"
local text = require "bgproc.lib.text"

local layout = {}

local width, clip, fit, sanitize = display.width, display.clip, display.fit, display.sanitize
local CELL = jobs.CELLS

-- ---- columns -----------------------------------------------------------------------------

-- The columns, left to right. w: fixed width; min/max: a flexible one;
-- fill: takes what is left.
local COLUMNS = {
  { key = "id", title = "ID" },
  { key = "name", title = "NAME", min = 8, max = 28 },
  { key = "status", title = "STATUS", w = 9 },
  { key = "pid", title = "PID", w = 7, right = true },
  { key = "cpu", title = "CPU%", w = 5, right = true },
  { key = "mem", title = "MEM", w = 5, right = true },
  { key = "ports", title = "PORTS", min = 5, max = 17 },
  { key = "age", title = "AGE", w = 4, right = true },
  { key = "last", title = "LAST LINE", min = 10, fill = true },
}

-- What goes first when the width is short.
local DROP_ORDER = { "last", "ports", "age", "mem", "pid", "cpu" }

-- The natural width of column c over the rows' cells (its title's at least).
local function natural(c, cells)
  local w = width(c.title)
  for _, row in ipairs(cells) do w = math.max(w, width(row[c.key])) end
  return w
end

-- The columns that fit `avail` columns (one space between two), each
-- with its width `w`: flexible ones at their minimum, dropped in
-- DROP_ORDER until they fit; what is left widens the name, then the
-- ports, and the last line takes the rest. Second value: whether they fit.
local function choose(avail, cells)
  local cols, dropped = {}, {}
  local function total()
    local sum = -1
    for _, c in ipairs(cols) do sum = sum + c.w + 1 end
    return sum
  end
  for _, c in ipairs(COLUMNS) do
    local want = c.w or natural(c, cells)
    cols[#cols + 1] = { key = c.key, title = c.title, right = c.right, fill = c.fill,
                        w = c.w or math.min(want, c.min or want), want = math.min(want, c.max or want) }
  end
  for _, key in ipairs(DROP_ORDER) do
    if total() <= avail then break end
    dropped[key] = true
    for i, c in ipairs(cols) do
      if c.key == key then table.remove(cols, i) break end
    end
  end
  local spare = avail - total()
  for _, c in ipairs(cols) do
    if not c.fill and spare > 0 and c.want > c.w then
      local add = math.min(spare, c.want - c.w)
      c.w, spare = c.w + add, spare - add
    end
  end
  for _, c in ipairs(cols) do
    if c.fill and spare > 0 then c.w = c.w + spare end
  end
  return cols, spare >= 0
end

-- ---- screens -------------------------------------------------------------------------------

local COLORS = { running = "32", completed = "90", failed = "31", cancelled = "33", pending = "36" }

local function sgr(on, code, s)
  if not on or not code then return s end
  return "\27[" .. code .. "m" .. s .. "\27[0m"
end

-- A line of cells: the marker column, then the cells, one space apart.
-- Painted (paint(col, text)) only when the columns fit; when even the
-- fewest do not (a very narrow screen), the plain line is cut instead.
local function cells_line(f, marker, text_of, paint)
  local parts = {}
  for i, c in ipairs(f.cols) do
    local s = fit(text_of(c), c.w, c.right)
    parts[i] = f.fits and paint and paint(c, s) or s
  end
  local line = (f.marker and marker or "") .. table.concat(parts, " ")
  if not f.fits then line = clip(line, f.width) end
  return line
end

-- One job's row: its status painted, the selected row in reverse video.
local function row_line(f, cells, status, selected)
  local line = cells_line(f, selected and ">" or " ", function(c) return cells[c.key] end,
    not selected and function(c, s) return c.key == "status" and sgr(f.color, COLORS[status], s) or s end)
  return selected and sgr(f.color, "7", line) or line
end

local function header_line(f)
  return sgr(f.color, "1", cells_line(f, " ", function(c) return c.title end))
end

local KEY_HELP = "q quit  ↑↓ PgUp PgDn move  k kill  r restart  l logs  / filter  s sort"

-- "2/5 running  sort: cpu  filter: web (2 shown)  every 1s": the sort
-- early, where a narrow screen still shows it.
local function title_line(m)
  local parts = { ("%d/%d running  sort: %s"):format(m.running or 0, m.total or 0, m.sort) }
  if m.filter and m.filter ~= "" then
    parts[#parts + 1] = ("filter: %s (%d shown)"):format(sanitize(m.filter), #m.procs)
  end
  if m.interval then parts[#parts + 1] = ("every %gs"):format(m.interval) end
  return table.concat(parts, "  ")
end

-- Where the list starts so that the selected row is on screen: the
-- previous start, moved as little as it must.
local function scroll(offset, selected, rows, count)
  offset = math.max(1, math.min(offset or 1, math.max(1, count - rows + 1)))
  if selected < offset then offset = selected end
  if selected >= offset + rows then offset = selected - rows + 1 end
  return math.max(1, offset)
end

-- How many rows of jobs fit a screen of `height` lines (opts.height nil:
-- all of them) and which of the title, key help and status lines show.
local function frame_parts(height, count)
  if not height then return count, { title = true } end
  local parts = { title = height >= 4, keys = height >= 10, status = height >= 2 }
  local fixed = 1 -- the column titles
  for _, on in pairs(parts) do fixed = fixed + (on and 1 or 0) end
  return math.max(0, height - fixed), parts
end

-- The list screen. m: { procs (selected and sorted), total, running,
-- sort, filter, interval, selected (index), offset, status (a message),
-- prompt (the filter being typed, or nil), now (epoch seconds), loading
-- (no list yet) }.
-- opts: { width, height (nil: every row), color, marker }. Returns the
-- lines, the offset used (the first row shown) and how many rows fit.
function layout.list(m, opts)
  local w = opts.width
  local nrows, parts = frame_parts(opts.height, #m.procs)
  local offset = scroll(m.offset, m.selected or 1, math.max(1, nrows), #m.procs)
  local cells = {}
  for i = offset, math.min(#m.procs, offset + nrows - 1) do
    local row = {}
    for key, f in pairs(CELL) do row[key] = f(m.procs[i], m.now) end
    cells[#cells + 1] = row
  end
  local f = { width = w, color = opts.color, marker = opts.marker }
  f.cols, f.fits = choose(w - (opts.marker and 1 or 0), cells)
  local lines = {}
  if parts.title then lines[#lines + 1] = clip(title_line(m), w) end
  if parts.keys then lines[#lines + 1] = clip(KEY_HELP, w) end
  lines[#lines + 1] = header_line(f)
  for i, row in ipairs(cells) do
    local index = offset + i - 1
    lines[#lines + 1] = row_line(f, row, m.procs[index].status, opts.marker and index == m.selected)
  end
  if #m.procs == 0 and nrows > 0 then
    lines[#lines + 1] = m.loading and "  reading the list…" or (m.filter or "") ~= "" and "  no job matches the filter"
      or "  no background processes"
  end
  if parts.status then
    while #lines < opts.height - 1 do lines[#lines + 1] = "" end
    lines[#lines + 1] = layout.status_line(m, w, opts)
  end
  return lines, offset, nrows
end

-- The bottom line: the filter being typed, a message, or what the
-- selected job runs.
function layout.status_line(m, w, opts)
  if m.prompt then return clip("/" .. sanitize(m.prompt) .. "_   Enter apply  Esc cancel", w) end
  if m.status then return clip(sanitize(m.status), w) end
  local p = m.procs[m.selected or 1]
  if not p then return "" end
  local what = p.command or (type(p.argv) == "table" and table.concat(p.argv, " ")) or ""
  local tags = type(p.tags) == "table" and #p.tags > 0 and ("  [" .. table.concat(p.tags, ",") .. "]") or ""
  return sgr(opts.color, "2", clip(sanitize(p.id .. ": " .. what .. tags), w))
end

-- The logs screen: a title, the job's last lines (as many as fit, each
-- cut at the width), the status line. l: { id, name, status, output,
-- error }.
function layout.logs(l, opts)
  local w, h = opts.width, opts.height
  local lines = { sgr(opts.color, "1", fit(("logs of %s %s (%s)  any key: back"):format(
    sanitize(l.id), sanitize(l.name), sanitize(l.status or "?")), w)) }
  local out = text.lines(l.output or "")
  local room = math.max(0, h - 2)
  for i = math.max(1, #out - room + 1), #out do lines[#lines + 1] = clip(sanitize(out[i]), w) end
  if #out == 0 and room > 0 then lines[#lines + 1] = l.output and "(no output)" or "(reading…)" end
  while #lines < h - 1 do lines[#lines + 1] = "" end
  if h >= 2 then lines[#lines + 1] = clip(sanitize(l.error or ""), w) end
  return lines
end

return layout
