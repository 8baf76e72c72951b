/*
 * readers.h: the readers of bgproc.sys that the engine samples jobs with
 * (processes' CPU and memory, listening sockets, an HTTP probe), and what
 * they share. sys.c registers bg_sys_readers and calls bg_sys_open_http.
 */
#ifndef BGPROC_SYS_READERS_H
#define BGPROC_SYS_READERS_H

#include <dirent.h>
#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>

/* The functions, for luaL_setfuncs on the module table. */
extern const luaL_Reg bg_sys_readers[];

/* The metatable of sys.http_probe's probes. */
void bg_sys_open_http(lua_State *L);

/* Push nil, "ENAME: what: strerror", "ENAME"; returns 3. */
int bg_sys_fail(lua_State *L, int err, const char *what);

/*
 * A directory or file being read, owned by a userdata so that an error
 * raised while it is open (out of memory in lua_rawseti) still closes it:
 * bg_sys_handle pushes one (nothing open yet), its __gc closes what is.
 */
typedef struct bg_handle {
  int fd;    /* an fd of its own (a socket, a directory read with
                getdents64), or the one dir owns */
  DIR *dir;
  FILE *file;
} bg_handle;

bg_handle *bg_sys_handle(lua_State *L);
void bg_sys_handle_close(bg_handle *h);

/* Open the directory at path (relative to dirfd) into h: 0, or -1 with
 * errno. */
int bg_sys_handle_opendir(bg_handle *h, int dirfd, const char *path);

int bg_sys_proc_scan(lua_State *L);
int bg_sys_clock_ticks(lua_State *L);
int bg_sys_page_size(lua_State *L);
int bg_sys_socket_inodes(lua_State *L);
int bg_sys_inet_listeners(lua_State *L);
int bg_sys_http_probe(lua_State *L);

#endif
