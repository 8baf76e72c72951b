-- Where the daemon lives: its socket, lock and log.
--   socket  $BGPROC_SOCKET, else $XDG_RUNTIME_DIR/bgproc/daemon.sock,
--           else /tmp/bgproc-$UID/daemon.sock
--   lock    <socket>.lock (held by the running daemon)
--   log     $XDG_STATE_HOME/bgproc/daemon.log (~/.local/state/...)
local core = require "bgproc.core"
local config = require "bgproc.engine.config"

local paths = {}

function paths.socket()
  local s = os.getenv("BGPROC_SOCKET")
  if s and s ~= "" then return s end
  local run = os.getenv("XDG_RUNTIME_DIR")
  if run and run ~= "" then return run .. "/bgproc/daemon.sock" end
  return ("/tmp/bgproc-%d/daemon.sock"):format(core.getuid())
end

function paths.dir(socket)
  return (socket or paths.socket()):match("^(.*)/[^/]*$") or "."
end

function paths.lock(socket)
  return (socket or paths.socket()) .. ".lock"
end

function paths.log()
  return config.state_dir() .. "/daemon.log"
end

-- mkdir -p with mode 0700 for the parts we create. Returns true or nil, err.
function paths.ensure_dir(dir, mode)
  local uv = require "luv"
  local path = dir:sub(1, 1) == "/" and "" or "."
  for part in dir:gmatch("[^/]+") do
    path = path .. "/" .. part
    local st = uv.fs_stat(path)
    if not st then
      local ok, err = uv.fs_mkdir(path, mode or tonumber("700", 8))
      if not ok and not tostring(err):find("EEXIST") then return nil, err end
    elseif st.type ~= "directory" then
      return nil, path .. " is not a directory"
    end
  end
  return true
end

return paths
