-- listBackgroundProcesses: the jobs a selector matches, with their last line.
local common = require "bgproc.tools.common"
local selectors = require "bgproc.engine.select"

local SELECTS = { "sessionId", "status", "tags", "allTags", "name", "global" }

local list = {
  name = "listBackgroundProcesses",
  description = "List background processes with their status and last output line. "
    .. "All filters are optional and must all hold: sessionId, status (one or a list), "
    .. "tags (any of), allTags (all of), name (substring), global.",
  inputSchema = common.object(common.selector_props(SELECTS, {
    tags = "Match jobs with any of these tags.", allTags = "Match jobs with all of these tags.",
  }, {
    limit = { type = "integer", minimum = 1, maximum = 100000, description = "Return at most this many (the newest)." },
  })),
  selects = SELECTS,
  annotations = { readOnlyHint = true },
  arrays = { "processes" },
  cli = {
    { "sessionId", "--session", "Only this session's." },
    { "status", "--status", "Only this status (repeatable)." },
    { "tags", "--tag", "With any of these tags (repeatable)." },
    { "allTags", "--all-tags", "With all of these tags (repeatable)." },
    { "name", "--name", "Name contains this." },
    { "global", "--global", "Only global ones." },
    { "limit", "--limit", "At most N (the newest).", argname = "<n>" },
  },
}

function list.handler(engine, args)
  local sel, err = common.selector(engine, selectors.pick(args, SELECTS))
  if not sel then return nil, err end
  local recs = engine:select(sel)
  local newest = recs
  if args.limit and #recs > args.limit then newest = table.move(recs, #recs - args.limit + 1, #recs, 1, {}) end
  local out = engine:publics(newest)
  return { processes = out, count = #out, total = #recs }
end

function list.text(r)
  if r.count == 0 then return "no background processes match" end
  local lines = {}
  for _, p in ipairs(r.processes) do
    lines[#lines + 1] = ("%s  %-9s %s%s%s"):format(p.id, p.status, p.name,
      #p.tags > 0 and (" [" .. table.concat(p.tags, ",") .. "]") or "",
      p.lastLine and ("  | " .. p.lastLine) or "")
  end
  return table.concat(lines, "\n")
end

return list
