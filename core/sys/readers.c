/*
 * readers.c: what the readers share (see readers.h), and their table.
 */
#define _GNU_SOURCE
#include "readers.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define HANDLE_MT "bgproc.sys.Handle"

int bg_sys_fail(lua_State *L, int err, const char *what) {
  const char *name = strerrorname_np(err);
  if (name == NULL) name = "EIO";
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s: %s", name, what, strerror(err));
  lua_pushstring(L, name);
  return 3;
}

void bg_sys_handle_close(bg_handle *h) {
  if (h->dir != NULL) closedir(h->dir);
  else if (h->fd >= 0) close(h->fd);
  if (h->file != NULL) fclose(h->file);
  h->dir = NULL;
  h->file = NULL;
  h->fd = -1;
}

static int handle_gc(lua_State *L) {
  bg_sys_handle_close(luaL_checkudata(L, 1, HANDLE_MT));
  return 0;
}

bg_handle *bg_sys_handle(lua_State *L) {
  bg_handle *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->fd = -1;
  h->dir = NULL;
  h->file = NULL;
  /* internal only: the metatable is made on first use */
  if (luaL_newmetatable(L, HANDLE_MT)) {
    lua_pushcfunction(L, handle_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return h;
}

int bg_sys_handle_opendir(bg_handle *h, int dirfd, const char *path) {
  h->fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (h->fd < 0) return -1;
  h->dir = fdopendir(h->fd);
  if (h->dir != NULL) return 0;
  int err = errno;
  close(h->fd); /* now, not at the handle's collection */
  h->fd = -1;
  errno = err;
  return -1;
}

const luaL_Reg bg_sys_readers[] = {
    {"proc_scan", bg_sys_proc_scan},
    {"clock_ticks", bg_sys_clock_ticks},
    {"page_size", bg_sys_page_size},
    {"socket_inodes", bg_sys_socket_inodes},
    {"inet_listeners", bg_sys_inet_listeners},
    {"http_probe", bg_sys_http_probe},
    {NULL, NULL},
};
