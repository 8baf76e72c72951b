-- stall: flag a job that seems to wait for input: it has been silent for
-- silentMs and its last output looks like a prompt ("Continue? [y/N]",
-- "Password:", "> "). The record gets notes.waitingForInput = <the prompt>,
-- cleared when output resumes. Only jobs that can be answered (stdin
-- "pipe" or a pty) are watched: with stdin /dev/null a prompt sees EOF.
--
--   config: stall = { silentMs = 5000, checkMs = 1000 }
local text = require "bgproc.lib.text"

local opts = { silentMs = 5000, checkMs = 1000 }

local PROMPTS = {
  "[%?:>]%s*$", "%[[yY]/[nN]%]", "%([yY]/[nN]%)", "%[[yY]es/[nN]o%]", "[pP]assword", "[pP]assphrase",
  "[cC]ontinue%?", "[pP]ress [eE]nter", "[pP]ress any key", "%(yes/no[^)]*%)",
}

local flagged = {}

local function looks_like_prompt(line)
  for _, p in ipairs(PROMPTS) do
    if line:find(p) then return true end
  end
  return false
end

local function check(api)
  for _, r in ipairs(api.jobs(function(job) return job.status == "running" and job.stdin ~= "null" end)) do
    local silent = api.silent_ms(r.id) or 0
    local out = api.output(r.id, 1, 4096) -- a prompt is short; a progress bar may not be
    local lines = text.lines(out) -- linear; a "$"-anchored match is not on long lines
    local last = lines[#lines] or ""
    if silent >= opts.silentMs and last:find("%S") and looks_like_prompt(last) then
      if flagged[r.id] ~= last then
        flagged[r.id] = last
        api.note(r.id, "waitingForInput", last:match("^%s*(.-)%s*$"))
      end
    elseif flagged[r.id] and silent < opts.silentMs then
      flagged[r.id] = nil
      api.note(r.id, "waitingForInput", nil)
    end
  end
end

return {
  name = "stall",
  looks_like_prompt = looks_like_prompt,
  setup = function(api, o)
    for k, v in pairs(o or {}) do opts[k] = v end
    api.every(opts.checkMs, function() check(api) end)
  end,
  on_exit = function(api, record)
    if flagged[record.id] then
      flagged[record.id] = nil
      api.note(record.id, "waitingForInput", nil)
    end
  end,
}
