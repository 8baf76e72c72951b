-- waitForBackgroundProcess: wait for one job or several to exit, print a
-- matching line, or become ready.
local common = require "bgproc.tools.common"
local errors = require "bgproc.lib.errors"
local json = require "bgproc.lib.json"
local selectors = require "bgproc.engine.select"
local url = require "bgproc.lib.url"

local int = common.int

local SELECTS = { "tags" }
local POLL_MS = 100 -- how often a port or url wait looks

local wait = {
  name = "waitForBackgroundProcess",
  waits = true,
  description = "Wait until a background process exits (until: \"exit\", the default), prints a "
    .. "line matching `pattern` (until: \"output\"), passes its readiness test (until: \"ready\"), "
    .. "listens on a port (until: \"port\", any or `port`) or answers at `url` (until: \"url\"). "
    .. "A job that exits first ends the wait (matched: false). "
    .. "Use it instead of sleeping, e.g. until the server prints \"ready on port 3000\". Returns "
    .. "timedOut: true if timeoutMs (default 30000) passes first. Several jobs: `processIds` and/or "
    .. "`tags` with mode \"all\" (default: until every one is done) or \"any\" (until the first).",
  inputSchema = common.object(common.selector_props(SELECTS,
    { tags = "Wait on the jobs with any of these tags (see mode)." }, {
    processId = common.ID, taskId = common.TASK_ID,
    processIds = { type = "array", minItems = 1, maxItems = 1000, items = common.ID,
                   description = "Wait on several jobs (see mode)." },
    mode = { type = "string", enum = { "all", "any" },
             description = "With several jobs: \"all\" (default) or \"any\" must meet `until`." },
    ["until"] = { type = "string", enum = { "exit", "output", "ready", "port", "url" } },
    port = { type = "integer", minimum = 0, maximum = 65535,
             description = "For until = \"port\": this port (default 0: any port the job listens on)." },
    url = { type = "string", minLength = 1, maxLength = 2048,
            description = "For until = \"url\": an http(s) URL on a loopback address; met when a GET "
              .. "answers below 500 (https: when the job listens on its port)." },
    pattern = { type = "string", minLength = 1, maxLength = 1000, description = "Regular expression for until = \"output\"." },
    since = common.with(common.CURSOR, { description = "Only output after this cursor (default: all kept output)." }),
    timeoutMs = { type = "integer", minimum = 0, maximum = 3600 * 1000 },
  })),
  selects = SELECTS,
  annotations = { readOnlyHint = true },
  arrays = { "processes", "done", "pending" },
  DEFAULT_TIMEOUT_MS = 30000,
  cli = {
    { "tags", "--tag", "Also the jobs with any of these tags (repeatable)." },
    { "mode", "--any", "With several jobs: until the first one is done.", value = "any" },
    { "pattern", "--for", "Regex: wait for a matching output line.", argname = "<re>",
      also = { ["until"] = "output" }, mutex = "until" },
    { "until", "--ready", "Wait until it is ready (its --ready, --ready-port or --ready-url).", value = "ready",
      mutex = "until" },
    { "port", "--port", "Wait until it listens on port N (no N: any port).", argname = "<n>", args = "?",
      also = { ["until"] = "port" }, mutex = "until" },
    { "url", "--url", "Wait until an HTTP GET of URL (loopback) answers below 500.", argname = "<url>",
      also = { ["until"] = "url" }, mutex = "until" },
    { "timeoutMs", "--timeout", "Give up after MS milliseconds (exit code 124).", argname = "<ms>",
      default = "30000" },
  },
}

