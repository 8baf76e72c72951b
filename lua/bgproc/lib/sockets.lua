-- Listening sockets of processes (the ports a job serves). The listeners
-- of our network namespace (sys.inet_listeners: sock_diag, else
-- /proc/net/{tcp,tcp6,udp,udp6}) are read once per call; each pid's open
-- sockets (its /proc/<pid>/fd) are matched against them by inode.
local sys = require "bgproc.sys"

local sockets = {}

local function by_port(a, b)
  if a.port ~= b.port then return a.port < b.port end
  if a.protocol ~= b.protocol then return a.protocol < b.protocol end
  if a.family ~= b.family then return a.family < b.family end
  return a.address < b.address
end

-- The listeners among pids' sockets, one per protocol, family, address
-- and port: a socket shared by a parent and its children (a pre-forking
-- server) or several bound with SO_REUSEPORT is one port to its user,
-- named with the first of pids that holds it.
local function listeners_of(pids, by_inode)
  local list, seen = {}, {}
  for _, pid in ipairs(pids) do
    -- a process gone (ENOENT) or not ours (EACCES) listens on nothing we can see
    for _, inode in ipairs(sys.socket_inodes(pid) or {}) do
      local s = by_inode[inode]
      local key = s and ("%s%d %s %d"):format(s.protocol, s.family, s.address, s.port)
      if s and not seen[key] then
        seen[key] = true
        list[#list + 1] = { protocol = s.protocol, address = s.address, port = s.port,
                            family = s.family, pid = math.tointeger(pid) }
      end
    end
  end
  table.sort(list, by_port)
  return list
end

-- pid_lists: { { pid, ... }, ... }. Returns, in the same order, lists of
-- { protocol = "tcp"|"udp", address = "127.0.0.1"|"::"|..., port = int,
-- family = 4|6, pid = int }, sorted by port: TCP sockets in LISTEN, UDP
-- sockets bound and not connected. Or nil, msg, errname when the kernel's
-- tables cannot be read.
function sockets.listening(pid_lists)
  local listeners, msg, errname = sys.inet_listeners()
  if not listeners then return nil, msg, errname end
  local by_inode, any = {}, false
  for _, s in ipairs(listeners) do by_inode[s.inode], any = s, true end
  local out = {}
  for i, pids in ipairs(pid_lists) do
    -- nothing listens on the machine: no process's fds need reading
    out[i] = any and listeners_of(pids, by_inode) or {}
  end
  return out
end

return sockets
