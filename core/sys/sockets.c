/*
 * sockets.c: which sockets a process holds (bgproc.lib.sockets matches
 * them with listeners.c's).
 *
 *   sys.socket_inodes(pid) -> { inode, ... } | nil, msg, errname
 */
#define _GNU_SOURCE
#include "readers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "socket:[INODE]" into its inode; 0 for any other link. */
static unsigned long long socket_inode(const char *link, ssize_t len) {
  if (len < 10 || memcmp(link, "socket:[", 8) != 0 || link[len - 1] != ']') return 0;
  return strtoull(link + 8, NULL, 10);
}

/* sys.socket_inodes(pid) -> the inodes of the sockets pid has open, from
 * its /proc/<pid>/fd | nil, msg, errname (ENOENT: gone; EACCES: not ours).
 * getdents64 rather than readdir: no DIR to allocate, for each of the
 * hundreds of pids a refresh may walk. */
int bg_sys_socket_inodes(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  luaL_argcheck(L, pid > 0 && pid <= 0x7fffffff, 1, "pid must be > 0");
  lua_settop(L, 0);
  char path[32];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
  bg_handle *h = bg_sys_handle(L);
  h->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (h->fd < 0) {
    int err = errno; /* before anything else may change it */
    return bg_sys_fail(L, err, lua_pushfstring(L, "open %s", path));
  }
  lua_newtable(L);
  lua_Integer n = 0;
  _Alignas(struct dirent64) char buf[4096];
  ssize_t got;
  /* an error here is the process exiting under us: what was read stands */
  while ((got = getdents64(h->fd, buf, sizeof buf)) > 0) {
    for (ssize_t off = 0; off < got;) {
      const struct dirent64 *e = (const struct dirent64 *)(buf + off);
      off += e->d_reclen;
      if (e->d_name[0] == '.') continue;
      char link[64];
      /* an fd closed since the getdents fails: it is not there */
      ssize_t len = readlinkat(h->fd, e->d_name, link, sizeof link - 1);
      unsigned long long inode = len > 0 ? socket_inode(link, len) : 0;
      if (inode == 0) continue;
      lua_pushinteger(L, (lua_Integer)inode);
      lua_rawseti(L, -2, ++n);
    }
  }
  bg_sys_handle_close(h);
  return 1;
}
