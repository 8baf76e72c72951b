-- The tools: one table per tool with its name, description, JSON Schema
-- (inputSchema) and handler. The same table feeds the Lua API
-- (m:call), the daemon protocol, the CLI and the MCP server. Arguments
-- are validated against the schema before the handler runs; handlers run
-- as tasks and may wait (kill, wait) without blocking the host.
local core = require "bgproc.core"
local errors = require "bgproc.lib.errors"
local filter = require "bgproc.engine.select"
local json = require "bgproc.lib.json"
local regex = require "bgproc.regex"
local schema = require "bgproc.lib.schema"
local text = require "bgproc.lib.text"

local tools = {}

-- Whole numbers print as such even when they came through JSON as floats.
local function int(v)
  return v and tostring(math.tointeger(v) or v) or "?"
end

-- ---- shared schema pieces ---------------------------------------------------------

local ID = { type = "string", minLength = 1, maxLength = 100,
             description = "The process id returned by createBackgroundProcess." }
local TASK_ID = { type = "string", minLength = 1, maxLength = 100,
                  description = "Alias of processId (the seed plugin's name)." }
local STRINGS = { type = { "string", "array" }, items = { type = "string", maxLength = 200 }, maxItems = 64 }
local STATUS = { type = { "string", "array" }, maxItems = #filter.STATUSES,
                 items = { type = "string", enum = filter.STATUSES },
                 description = "One status or a list: " .. table.concat(filter.STATUSES, ", ") .. "." }

local function object(props, required)
  return { type = "object", properties = props, required = required, additionalProperties = false }
end

local function copy(t, extra)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  for k, v in pairs(extra or {}) do out[k] = v end
  return out
end

local function lookup(engine, args)
  local id = args.processId or args.taskId
  if not id then return errors.fail("invalid_argument", "missing required field 'processId'") end
  local rec = engine:get(id)
  if not rec then
    return errors.fail("not_found", "no process '%s' (finished jobs are removed after a while; see listBackgroundProcesses)", id)
  end
  return rec
end

-- A regular expression from argument `field`: the compiled regex, or nil
-- and an invalid_argument error naming the field.
function tools.regex(field, source)
  local re, err = regex.new(source)
  if not re then return errors.fail("invalid_argument", "'%s': %s", field, err) end
  return re
end

-- The job has ended and all of its output is in: nothing more will come.
local function complete(engine, rec)
  return engine:final(rec) and engine:output_done(rec)
end

-- The name of the first field of v holding a NUL byte (in a key or a
-- value, at any depth), or nil. `path` names v itself.
local function nul_field(v, path)
  if type(v) == "string" then return v:find("\0", 1, true) and path or nil end
  if type(v) == "table" then
    for k, x in pairs(v) do
      local sub = type(k) == "number" and ("%s[%d]"):format(path, k) or (path == "" and k or path .. "." .. k)
      if type(k) == "string" and k:find("\0", 1, true) then return sub end
      local found = nul_field(x, sub)
      if found then return found end
    end
  end
end

-- ---- createBackgroundProcess ----------------------------------------------------

