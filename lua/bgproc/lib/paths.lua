-- Where bgproc keeps things: the user's config and state, and where the
-- daemon lives: its socket, lock and log.
--   config  $XDG_CONFIG_HOME/bgproc (~/.config/bgproc)
--   state   $XDG_STATE_HOME/bgproc (~/.local/state/bgproc)
--   socket  $BGPROC_SOCKET, else $XDG_RUNTIME_DIR/bgproc/daemon.sock,
--           else /tmp/bgproc-$UID/daemon.sock
--   lock    <socket>.lock (held by the running daemon)
--   log     <state>/daemon.log
local sys = require "bgproc.sys"

local paths = {}

-- $VAR/bgproc, else $HOME/<under>/bgproc; without HOME, fallback (or nil).
local function xdg(var, under, fallback)
  local base = os.getenv(var)
  if not base or base == "" then
    local home = os.getenv("HOME") or fallback
    if not home then return nil end
    base = home .. "/" .. under
  end
  return base .. "/bgproc"
end

-- $XDG_CONFIG_HOME/bgproc (~/.config/bgproc), or nil without a home.
function paths.config_dir()
  return xdg("XDG_CONFIG_HOME", ".config", nil)
end

-- $XDG_STATE_HOME/bgproc (~/.local/state/bgproc, /tmp/.local/state/bgproc without a home).
function paths.state_dir()
  return xdg("XDG_STATE_HOME", ".local/state", "/tmp")
end

function paths.socket()
  local s = os.getenv("BGPROC_SOCKET")
  if s and s ~= "" then return s end
  local run = os.getenv("XDG_RUNTIME_DIR")
  if run and run ~= "" then return run .. "/bgproc/daemon.sock" end
  return ("/tmp/bgproc-%d/daemon.sock"):format(sys.getuid())
end

-- The directory of a socket path ("/" for "/x.sock", "." for "x.sock").
function paths.dir(socket)
  local dir = (socket or paths.socket()):match("^(.*)/[^/]*$")
  if dir == "" then return "/" end
  return dir or "."
end

function paths.lock(socket)
  return (socket or paths.socket()) .. ".lock"
end

function paths.log()
  return paths.state_dir() .. "/daemon.log"
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
