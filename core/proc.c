/*
 * proc.c: process-level helpers a daemon needs and luv does not offer.
 *
 *   core.peercred(fd)       -> pid, uid, gid of a Unix socket's peer
 *   core.pidfd(pid)         -> a Pidfd: watch a process you did not start
 *   core.lock(path)         -> a Lock (flock, exclusive, non-blocking)
 *   core.listen(path, n)    -> a Listener: a Unix socket we accept() on
 *   core.getuid()           -> the real uid
 *   loop:reap_strays()      -> reap orphans adopted by a subreaper host
 *   core.leave_job_cgroup() -> true if we left a job's cgroup leaf
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bgproc.h"
#include "cgroup.h"
#include "group.h"

#define PIDFD_MT "bgproc.core.Pidfd"
#define LOCK_MT "bgproc.core.Lock"
#define LISTENER_MT "bgproc.core.Listener"

typedef struct fdbox {
  int fd;
} fdbox;

/* core.peercred(fd) -> pid, uid, gid | nil, msg, errname */
static int core_peercred(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, 1, "fd must be >= 0");
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt((int)fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
    return bg_fail(L, errno, "SO_PEERCRED on fd %d", (int)fd);
  lua_pushinteger(L, cred.pid);
  lua_pushinteger(L, cred.uid);
  lua_pushinteger(L, cred.gid);
  return 3;
}

/* core.leave_job_cgroup() -> true (moved), false (not in a job's leaf)
 * | nil, msg, errname */
static int core_leave_job_cgroup(lua_State *L) {
  int rc = bg_cgroup_leave_job();
  if (rc < 0) return bg_fail(L, errno, "leave the job's cgroup");
  lua_pushboolean(L, rc);
  return 1;
}

static int core_getuid(lua_State *L) {
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

/* core.pidfd(pid) -> Pidfd | nil, msg, errname */
static int core_pidfd(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  luaL_argcheck(L, pid > 0 && pid <= 0x7fffffff, 1, "pid must be > 0");
  fdbox *b = newbox(L, PIDFD_MT);
  b->fd = bg_pidfd_open((pid_t)pid); /* always close-on-exec */
  if (b->fd < 0) return bg_fail(L, errno, "pidfd_open %d", (int)pid);
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

/* core.lock(path) -> Lock | nil, msg, errname ("EWOULDBLOCK" if held) */
static int core_lock(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  fdbox *b = newbox(L, LOCK_MT);
  b->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (b->fd < 0) return bg_fail(L, errno, "open lock '%s'", path);
  if (flock(b->fd, LOCK_EX | LOCK_NB) < 0) {
    int err = errno;
    close(b->fd);
    b->fd = -1;
    return bg_fail(L, err, "lock '%s'", path);
  }
  return 1;
}

static int lock_close(lua_State *L) { return box_close(L, LOCK_MT); }

/* ---- Listener: a listening Unix socket -------------------------------------
 * libuv's own accept, out of fds, accepts and closes the waiting connections
 * (its "EMFILE trick"): those clients are reset, never served. A daemon that
 * accepts itself can leave them queued in the backlog until it has fds. */

/* core.listen(path, backlog) -> Listener | nil, msg, errname */
static int core_listen(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  lua_Integer backlog = luaL_optinteger(L, 2, 128);
  luaL_argcheck(L, backlog > 0 && backlog <= 0x7fffffff, 2, "backlog must be > 0");
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (len >= sizeof sa.sun_path)
    return bg_fail(L, ENAMETOOLONG, "bind '%s' (at most %d bytes)", path,
                   (int)sizeof sa.sun_path - 1);
  memcpy(sa.sun_path, path, len);
  fdbox *b = newbox(L, LISTENER_MT);
  b->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (b->fd < 0) return bg_fail(L, errno, "socket for '%s'", path);
  const char *step = "bind";
  if (bind(b->fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      (step = "listen", listen(b->fd, (int)backlog) < 0)) {
    int err = errno;
    close(b->fd);
    b->fd = -1;
    return bg_fail(L, err, "%s '%s'", step, path);
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
  if (fd < 0) return bg_fail(L, errno == EWOULDBLOCK ? EAGAIN : errno, "accept");
  lua_pushinteger(L, fd);
  return 1;
}

/* ---- loop:reap_strays() ----------------------------------------------------- */

static bg_job *job_with_pid(bg_loop *lp, pid_t pid) {
  for (bg_job *j = lp->groups; j; j = j->gnext)
    if (j->pid == pid && !j->reaped) return j;
  return NULL;
}

/* For a host that owns every child it has (a daemon with subreaper = true):
 * reap each exited child. A job's leader is collected through its job (its
 * exit status is kept); any other child, an adopted orphan, is reaped and
 * counted. Returns the number of orphans reaped. */
int bg_loop_reap_strays(lua_State *L) {
  bg_loop *lp = luaL_checkudata(L, 1, BG_LOOP_MT);
  lua_Integer n = 0;
  if (lp->closed) {
    lua_pushinteger(L, 0);
    return 1;
  }
  for (int i = 0; i < 4096; i++) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0 ||
        si.si_pid == 0)
      break;
    bg_job *j = job_with_pid(lp, si.si_pid);
    if (j) {
      bg_job_collect(j);
      if (!j->reaped) break; /* cannot happen; never spin */
    } else if (bg_loop_owns_pid(si.si_pid)) {
      break; /* a guardian or another loop's leader: theirs to collect */
    } else {
      pid_t stray = si.si_pid;
      memset(&si, 0, sizeof si);
      if (waitid(P_PID, (id_t)stray, &si, WEXITED | WNOHANG | __WALL) < 0 || si.si_pid == 0)
        break; /* never spin on a child we cannot take */
      n++;
    }
  }
  lua_pushinteger(L, n);
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

static const luaL_Reg proc_funcs[] = {
    {"peercred", core_peercred}, {"pidfd", core_pidfd},
    {"lock", core_lock},         {"getuid", core_getuid},
    {"listen", core_listen},
    {"leave_job_cgroup", core_leave_job_cgroup},
    {NULL, NULL},
};

/* Adds the functions above to the module table on top of the stack. */
void bg_proc_open(lua_State *L) {
  new_class(L, PIDFD_MT, pidfd_methods, pidfd_close);
  new_class(L, LOCK_MT, lock_methods, lock_close);
  new_class(L, LISTENER_MT, listener_methods, listener_close);
  luaL_setfuncs(L, proc_funcs, 0);
}
