-- removeBackgroundProcesses: forget finished jobs, their records and
-- output (bgproc rm, bgproc prune).
local clock = require "bgproc.lib.clock"
local common = require "bgproc.tools.common"
local errors = require "bgproc.lib.errors"
local json = require "bgproc.lib.json"
local selectors = require "bgproc.engine.select"
local states = require "bgproc.engine.states"

local SELECTS = { "sessionId", "status", "tags" }

local remove = {
  name = "removeBackgroundProcesses",
  description = "Remove finished background processes: their records and kept output. Give `processIds` "
    .. "(ids or names; a job still running is an error: stop it first), or select by sessionId, status, "
    .. "tags and olderThanMs (ended at least that long ago), or all: true for every finished job. Running "
    .. "jobs a selection matches are left alone.",
  inputSchema = common.object(common.selector_props(SELECTS, { tags = "Jobs with any of these tags." }, {
    processIds = { type = "array", minItems = 1, maxItems = 1000, items = common.ID,
                   description = "The jobs to remove, by id or name." },
    olderThanMs = { type = "integer", minimum = 0, maximum = 1 << 53,
                    description = "Only jobs that ended at least this many milliseconds ago." },
    all = { type = "boolean", description = "true: every finished job (when nothing else selects)." },
  })),
  selects = SELECTS,
  annotations = { destructiveHint = true },
  arrays = { "removed", "errors" },
  cli = {
    { "status", "--status", "Only jobs with this status (repeatable).", argname = "<status>" },
    { "olderThanMs", "--older-than", "Only jobs that ended at least this long ago (500ms, 30s, 15m, 2h, 7d).",
      argname = "<duration>", parse = "duration" },
    { "tags", "--tag", "Only jobs with any of these tags (repeatable)." },
    { "sessionId", "--session", "Only this session's jobs." },
  },
}

remove.NO_SELECTOR = ("no selector: give 'processIds', %s or 'olderThanMs', or 'all': true to remove "
  .. "every finished job"):format(common.either(SELECTS))

-- The jobs processIds names, each once: records, or nil and an error.
local function named(engine, args, ctx)
  local recs, seen = {}, {}
  for _, ref in ipairs(args.processIds) do
    local rec, err = engine:resolve(ref, ctx.sessionId, "processIds")
    if not rec then return nil, err end
    if not seen[rec] then recs[#recs + 1], seen[rec] = rec, true end
  end
  return recs
end

-- The finished jobs a selection matches: records, or nil and an error.
local function selected(engine, args)
  local s, err = common.selector(engine, selectors.pick(args, SELECTS))
  if not s then return nil, err end
  if not s.narrows and not args.olderThanMs and args.all ~= true then
    return errors.fail("invalid_argument", "%s", remove.NO_SELECTOR)
  end
  local before = args.olderThanMs and clock.wall_ms() - args.olderThanMs
  return engine:select(s), before
end

function remove.handler(engine, args, ctx)
  local recs, before
  if args.processIds and (next(selectors.pick(args, SELECTS)) or args.olderThanMs or args.all) then
    return errors.fail("invalid_argument", "give 'processIds' or a selection, not both")
  end
  if args.processIds then recs, before = named(engine, args, ctx) else recs, before = selected(engine, args) end
  if not recs then return nil, before end
  local removed, errs = json.array(), json.array()
  for _, rec in ipairs(recs) do
    if not states.over(rec) then -- running, or ended leaving processes that still run
      if args.processIds then
        local what = states.FINAL[rec.status] and "has processes still running" or "is " .. rec.status
        errs[#errs + 1] = { processId = rec.id, message = ("%s %s: stop it first (killProcesses)"):format(
          rec.id, what) }
      end
    elseif not before or (rec.endedMs and rec.endedMs <= before) then
      engine:remove(rec)
      removed[#removed + 1] = rec.id
    end
  end
  return { removed = removed, errors = errs }
end

function remove.text(r)
  local s = ("removed %d%s"):format(#r.removed, #r.removed > 0 and (": " .. table.concat(r.removed, ", ")) or "")
  for _, e in ipairs(r.errors) do s = s .. "\n" .. e.message end
  return s
end

return remove
