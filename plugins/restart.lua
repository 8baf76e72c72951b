-- restart: start a failed job again, with exponential backoff, up to a
-- maximum. Applies to jobs tagged "restart" (or every job with all = true).
-- Jobs that were killed, or that timed out, are left alone.
--
--   config: restart = { maxRestarts = 5, backoffMs = 1000, maxBackoffMs = 60000,
--                       tag = "restart", all = false }
local opts = { maxRestarts = 5, backoffMs = 1000, maxBackoffMs = 60000, tag = "restart", all = false }

local function wanted(record)
  if opts.all then return true end
  for _, t in ipairs(record.tags or {}) do
    if t == opts.tag then return true end
  end
  return false
end

return {
  name = "restart",
  setup = function(api, o)
    for k, v in pairs(o or {}) do opts[k] = v end
  end,
  on_exit = function(api, record)
    if record.status ~= "failed" or not wanted(record) then return end
    if record.stopReason then return end -- we stopped it (a timeout)
    local done = record.restarts or 0
    if done >= opts.maxRestarts then
      api.note(record.id, "restart", ("gave up after %d restarts"):format(done))
      return
    end
    local delay = math.min(opts.backoffMs * 2 ^ done, opts.maxBackoffMs)
    api.note(record.id, "restart", ("restart %d/%d in %d ms"):format(done + 1, opts.maxRestarts, delay))
    api.after(delay, function()
      local current = api.record(record.id)
      if not current or current.status ~= "failed" then return end -- removed or handled
      local ok, err = api.respawn(record.id)
      if not ok then api.log("warn", ("restart %s: %s"):format(record.id, err.message)) end
    end)
  end,
}
