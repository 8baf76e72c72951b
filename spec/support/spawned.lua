-- Processes the readers' specs observe (usage, sockets, the HTTP probe):
-- each a bgproc.core job, leading its own process group (in its own
-- cgroup where the machine allows), marked (helpers.MARK) so that
-- stop() kills whatever of it is left, escapees included.
local core = require "bgproc.core"
local h = require "helpers"

local spawned = {}
spawned.__index = spawned

-- A set of jobs for one test.
function spawned.new()
  return setmetatable({ loop = core.new(), token = h.new_marker(), jobs = {} }, spawned)
end

-- Start a job: argv (a table) or a sh command (a string). Its stdin is a
-- pipe that stays open (a fixture holds what it made until stdin ends).
function spawned:start(what)
  local o = { stdin = "pipe", env = h.lua_env { [h.MARK] = self.token } }
  if type(what) == "table" then o.argv = what else o.command = what end
  local job = assert(self.loop:spawn(o))
  self.jobs[#self.jobs + 1] = job
  return job
end

-- Wait for a line of the job's output that matches pattern; its captures.
function spawned:line(job, pattern)
  local caps
  local ok = h.pump(self.loop, function()
    caps = table.pack((job:read(0) or ""):match(pattern))
    return caps[1] ~= nil or not job:alive()
  end, 15000)
  assert(ok and caps[1] ~= nil, "no line like " .. pattern .. " from the job: " .. tostring((job:read(0))))
  return table.unpack(caps, 1, caps.n)
end

-- A sh script started as a job, "$0" in it naming the Lua interpreter
-- (under make asan, the sanitizer's host), "$1"... the args after it.
function spawned:sh(script, ...)
  return self:start { "sh", "-c", script, h.lua, ... }
end

-- A lua5.4 fixture (spec/fixtures/NAME) started as a job, its args after.
function spawned:lua(name, ...)
  return self:start { h.lua, h.fixture(name), ... }
end

-- Kill and reap everything started, and whatever left its group.
function spawned:stop()
  for _, job in ipairs(self.jobs) do job:close() end
  self.loop:close()
  h.kill_marked(self.token)
end

return spawned
