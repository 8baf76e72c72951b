-- searchBackgroundOutput: a regular expression over many jobs' output at
-- once: running jobs' rings and finished jobs' stored output.
local common = require "bgproc.tools.common"
local errors = require "bgproc.lib.errors"
local json = require "bgproc.lib.json"
local regex = require "bgproc.regex"
local selectors = require "bgproc.engine.select"
local text = require "bgproc.lib.text"

local SELECTS = { "sessionId", "status", "tags", "allTags", "name", "global" }

local DEFAULT_MATCHES, MAX_MATCHES = 100, 1000
local MAX_CONTEXT = 10
local LINE_CHARS = 500             -- a line longer than this is cut (with "…")
local ANSWER_BYTES = 256 * 1024    -- lines and context in one answer, at most
local CONTEXT_READ = 4096          -- bytes read per context line, at most
local ALL = 1 << 50
local SEARCH_MS = 5000             -- a search's time, at most (then timedOut, truncated)

local search = {
  name = "searchBackgroundOutput",
  description = "Search the output of many background processes at once (running ones and finished ones, "
    .. "also those from before the manager restarted) for a regular expression (PCRE2; \"/re/i\" for flags). "
    .. "Returns the matching lines, newest job first, each with its job, line number (counted from the "
    .. "first line still kept), cursor (for getBackgroundProcess's since) and context lines. Narrow it with "
    .. "processIds or the filters: sessionId, status, tags, allTags, name (substring), global. A search "
    .. "takes 5 s at most (then timedOut: true, with what it found).",
  inputSchema = common.object(common.selector_props(SELECTS, {
    tags = "Only jobs with any of these tags.", allTags = "Only jobs with all of these tags.",
  }, {
    pattern = { type = "string", minLength = 1, maxLength = 1000,
                description = "Regular expression (PCRE2, or \"/re/flags\" with i, m, s, x); ^ and $ match at "
                  .. "each line's start and end." },
    processIds = { type = "array", minItems = 1, maxItems = 1000, items = common.ID,
                   description = "Only these jobs (ids or names)." },
    contextLines = { type = "integer", minimum = 0, maximum = MAX_CONTEXT,
                     description = "Lines before and after each match (default 0)." },
    maxMatches = { type = "integer", minimum = 1, maximum = MAX_MATCHES,
                   description = ("Matching lines at most (default %d). truncated: the search stopped "
                     .. "there (or at the answer's size) before all the output was searched."):format(
                     DEFAULT_MATCHES) },
  }), { "pattern" }),
  selects = SELECTS,
  annotations = { readOnlyHint = true },
  arrays = { "matches", "before", "after" },
  cli = {
    { "tags", "--tag", "Only jobs with any of these tags (repeatable)." },
    { "sessionId", "--session", "Only this session's jobs." },
    { "name", "--name", "Only jobs whose name contains this." },
    { "status", "--status", "Only jobs with this status (repeatable)." },
    { "contextLines", "--context", "Lines of context around each match.", argname = "<n>", short = "-C" },
    { "maxMatches", "--max", "At most N matching lines.", argname = "<n>" },
  },
}

function search.check(args)
  local _, err = search.compile(args.pattern)
  if err then return nil, err end
  return true
end

-- The pattern compiled for line searches (^ and $ at each line).
function search.compile(pattern)
  local re, err = regex.new(pattern, "m")
  if not re then return errors.fail("invalid_argument", "'pattern': %s", err) end
  return re
end

-- One line for the answer: cleaned of escapes, cut at LINE_CHARS.
local function shown(line)
  line = text.clean(line, true)
  if #line > LINE_CHARS then line = text.utf8(line:sub(1, LINE_CHARS)) .. "…" end
  return line
end

-- A subject's bytes [from, to) (0-based): of a string, or of a file.
local function string_reader(s)
  return function(from, to) return s:sub(from + 1, to) end
end

-- A file's bytes [from, to), a closer, and its size.
local function file_reader(path)
  local f = io.open(path, "rb")
  local size = f and f:seek("end") or 0
  return function(from, to)
    if not f or to <= from then return "" end
    f:seek("set", from)
    return f:read(to - from) or ""
  end, function() if f then f:close() end end, size
end