local create = {
  name = "createBackgroundProcess",
  description = "Start a command in the background (a dev server, a build, a watcher, tests) "
    .. "and return at once with its process id. Give `command` (a shell string) or `argv` "
    .. "(program and arguments, no shell). Session jobs end when the session ends; "
    .. "`global: true` jobs keep running. Read output with getBackgroundProcess, wait for "
    .. "readiness or exit with waitForBackgroundProcess, stop with killProcesses.",
  inputSchema = object {
    command = { type = "string", minLength = 1, maxLength = 65536,
                description = "Shell command, run with /bin/sh -c." },
    argv = { type = "array", minItems = 1, maxItems = 4096,
             items = { type = "string", minLength = 1, maxLength = 65536 },
             description = "Program and arguments, run without a shell." },
    name = { type = "string", minLength = 1, maxLength = 200, description = "A descriptive name." },
    tags = { type = "array", maxItems = 64, items = { type = "string", maxLength = 200 },
             description = "Labels to filter by, e.g. [\"server\", \"frontend\"]." },
    global = { type = "boolean", description = "Outlive the session (default false)." },
    cwd = { type = "string", minLength = 1, maxLength = 4096, description = "Working directory." },
    env = { type = "object", additionalProperties = { type = "string", maxLength = 65536 },
            description = "Environment variables added to (or overriding) the inherited ones." },
    inheritEnv = { type = "boolean",
                   description = "false: the job's environment is exactly `env` (default true: env is added)." },
    stdin = { type = "string", enum = { "null", "pipe" },
              description = "\"null\" (default: a prompt sees end of input) or \"pipe\" (send input later)." },
    pty = { type = "boolean", description = "Run on a pseudo-terminal, for programs that need a TTY." },
    timeoutMs = { type = "integer", minimum = 1, maximum = 7 * 24 * 3600 * 1000,
                  description = "Stop the job and all it started (TERM, then KILL) after this long; it then "
                    .. "counts as failed (a job whose leader already exited keeps its status; what it left "
                    .. "running is stopped)." },
    outputBytes = { type = "integer", minimum = 1024, maximum = 1 << 30,
                    description = "Output kept in memory (a ring: the newest bytes win). Default 1 MiB." },
    readyPattern = { type = "string", minLength = 1, maxLength = 1000,
                     description = "Regular expression; the first output line matching it marks the job ready." },
    notifyPattern = { type = "string", minLength = 1, maxLength = 1000,
                      description = "Regular expression; an output line matching it is told to the session's "
                        .. "owner as a notice (at most one a second), like the job's end and readiness." },
  },
  handler = function(engine, args, ctx)
    local nul = nul_field(args, "")
    if nul then return errors.fail("invalid_argument", "'%s' must not contain NUL bytes", text.utf8(nul)) end
    for k in pairs(args.env or {}) do
      if k == "" or k:find("=", 1, true) then
        return errors.fail("invalid_argument", "'env': variable name '%s' must be non-empty without '='", k)
      end
    end
    if args.pty and args.stdin then
      return errors.fail("invalid_argument", "'stdin' and 'pty' exclude each other (a pty is also stdin)")
    end
    return engine:create(args, ctx)
  end,
  text = function(r)
    return ("started %s (pid %s): %s"):format(r.id, int(r.pid), r.name)
  end,
}

-- ---- listBackgroundProcesses ------------------------------------------------------

