-- What the keys do in `bgproc top`'s live view (cli/top/app.lua): q
-- quits, arrows/PgUp/PgDn/Home/End select, k kills, r restarts, l shows
-- the logs, / types a filter, s cycles the sort; on the logs screen any
-- key goes back; Ctrl-C always quits.
local jobs = require "bgproc.cli.top.jobs"

local keys = {}

local EXIT = require("bgproc.cli.render").EXIT

-- The calling shell's session, as `bgproc kill` gives it: its owner is
-- not told of a kill it made itself.
local function own_session()
  return require("bgproc.cli.caller").session().sessionId
end

local ACTIONS = {}

function ACTIONS.q(ui) ui:quit(EXIT.OK) end

function ACTIONS.s(ui)
  ui.sort = ui.sort % #jobs.SORTS + 1
  ui:reselect()
end

ACTIONS["/"] = function(ui) ui.prompt = ui.filter end

function ACTIONS.k(ui)
  local p = ui:selected()
  if not p then return ui:say("no job selected") end
  ui:say("killing " .. p.id .. "…")
  ui.session = ui.session or own_session()
  ui:tool("killProcesses", { processId = p.id }, "kill " .. p.id, function(r)
    if #r.killed > 0 then ui:say("killed " .. p.id)
    elseif #r.alreadyFinished > 0 then ui:say(p.id .. " had already finished")
    elseif r.errors[1] then ui:say("kill " .. p.id .. ": " .. tostring(r.errors[1].message))
    else ui:say("kill " .. p.id .. ": nothing matched") end
  end, ui.session)
end

function ACTIONS.r(ui)
  local p = ui:selected()
  if not p then return ui:say("no job selected") end
  ui:say("restarting " .. p.id .. "…")
  ui:tool("restartBackgroundProcess", { processId = p.id }, "restart " .. p.id, function(r)
    ui:say(("restarted %s%s"):format(p.id, type(r.pid) == "number" and (" (pid %d)"):format(r.pid) or ""))
  end)
end

function ACTIONS.l(ui)
  local p = ui:selected()
  if not p then return ui:say("no job selected") end
  ui.view, ui.logs = "logs", { id = p.id, name = p.name, status = p.status }
  ui.term:invalidate()
  ui:fetch_logs()
end

-- Moves of the cursor: by one, by a page, to either end.
local MOVES = {
  up = function() return -1 end, down = function() return 1 end,
  pgup = function(ui) return -math.max(1, ui.page or 1) end,
  pgdn = function(ui) return math.max(1, ui.page or 1) end,
  home = function() return -math.huge end, ["end"] = function() return math.huge end,
}

local function move(ui, delta)
  local n = #ui.shown
  if n == 0 then return end
  local to = ui.sel + delta
  ui.sel = to < 1 and 1 or to > n and n or math.tointeger(to) or n
  ui.sel_id = ui.shown[ui.sel].id
end

-- A key while the filter is typed: Enter applies it, Esc cancels.
local function prompt_key(ui, k)
  if k == "enter" then
    ui.filter, ui.prompt = ui.prompt, nil
    ui:reselect()
  elseif k == "esc" then
    ui.prompt = nil
  elseif k == "backspace" then
    ui.prompt = ui.prompt:gsub(utf8.charpattern .. "$", "")
  elseif #k == 1 or k:byte(1) >= 0xC0 then -- a character, not a key's name
    ui.prompt = ui.prompt .. k
  end
end

-- Do what key k means for the view ui (a cli/top/app.lua view: its
-- state and its calls).
function keys.press(ui, k)
  if k == "ctrl-c" then return ui:quit(130) end
  if ui.prompt then return prompt_key(ui, k) end
  if ui.view == "logs" then -- any key goes back
    ui.view, ui.logs = "list", nil
    ui.term:invalidate()
    return
  end
  ui.status = nil
  if MOVES[k] then return move(ui, MOVES[k](ui)) end
  if ACTIONS[k] then ACTIONS[k](ui) end
end

return keys
