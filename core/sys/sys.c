/*
 * sys.c: bgproc.sys, the process-level helpers a daemon needs and luv
 * does not offer.
 *
 *   sys.peercred(fd)       -> pid, uid, gid of a Unix socket's peer
 *   sys.pidfd(pid)         -> a Pidfd: watch a process you did not start
 *   sys.lock(path)         -> a Lock (flock, exclusive, non-blocking)
 *   sys.listen(path, n)    -> a Listener: a Unix socket we accept() on
 *   sys.getuid()           -> the real uid
 *
 * and the readers the engine samples jobs with (readers.h): proc_scan,
 * clock_ticks, page_size, socket_inodes, inet_listeners, http_probe.
 *
 * Misuse raises; operational failure returns nil, "ENAME: what:
 * strerror", "ENAME", as bgproc.core does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "readers.h"

#define PIDFD_MT "bgproc.sys.Pidfd"
#define LOCK_MT "bgproc.sys.Lock"
#define LISTENER_MT "bgproc.sys.Listener"

typedef struct fdbox {
  int fd;
} fdbox;

/* Push nil, "ENAME: what: strerror", "ENAME" and return 3. */
static int fail(lua_State *L, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(lua_State *L, int err, const char *fmt, ...) {
  char what[512];
  const char *name = strerrorname_np(err);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (name == NULL) name = "EIO";
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s: %s", name, what, strerror(err));
  lua_pushstring(L, name);
  return 3;
}

/* sys.peercred(fd) -> pid, uid, gid | nil, msg, errname */
static int sys_peercred(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, 1, "fd must be >= 0");
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt((int)fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
    return fail(L, errno, "SO_PEERCRED on fd %d", (int)fd);
  lua_pushinteger(L, cred.pid);
  lua_pushinteger(L, cred.uid);
  lua_pushinteger(L, cred.gid);
  return 3;
}

/* sys.getuid() -> the real uid */
static int sys_getuid(lua_State *L) {
  lua_pushinteger(L, getuid());
  return 1;
}

static fdbox *newbox(lua_State *L, const char *mt) {
  fdbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->fd = -1;
  luaL_setmetatable(L, mt);
  return b;
}

static int box_close(lua_State *L, const char *mt) {
  fdbox *b = luaL_checkudata(L, 1, mt);
  if (b->fd >= 0) close(b->fd);
  b->fd = -1;
  return 0;
}

static int box_fd(lua_State *L, const char *mt) {
  fdbox *b = luaL_checkudata(L, 1, mt);
  if (b->fd < 0) luaL_error(L, "attempt to use a closed %s", mt);
  lua_pushinteger(L, b->fd);
  return 1;
}

/* ---- Pidfd: readable (poll it with luv) once the process has exited ---- */

/* sys.pidfd(pid) -> Pidfd | nil, msg, errname */
static int sys_pidfd(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  luaL_argcheck(L, pid > 0 && pid <= 0x7fffffff, 1, "pid must be > 0");
  fdbox *b = newbox(L, PIDFD_MT);
  b->fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0); /* always close-on-exec */
  if (b->fd < 0) return fail(L, errno, "pidfd_open %d", (int)pid);
  return 1;
}

static int pidfd_fd(lua_State *L) { return box_fd(L, PIDFD_MT); }
static int pidfd_close(lua_State *L) { return box_close(L, PIDFD_MT); }

/* pidfd:alive() -> boolean (a pidfd turns readable when its process exits) */
static int pidfd_alive(lua_State *L) {
  fdbox *b = luaL_checkudata(L, 1, PIDFD_MT);
  struct pollfd p = {b->fd, POLLIN, 0};
  int ready;
  while ((ready = poll(&p, 1, 0)) < 0 && errno == EINTR) {
  }
  lua_pushboolean(L, b->fd >= 0 && ready == 0);
  return 1;
}

/* ---- Lock: an exclusive flock held while the object lives ---------------- */