-- The n lines before byte `start` and after byte `stop` of a subject.
local function context(read, start, stop, n, size)
  if n == 0 then return nil, nil end
  local before, after = json.array(), json.array()
  local head = read(math.max(0, start - n * CONTEXT_READ), start)
  local lines = {}
  for l in head:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  for i = math.max(1, #lines - n + 1), #lines do before[#before + 1] = shown(lines[i]) end
  local to = math.min(size, stop + 1 + n * CONTEXT_READ)
  local tail = read(stop + 1, to)
  if to == size and #tail > 0 and tail:sub(-1) ~= "\n" then tail = tail .. "\n" end -- the last line
  for l in tail:gmatch("([^\n]*)\n") do
    if #after == n then break end
    after[#after + 1] = shown(l)
  end
  return before, after
end

-- The jobs to search: newest first.
local function jobs_of(engine, args, ctx)
  local recs
  if args.processIds then
    recs = {}
    local seen = {}
    for _, ref in ipairs(args.processIds) do
      local rec, err = engine:resolve(ref, ctx and ctx.sessionId, "processIds")
      if not rec then return nil, err end
      if not seen[rec] then recs[#recs + 1], seen[rec] = rec, true end
    end
    table.sort(recs, function(a, b) return a.seq < b.seq end)
  else
    local s, err = common.selector(engine, selectors.pick(args, SELECTS))
    if not s then return nil, err end
    recs = engine:select(s)
  end
  local newest = {}
  for i = #recs, 1, -1 do newest[#newest + 1] = recs[i] end
  return newest
end

-- Add one job's matching lines to answer (in, from search or
-- search_file: lines, more, searched). read(from, to) gives its bytes,
-- first: the cursor of its byte 0, size: its bytes.
local function add_lines(rec, found, more, searched, source, answer, args)
  answer.bytes, answer.jobs = answer.bytes + (searched or 0), answer.jobs + 1
  for _, m in ipairs(found) do
    if #answer.matches >= answer.max then
      answer.truncated = true
      break
    end
    local line = shown(source.read(m.start, math.min(m.stop, m.start + 4 * LINE_CHARS)))
    local before, after = context(source.read, m.start, m.stop, args.contextLines or 0, source.size)
    answer.size = answer.size + #line + 64
    for _, l in ipairs(before or {}) do answer.size = answer.size + #l end
    for _, l in ipairs(after or {}) do answer.size = answer.size + #l end
    if answer.size > ANSWER_BYTES then
      answer.truncated = true
      break
    end
    answer.matches[#answer.matches + 1] = { processId = rec.id, name = rec.name, status = rec.status,
      line = m.line, cursor = source.first + m.start, text = line, before = before, after = after }
  end
  if more then answer.truncated = true end
end

local function pattern_error(rec, msg)
  return errors.fail("invalid_argument", "'pattern': %s (in the output of %s)", msg, rec.id)
end

-- A job whose output is in memory (running, or not moved to disk).
local function search_ring(engine, rec, re, args, answer)
  local data, _, first = engine:read(rec, 0, ALL)
  local found, more, searched, timed_out = re:search(data, { max = answer.max - #answer.matches,
                                                             timeout_ms = answer.left() })
  if not found then return pattern_error(rec, more) end
  if timed_out then answer.timed_out = true end
  add_lines(rec, found, more, searched, { read = string_reader(data), first = first, size = #data }, answer, args)
  return true
end

-- Jobs whose output is in files, searched on all cores at once. A file
-- gone (removed meanwhile, deleted by hand) is output no longer there.
local function search_files(files, re, args, answer)
  local paths = {}
  for i, f in ipairs(files) do paths[i] = f.path end
  local results = re:search_files(paths, { max = answer.max - #answer.matches, timeout_ms = answer.left() })
  for i, res in ipairs(results) do
    local f = files[i]
    if res.timedOut then answer.timed_out = true end
    if res.error and not res.errname then return pattern_error(f.rec, res.error) end
    if not res.error then
      local read, close, size = file_reader(f.path)
      add_lines(f.rec, res.lines, res.more, res.searched, { read = read, first = f.first, size = size }, answer, args)
      close()
    end
    if #answer.matches >= answer.max or answer.size > ANSWER_BYTES then
      answer.truncated = answer.truncated or i < #results or res.more
      break
    end
  end
  return true
end

local FILES_AT_ONCE = 64 -- stored outputs per search_files call (a search stops early once it has enough)

function search.handler(engine, args, ctx)
  local re, err = search.compile(args.pattern)
  if not re then return nil, err end
  local recs
  recs, err = jobs_of(engine, args, ctx)
  if not recs then return nil, err end
  local answer = { matches = json.array(), max = args.maxMatches or DEFAULT_MATCHES, truncated = false,
                   jobs = 0, bytes = 0, size = 0 }
  -- the whole search has SEARCH_MS: the daemon serves no one else meanwhile
  local deadline = engine:now() + SEARCH_MS
  function answer.left() return math.max(1, math.floor(deadline - engine:now())) end
  local batch = {}
  local function full()
    return #answer.matches >= answer.max or answer.size > ANSWER_BYTES or answer.timed_out or engine:now() >= deadline
  end
  local function flush()
    if #batch == 0 then return true end
    local ok, ferr = search_files(batch, re, args, answer)
    batch = {}
    return ok, ferr
  end
  for _, rec in ipairs(recs) do
    if full() then
      answer.truncated = true
      break
    end
    local path, first = engine:output_file(rec)
    local ok, serr = true, nil
    if path then
      batch[#batch + 1] = { rec = rec, path = path, first = first }
      if #batch == FILES_AT_ONCE then ok, serr = flush() end
    else
      ok, serr = flush() -- (newest first: the files before it)
      if ok and not full() then ok, serr = search_ring(engine, rec, re, args, answer) end
    end
    if not ok then return nil, serr end
  end
  if not full() then
    local ok, serr = flush()
    if not ok then return nil, serr end
  end
  if answer.timed_out or engine:now() >= deadline then answer.truncated, answer.timed_out = true, true end
  return { matches = answer.matches, count = #answer.matches, truncated = answer.truncated,
           timedOut = answer.timed_out or nil, searchedJobs = answer.jobs, searchedBytes = answer.bytes }
end

function search.text(r)
  if r.count == 0 then return "no line matches" end
  local lines = {}
  for _, m in ipairs(r.matches) do
    for i, l in ipairs(m.before or {}) do lines[#lines + 1] = ("%s:%d- %s"):format(m.processId, m.line - #m.before + i - 1, l) end
    lines[#lines + 1] = ("%s:%d: %s"):format(m.processId, m.line, m.text)
    for i, l in ipairs(m.after or {}) do lines[#lines + 1] = ("%s:%d- %s"):format(m.processId, m.line + i, l) end
  end
  if r.truncated then
    lines[#lines + 1] = ("(stopped at %d matching lines: there may be more; narrow the search or raise "
      .. "maxMatches)"):format(r.count)
  end
  return table.concat(lines, "\n")
end

return search