-- What one job's wait watches for, by `until`: returns a condition
-- (true when met or when nothing more can come) and a function that fills
-- the job's answer record with what was matched.
local function condition(engine, rec, mode, re, since)
  if mode == "output" then
    local scanner = engine:scanner(rec, since or 0)
    local hit
    return function()
      if hit then return true end
      local done = engine:complete(rec) -- then nothing more will come
      hit = engine:scan_match(scanner, re, done)
      return hit ~= nil or done
    end, function(r)
      r.matched = hit ~= nil
      r.line = hit and hit.line
      -- not past a line still being written: resuming there must see it whole
      r.cursor = hit and hit.cursor or (scanner.cursor - #scanner.partial)
    end
  elseif mode == "port" or mode == "url" then
    local cond = mode == "port" and engine:port_condition(rec, re.port) or engine:url_condition(rec, re.url)
    local seen
    return function()
      if seen then return true end
      local ok, how = cond()
      if ok then seen = how end
      return ok or engine:final(rec) -- an exit ends the wait
    end, function(r)
      r.matched = seen ~= nil
      if mode == "port" then r.port = seen else r.line = seen end
    end
  elseif mode == "ready" then
    return function()
      local _, ready = engine:readiness(rec)
      return ready or engine:final(rec)
    end, function(r)
      local _, ready, line = engine:readiness(rec)
      r.matched, r.line = ready, line
    end
  end
  return function() return engine:final(rec) end, function() end
end

-- Add the records of `list` not seen yet to recs.
local function add_new(recs, seen, list)
  for _, rec in ipairs(list) do
    if not seen[rec] then recs[#recs + 1], seen[rec] = rec, true end
  end
end

-- The jobs a wait is on: one (processId), or a selection (processIds,
-- tags). Returns the records and whether it is a selection, or nil, err.
local function targets(engine, args, ctx)
  local sid = ctx and ctx.sessionId
  if not args.processIds and not args.tags then
    local rec, err = common.lookup(engine, args, ctx)
    if not rec then return nil, err end
    return { rec }, false
  end
  if args.processId or args.taskId then
    return errors.fail("invalid_argument", "give 'processId' or a selection ('processIds', 'tags'), not both")
  end
  local recs, seen = {}, {}
  for _, id in ipairs(args.processIds or {}) do
    local rec, err = engine:resolve(id, sid, "processIds")
    if not rec then return nil, err end
    add_new(recs, seen, { rec })
  end
  if args.since then
    return errors.fail("invalid_argument", "'since' is a cursor of one job: give it with 'processId' only")
  end
  if args.tags then
    local sel, err = common.selector(engine, selectors.pick(args, SELECTS))
    if not sel then return nil, err end
    if not sel.narrows then return errors.fail("invalid_argument", "'tags' must name at least one tag") end
    add_new(recs, seen, engine:select(sel))
  end
  if #recs == 0 then return errors.fail("not_found", "'tags': no process has any of these tags") end
  return recs, true
end

-- What the jobs are waited for, by until: "output" the regex, "port"
-- { port }, "url" { url }, the others false; or nil and an error when
-- `until`, `pattern`, `port`, `url` and `mode` do not fit the jobs.
local function check_until(engine, args, recs, several)
  local mode = args["until"] or "exit"
  local re, err = false, nil
  for _, field in ipairs { "port", "url" } do
    if args[field] ~= nil and mode ~= field then
      return errors.fail("invalid_argument", "'%s' is only for until = \"%s\"", field, field)
    end
  end
  if mode == "port" then
    re = { port = args.port }
  elseif mode == "url" then
    if not args.url then return errors.fail("invalid_argument", "until = \"url\" needs 'url'") end
    local _, uerr = url.parse_loopback(args.url)
    if uerr then return errors.fail("invalid_argument", "'url': %s", uerr) end
    re = { url = args.url }
  elseif mode == "output" then
    if not args.pattern then return errors.fail("invalid_argument", "until = \"output\" needs 'pattern'") end
    re, err = common.regex("pattern", args.pattern)
    if not re then return nil, err end
  elseif args.pattern then
    return errors.fail("invalid_argument", "'pattern' is only for until = \"output\"")
  elseif mode == "ready" then
    for _, rec in ipairs(recs) do
      if not engine:readiness(rec) then
        return errors.fail("invalid_argument",
          "'until': \"ready\" needs a job started with readyPattern, readyPort or readyUrl; %s has none", rec.id)
      end
    end
  end
  if args.mode and not several then
    return errors.fail("invalid_argument", "'mode' is for several jobs ('processIds' or 'tags')")
  end
  return re
end

-- Whether every condition (any: one of them) holds.
local function met_by(conds, any)
  return function()
    local n = 0
    for _, cond in ipairs(conds) do
      if cond() then
        n = n + 1
        if any then return true end
      end
    end
    return n == #conds
  end
end

local function answer(engine, recs, conds, fills, several, timed_out, any)
  local answers = engine:publics(recs) -- (sampled in one pass)
  for i, r in ipairs(answers) do
    r.done = conds[i]()
    fills[i](r)
    answers[i] = r
  end
  if not several then
    local r = answers[1]
    r.done = nil
    r.timedOut = timed_out
    return r
  end
  local done, pending = json.array(), json.array()
  for _, r in ipairs(answers) do
    local list = r.done and done or pending
    list[#list + 1] = r.id
  end
  return { processes = answers, done = done, pending = pending, mode = any and "any" or "all",
           timedOut = timed_out }
end

function wait.handler(engine, args, ctx)
  local recs, several = targets(engine, args, ctx)
  if not recs then return nil, several end
  local re, err = check_until(engine, args, recs, several)
  if re == nil then return nil, err end
  local mode = args["until"] or "exit"
  local conds, fills = {}, {}
  for i, rec in ipairs(recs) do conds[i], fills[i] = condition(engine, rec, mode, re or nil, args.since) end
  local any = args.mode == "any"
  local timeout = args.timeoutMs or wait.DEFAULT_TIMEOUT_MS
  -- ports and URLs are looked at, not told of: poll them
  local poll_ms = (mode == "port" or mode == "url") and POLL_MS or nil
  local ok, why = engine:await(met_by(conds, any), timeout, ctx and ctx.progress, poll_ms)
  if why == "cancelled" then return errors.fail("cancelled", "the wait was cancelled") end
  if not ok and why ~= "timeout" then return errors.fail("internal", "the wait failed: %s", tostring(why)) end
  return answer(engine, recs, conds, fills, several, not ok, any)
end

function wait.text(r)
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
    local how = r.line or (r.port and ("listening on %s port %d"):format(r.port.protocol, r.port.port)) or ""
    return r.matched and ("%s matched: %s"):format(r.id, how)
      or ("%s %s without a match"):format(r.id, r.status)
  end
  return ("%s %s%s"):format(r.id, r.status, r.exitCode and (" (exit " .. int(r.exitCode) .. ")")
    or r.signal and (" (signal " .. r.signal .. ")") or "")
end

return wait