local list = {
  name = "listBackgroundProcesses",
  description = "List background processes with their status and last output line. "
    .. "All filters are optional and must all hold: sessionId, status (one or a list), "
    .. "tags (any of), allTags (all of), name (substring), global.",
  inputSchema = object {
    sessionId = { type = "string", minLength = 1, maxLength = 200 },
    status = STATUS,
    tags = copy(STRINGS, { description = "Match jobs with any of these tags." }),
    allTags = copy(STRINGS, { description = "Match jobs with all of these tags." }),
    name = { type = "string", minLength = 1, maxLength = 200, description = "Case-insensitive substring of the name." },
    global = { type = "boolean" },
    limit = { type = "integer", minimum = 1, maximum = 100000, description = "Return at most this many (the newest)." },
  },
  handler = function(engine, args)
    local sel, err = filter.selector(args, engine.tag_policy)
    if not sel then return errors.fail("invalid_argument", "%s", err) end
    local recs = engine:select(sel)
    local newest = recs
    if args.limit and #recs > args.limit then newest = table.move(recs, #recs - args.limit + 1, #recs, 1, {}) end
    local out = engine:publics(newest)
    return { processes = out, count = #out, total = #recs }
  end,
  text = function(r)
    if r.count == 0 then return "no background processes match" end
    local lines = {}
    for _, p in ipairs(r.processes) do
      lines[#lines + 1] = ("%s  %-9s %s%s%s"):format(p.id, p.status, p.name,
        #p.tags > 0 and (" [" .. table.concat(p.tags, ",") .. "]") or "",
        p.lastLine and ("  | " .. p.lastLine) or "")
    end
    return table.concat(lines, "\n")
  end,
}

-- ---- getBackgroundProcess ----------------------------------------------------------

local function filter_lines(out, re)
  local kept = {}
  for _, line in ipairs(text.lines(out)) do
    local ok, err = re:test(line)
    if ok == nil then return nil, err end
    if ok then kept[#kept + 1] = line end
  end
  return kept
end

local get = {
  name = "getBackgroundProcess",
  description = "Get one background process: its record and its output. Without `since`, the last "
    .. "`lines` lines (default 100). With `since` (the `cursor` of an earlier answer), only newer "
    .. "output. `filter` (a regular expression) keeps only matching lines in this answer. "
    .. "Output is cleaned of ANSI codes unless stripAnsi is false.",
  inputSchema = object {
    processId = ID, taskId = TASK_ID,
    lines = { type = "integer", minimum = 0, maximum = 100000, description = "Last N lines (default 100)." },
    since = { type = "integer", minimum = 0, maximum = 1 << 53,
              description = "A cursor from an earlier answer: only newer output." },
    maxBytes = { type = "integer", minimum = 1, maximum = 16 * 1024 * 1024,
                 description = "At most this many bytes of output (default 65536)." },
    filter = { type = "string", minLength = 1, maxLength = 1000,
               description = "Regular expression (PCRE/JavaScript syntax, /re/i allowed): only matching lines." },
    stream = { type = "string", enum = { "both", "stdout", "stderr" } },
    stripAnsi = { type = "boolean", description = "Remove colour codes and collapse progress bars (default true)." },
  },
  handler = function(engine, args)
    local rec, err = lookup(engine, args)
    if not rec then return nil, err end
    local re
    if args.filter then
      re, err = tools.regex("filter", args.filter)
      if not re then return nil, err end
    end
    local max = args.maxBytes or 65536
    local strip = args.stripAnsi ~= false
    local stream = args.stream or "both"
    local lines_wanted = args.lines or 100
    local r = engine:public(rec)
    local output, cursor, dropped, truncated
    if args.since then
      local raw
      raw, cursor, dropped = engine:read(rec, args.since, max, stream)
      if not complete(engine, rec) then
        -- more is coming: keep back what the next read completes (a
        -- character, an escape sequence, a progress bar when stripping,
        -- a line when filtering)
        local keep = re and text.partial_len(raw) or text.incomplete_tail(raw, strip)
        if keep > 0 and keep < #raw then
          raw = raw:sub(1, -keep - 1)
          cursor = cursor - keep
        elseif keep > 0 and #raw == keep and keep < max then
          raw, cursor = "", cursor - keep
        end
      end
      truncated = cursor < r.outputBytes
      output = text.clean(raw, strip)
      if re then
        local kept
        kept, err = filter_lines(output, re)
        if not kept then return errors.fail("invalid_argument", "'filter': %s", err) end
        output = #kept > 0 and table.concat(kept, "\n") .. "\n" or ""
      end
    else
      cursor, dropped = r.outputBytes, 0
      local raw
      if re then -- the last N *matching* lines: scan up to 4 MiB back
        raw = engine:read(rec, math.max(0, cursor - 4 * 1024 * 1024), 4 * 1024 * 1024, stream)
      elseif rec.job then
        raw = rec.job:tail(lines_wanted, stream, max)
      else
        raw = ""
      end
      local all
      all, err = re and filter_lines(text.clean(raw, strip), re) or text.lines(text.clean(raw, strip))
      if not all then return errors.fail("invalid_argument", "'filter': %s", err) end
      local first = math.max(1, #all - lines_wanted + 1)
      output = lines_wanted > 0 and table.concat(all, "\n", first) or ""
      if output ~= "" and (re or raw:sub(-1) == "\n") then output = output .. "\n" end
      truncated = first > 1 or (not re and #raw >= max)
      if #output > max then
        output = text.utf8(output:sub(-max))
        truncated = true
      end
    end
    r.output, r.cursor, r.dropped, r.truncated = output, cursor, dropped, truncated
    return r
  end,
  text = function(r)
    local head = ("%s %s (%s)%s"):format(r.id, r.status, r.name,
      r.exitCode and (" exit " .. int(r.exitCode)) or r.signal and (" signal " .. r.signal) or "")
    return head .. "\n" .. (r.output ~= "" and r.output or "(no output)\n")
      .. ("[cursor %s%s]"):format(int(r.cursor), r.dropped > 0 and (", " .. int(r.dropped) .. " bytes dropped") or "")
  end,
}

-- ---- killProcesses ---------------------------------------------------------------

local kill = {
  name = "killProcesses",
  waits = true,
  description = "Stop background processes and everything they started (the whole process group): "
    .. "send `signal` (default TERM), wait graceMs (default 3000), then KILL what is left. Select by "
    .. "processId, sessionId, status, tags, or all: true for everything; an empty selection is an error. "
    .. "`escaped` lists processes that had left a job's group (setsid): killed through the job's cgroup "
    .. "where the machine gives one, else left running.",
  inputSchema = object {
    processId = ID, taskId = TASK_ID,
    sessionId = { type = "string", minLength = 1, maxLength = 200 },
    status = STATUS,
    tags = copy(STRINGS, { description = "Jobs with any of these tags." }),
    all = { type = "boolean", description = "true selects every job (required when no other selector is given)." },
    signal = { type = { "string", "integer" }, description = "Signal name (TERM, INT, HUP, KILL, ...) or number." },
    graceMs = { type = "integer", minimum = 0, maximum = 600000 },
  },
  handler = function(engine, args, ctx)
    local sel = { processId = args.processId or args.taskId, sessionId = args.sessionId,
                  status = args.status, tags = args.tags }
    local s, err = filter.selector(sel, engine.tag_policy)
    if not s then return errors.fail("invalid_argument", "%s", err) end
    -- judged on what the selector does: `tags: []` narrows nothing, and
    -- must not stop every job (the seed's unknown-id defect)
    if not s.narrows and args.all ~= true then
      return errors.fail("invalid_argument",
        "no selector: give 'processId', 'sessionId', 'status' or 'tags' (non-empty), or 'all': true to stop every job")
    end
    if sel.processId then
      local one
      one, err = lookup(engine, args)
      if not one then return nil, err end
    end
    if sel.sessionId and not engine:session_known(sel.sessionId) then
      return errors.fail("not_found", "'sessionId': no session '%s'", sel.sessionId)
    end
    local sig = args.signal or "TERM"
    local ok, num = pcall(core.signum, sig)
    if not ok or num == 0 then
      return errors.fail("invalid_argument", "'signal': unknown signal %s (expected a name like TERM or a number 1-64)",
        tostring(sig))
    end
    local recs = engine:select(s) -- (one id: a lookup, no scan)
    local stopped, finished, errs, escaped = engine:stop(recs, { signal = sig, graceMs = args.graceMs, reason = "kill",
                                                                  by = ctx.sessionId })
    return { killed = stopped, alreadyFinished = finished, errors = errs, signal = core.signame(num),
             escaped = escaped }
  end,
  text = function(r)
    local s = ("killed %d: %s; already finished %d; errors %d"):format(#r.killed,
      table.concat(r.killed, ", "), #r.alreadyFinished, #r.errors)
    for _, e in ipairs(r.escaped or {}) do
      s = s .. ("\n%s: pid %d (%s) had left its process group: %s"):format(e.processId, e.pid, e.command,
        e.killed and "killed through the job's cgroup" or "left running (no cgroup)")
    end
    return s
  end,
}

-- ---- waitForBackgroundProcess -------------------------------------------------------

-- What one job's wait watches for, by `until`: returns a condition
-- (true when met or when nothing more can come) and a function that fills
-- the job's answer record with what was matched.
local function wait_condition(engine, rec, mode, re, since)
  if mode == "output" then
    local scanner = { rec = rec, cursor = since or 0, partial = "" }
    local hit
    return function()
      if hit then return true end
      local done = complete(engine, rec) -- then nothing more will come
      hit = engine:scan_match(scanner, re, done)
      return hit ~= nil or done
    end, function(r)
      r.matched = hit ~= nil
      r.line = hit and hit.line
      -- not past a line still being written: resuming there must see it whole
      r.cursor = hit and hit.cursor or (scanner.cursor - #scanner.partial)
    end
  elseif mode == "ready" then
    return function() return rec.ready or engine:final(rec) end, function(r)
      r.matched = rec.ready == true
      r.line = rec.readyLine
    end
  end
  return function() return engine:final(rec) end, function() end
end

-- The jobs a wait is on: one (processId), or a selection (processIds,
-- tags). Returns the records and whether it is a selection, or nil, err.
local function wait_targets(engine, args)
  if not args.processIds and not args.tags then
    local rec, err = lookup(engine, args)
    if not rec then return nil, err end
    return { rec }, false
  end
  if args.processId or args.taskId then
    return errors.fail("invalid_argument", "give 'processId' or a selection ('processIds', 'tags'), not both")
  end
  local recs, seen = {}, {}
  for _, id in ipairs(args.processIds or {}) do
    local rec = engine:get(id)
    if not rec then return errors.fail("not_found", "'processIds': no process '%s'", id) end
    if not seen[rec] then recs[#recs + 1], seen[rec] = rec, true end
  end
  if args.since then
    return errors.fail("invalid_argument", "'since' is a cursor of one job: give it with 'processId' only")
  end
  if args.tags then
    local sel, err = filter.selector({ tags = args.tags }, engine.tag_policy)
    if not sel then return errors.fail("invalid_argument", "%s", err) end
    if not sel.narrows then return errors.fail("invalid_argument", "'tags' must name at least one tag") end
    for _, rec in ipairs(engine:select(sel)) do
      if not seen[rec] then recs[#recs + 1], seen[rec] = rec, true end
    end
  end
  if #recs == 0 then return errors.fail("not_found", "'tags': no process has any of these tags") end
  return recs, true
end

local wait = {
  name = "waitForBackgroundProcess",
  waits = true,
  description = "Wait until a background process exits (until: \"exit\", the default), prints a "
    .. "line matching `pattern` (until: \"output\"), or matches its readyPattern (until: \"ready\"). "
    .. "Use it instead of sleeping, e.g. until the server prints \"ready on port 3000\". Returns "
    .. "timedOut: true if timeoutMs (default 30000) passes first. Several jobs: `processIds` and/or "
    .. "`tags` with mode \"all\" (default: until every one is done) or \"any\" (until the first).",
  inputSchema = object {
    processId = ID, taskId = TASK_ID,
    processIds = { type = "array", minItems = 1, maxItems = 1000, items = ID,
                   description = "Wait on several jobs (see mode)." },
    tags = copy(STRINGS, { description = "Wait on the jobs with any of these tags (see mode)." }),
    mode = { type = "string", enum = { "all", "any" },
             description = "With several jobs: \"all\" (default) or \"any\" must meet `until`." },
    ["until"] = { type = "string", enum = { "exit", "output", "ready" } },
    pattern = { type = "string", minLength = 1, maxLength = 1000, description = "Regular expression for until = \"output\"." },
    since = { type = "integer", minimum = 0, maximum = 1 << 53,
              description = "Only output after this cursor (default: all kept output)." },
    timeoutMs = { type = "integer", minimum = 0, maximum = 3600 * 1000 },
  },
  handler = function(engine, args, ctx)
    local recs, several = wait_targets(engine, args)
    if not recs then return nil, several end
    local mode = args["until"] or "exit"
    local timeout = args.timeoutMs or 30000
    local re, err
    if mode == "output" then
      if not args.pattern then return errors.fail("invalid_argument", "until = \"output\" needs 'pattern'") end
      re, err = tools.regex("pattern", args.pattern)
      if not re then return nil, err end
    elseif args.pattern then
      return errors.fail("invalid_argument", "'pattern' is only for until = \"output\"")
    elseif mode == "ready" then
      for _, rec in ipairs(recs) do
        if not rec.ready_re then
          return errors.fail("invalid_argument",
            "'until': \"ready\" needs a job started with readyPattern; %s has none", rec.id)
        end
      end
    end
    if args.mode and not several then
      return errors.fail("invalid_argument", "'mode' is for several jobs ('processIds' or 'tags')")
    end
    local conds, fills = {}, {}
    for i, rec in ipairs(recs) do conds[i], fills[i] = wait_condition(engine, rec, mode, re, args.since) end
    local any = args.mode == "any"
    local function met()
      local n = 0
      for _, cond in ipairs(conds) do
        if cond() then
          n = n + 1
          if any then return true end
        end
      end
      return n == #conds
    end
    local progress
    if ctx and ctx.progress then
      local started = engine.sched.now()
      progress = engine.sched:every(engine.cfg.progressMs, function()
        pcall(ctx.progress, math.floor(engine.sched.now() - started), timeout)
      end)
    end
    local ok, why = engine.sched:await(met, timeout)
    if progress then progress:cancel() end
    if why == "cancelled" then return errors.fail("cancelled", "the wait was cancelled") end
    if not ok and why ~= "timeout" then return errors.fail("internal", "the wait failed: %s", tostring(why)) end
    local answers = {}
    for i, rec in ipairs(recs) do
      local r = engine:public(rec)
      r.done = conds[i]()
      fills[i](r)
      answers[i] = r
    end
    if not several then
      local r = answers[1]
      r.done = nil
      r.timedOut = not ok
      return r
    end
    local done, pending = json.array(), json.array()
    for _, r in ipairs(answers) do
      local list = r.done and done or pending
      list[#list + 1] = r.id
    end
    return { processes = answers, done = done, pending = pending, mode = any and "any" or "all",
             timedOut = not ok }
  end,
  text = function(r)
    if r.processes then
      local lines = { ("%s of %d done (mode %s)%s"):format(#r.done, #r.processes, r.mode,
        r.timedOut and ", timed out" or "") }
      for _, p in ipairs(r.processes) do
        lines[#lines + 1] = ("%s %s %s%s"):format(p.id, p.status, p.done and "done" or "waiting",
          p.line and (": " .. p.line) or "")
      end
      return table.concat(lines, "\n")
    end
    if r.timedOut then return ("%s: still %s after the timeout"):format(r.id, r.status) end
    if r.matched ~= nil then
      return r.matched and ("%s matched: %s"):format(r.id, r.line or "")
        or ("%s %s without a match"):format(r.id, r.status)
    end
    return ("%s %s%s"):format(r.id, r.status, r.exitCode and (" (exit " .. int(r.exitCode) .. ")")
      or r.signal and (" (signal " .. r.signal .. ")") or "")
  end,
}

-- ---- sendBackgroundProcessInput --------------------------------------------------------

local send = {
  name = "sendBackgroundProcessInput",
  description = "Write text to a background process's stdin (start it with stdin: \"pipe\" or "
    .. "pty: true). eof: true closes stdin after the text (on a pty: sends Ctrl-D).",
  inputSchema = object {
    processId = ID, taskId = TASK_ID,
    input = { type = "string", maxLength = 16 * 1024 * 1024 },
    eof = { type = "boolean" },
  },
  handler = function(engine, args)
    local rec, err = lookup(engine, args)
    if not rec then return nil, err end
    if args.input == nil and not args.eof then
      return errors.fail("invalid_argument", "give 'input', 'eof': true, or both")
    end
    if rec.stdin == "null" then
      return errors.fail("conflict", "stdin of %s is not a pipe (start it with stdin: \"pipe\" or pty: true)", rec.id)
    end
    if engine:final(rec) or not rec.job then
      return errors.fail("conflict", "%s has %s", rec.id, rec.status)
    end
    if not rec.job:info().stdin_open then
      return errors.fail("conflict", "stdin of %s is already closed", rec.id)
    end
    local bytes = 0
    if args.input and #args.input > 0 then
      local n, msg = rec.job:write(args.input)
      if not n then return errors.fail("conflict", "%s", msg) end
      bytes = n
    end
    if args.eof then
      local ok, msg = rec.job:close_stdin()
      if not ok then return errors.fail("conflict", "%s", msg) end
    end
    local r = engine:public(rec)
    r.bytes, r.eof = bytes, args.eof == true
    return r
  end,
  text = function(r)
    return ("sent %s bytes to %s%s"):format(int(r.bytes), r.id, r.eof and ", stdin closed" or "")
  end,
}

tools.list = { create, list, get, kill, wait, send }
tools.by_name = {}
for _, t in ipairs(tools.list) do tools.by_name[t.name] = t end

-- Validate args for tool `name`: normalized args, or nil and an error.
function tools.check(name, args)
  local def = tools.by_name[name]
  if not def then
    local names = {}
    for i, t in ipairs(tools.list) do names[i] = t.name end
    return errors.fail("not_found", "unknown tool '%s' (tools: %s)", tostring(name), table.concat(names, ", "))
  end
  if args ~= nil and type(args) ~= "table" then
    return errors.fail("invalid_argument", "%s: arguments must be an object, got %s", name, type(args))
  end
  local norm, err = schema.validate(def.inputSchema, args)
  if not norm then return errors.fail("invalid_argument", "%s: %s", name, err) end
  return def, norm
end

-- Definitions for MCP's tools/list: name, description, inputSchema.
function tools.definitions()
  local out = json.array()
  for i, t in ipairs(tools.list) do
    out[i] = { name = t.name, description = t.description, inputSchema = t.inputSchema }
  end
  return out
end

-- A short text for a result (MCP content), or the error's message.
function tools.summary(name, result, err)
  if err then return ("error (%s): %s"):format(err.code, err.message) end
  local def = tools.by_name[name]
  local ok, s = pcall(def.text, result)
  return ok and s or json.encode(result)
end

return tools
