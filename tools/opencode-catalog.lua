-- Writes integrations/opencode/lib/tools.json, the tool catalog the
-- OpenCode plugin falls back on when the daemon cannot be asked at load,
-- from the tools' own declarations (lua/bgproc/tools/). `--check` only
-- says whether the file is current (exit 1 when not).
--   lua5.4 tools/opencode-catalog.lua [--check]
local root = (arg[0]:match("^(.*)/tools/[^/]*$") or ".")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/lua/?.so;" .. package.cpath

local json = require "bgproc.lib.json"
local tools = require "bgproc.tools"

local path = root .. "/integrations/opencode/lib/tools.json"
local want = json.pretty(tools.catalog()) .. "\n"

local f = io.open(path, "rb")
local have = f and f:read("a")
if f then f:close() end
if arg[1] == "--check" then
  if have == want then return end
  io.stderr:write(path, " is out of date: run lua5.4 tools/opencode-catalog.lua\n")
  os.exit(1)
end
if have ~= want then
  f = assert(io.open(path, "wb"))
  f:write(want)
  f:close()
  print("wrote " .. path)
end