/* sys.lock(path) -> Lock | nil, msg, errname ("EAGAIN" if held) */
static int sys_lock(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  fdbox *b = newbox(L, LOCK_MT);
  b->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (b->fd < 0) return fail(L, errno, "open lock '%s'", path);
  if (flock(b->fd, LOCK_EX | LOCK_NB) < 0) {
    int err = errno;
    close(b->fd);
    b->fd = -1;
    return fail(L, err, "lock '%s'", path);
  }
  return 1;
}

static int lock_close(lua_State *L) { return box_close(L, LOCK_MT); }

/* ---- Listener: a listening Unix socket -------------------------------------
 * libuv's own accept, out of fds, accepts and closes the waiting connections
 * (its "EMFILE trick"): those clients are reset, never served. A daemon that
 * accepts itself can leave them queued in the backlog until it has fds. */

/* sys.listen(path, backlog) -> Listener | nil, msg, errname */
static int sys_listen(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  lua_Integer backlog = luaL_optinteger(L, 2, 128);
  luaL_argcheck(L, backlog > 0 && backlog <= 0x7fffffff, 2, "backlog must be > 0");
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (len >= sizeof sa.sun_path)
    return fail(L, ENAMETOOLONG, "bind '%s' (at most %d bytes)", path,
                   (int)sizeof sa.sun_path - 1);
  memcpy(sa.sun_path, path, len);
  fdbox *b = newbox(L, LISTENER_MT);
  b->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (b->fd < 0) return fail(L, errno, "socket for '%s'", path);
  const char *step = "bind";
  if (bind(b->fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      (step = "listen", listen(b->fd, (int)backlog) < 0)) {
    int err = errno;
    close(b->fd);
    b->fd = -1;
    return fail(L, err, "%s '%s'", step, path);
  }
  return 1;
}

static int listener_fd(lua_State *L) { return box_fd(L, LISTENER_MT); }
static int listener_close(lua_State *L) { return box_close(L, LISTENER_MT); }

/* listener:accept() -> fd (non-blocking, close-on-exec; the caller owns it)
 * | nil, msg, errname ("EAGAIN": none waiting; "EMFILE": out of fds) */
static int listener_accept(lua_State *L) {
  fdbox *b = luaL_checkudata(L, 1, LISTENER_MT);
  if (b->fd < 0) luaL_error(L, "attempt to use a closed %s", LISTENER_MT);
  int fd;
  while ((fd = accept4(b->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0 &&
         (errno == EINTR || errno == ECONNABORTED)) {
  }
  if (fd < 0) return fail(L, errno == EWOULDBLOCK ? EAGAIN : errno, "accept");
  lua_pushinteger(L, fd);
  return 1;
}

static const luaL_Reg pidfd_methods[] = {
    {"fd", pidfd_fd}, {"close", pidfd_close}, {"alive", pidfd_alive}, {NULL, NULL},
};

static const luaL_Reg lock_methods[] = {
    {"close", lock_close}, {NULL, NULL},
};

static const luaL_Reg listener_methods[] = {
    {"fd", listener_fd}, {"accept", listener_accept}, {"close", listener_close}, {NULL, NULL},
};

static void new_class(lua_State *L, const char *mt, const luaL_Reg *methods,
                      lua_CFunction gc) {
  luaL_newmetatable(L, mt);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

static const luaL_Reg funcs[] = {
    {"peercred", sys_peercred}, {"pidfd", sys_pidfd},
    {"lock", sys_lock},         {"getuid", sys_getuid},
    {"listen", sys_listen},     {NULL, NULL},
};

int luaopen_bgproc_sys(lua_State *L) {
  new_class(L, PIDFD_MT, pidfd_methods, pidfd_close);
  new_class(L, LOCK_MT, lock_methods, lock_close);
  new_class(L, LISTENER_MT, listener_methods, listener_close);
  bg_sys_open_http(L);
  luaL_newlib(L, funcs);
  luaL_setfuncs(L, bg_sys_readers, 0); /* readers.h: proc_scan, http_probe... */
  return 1;
}
