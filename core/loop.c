/*
 * loop.c: the bgproc.core.Loop userdata: one epoll fd for every job's
 * pipes and pidfd, the guardian, spawn, dispatch and wait.
 *
 * A host with its own loop watches loop:fd() for readability and calls
 * loop:dispatch(); a host without one calls loop:wait(timeout_ms).
 * Either way one call drains every ready pipe into its ring, reaps every
 * exited leader and returns one event record per job that changed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bgproc.h"
#include "cgroup.h"
#include "fds.h"

#define CHILD_STACK (128 * 1024)
#define MAX_EVENTS 64

extern char **environ;

/* Every open loop of the process (a Lua state is single-threaded; several
 * states in several threads would each need their own core). */
static bg_loop *all_loops;

static void register_loop(bg_loop *lp) {
  lp->next_loop = all_loops;
  all_loops = lp;
}

static void unregister_loop(bg_loop *lp) {
  for (bg_loop **p = &all_loops; *p; p = &(*p)->next_loop) {
    if (*p == lp) {
      *p = lp->next_loop;
      break;
    }
  }
  lp->next_loop = NULL;
}

int bg_loop_owns_pid(pid_t pid) {
  for (bg_loop *lp = all_loops; lp; lp = lp->next_loop) {
    if (lp->guard.pid == pid) return 1;
    for (bg_job *j = lp->groups; j; j = j->gnext)
      if (j->pid == pid && !j->reaped) return 1;
  }
  return 0;
}

static bg_loop *checkloop(lua_State *L) {
  bg_loop *lp = luaL_checkudata(L, 1, BG_LOOP_MT);
  if (lp->closed) luaL_error(L, "attempt to use a closed loop");
  return lp;
}

int bg_loop_watch(bg_loop *lp, bg_watch *w, int fd, uint32_t ev) {
  struct epoll_event e;
  memset(&e, 0, sizeof e);
  e.events = ev;
  e.data.ptr = w;
  return epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? errno : 0;
}

void bg_loop_unwatch(bg_loop *lp, int fd) {
  if (lp->epfd >= 0 && fd >= 0) epoll_ctl(lp->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* ---- guardian ------------------------------------------------------------ */

/* Watch the guardian's pidfd, to restart it if it dies. If the epoll set
 * refuses (ENOSPC...), the guardian keeps running unwatched: stopping it
 * would be worse. The next spawn tries again. */
static void watch_guardian(bg_loop *lp) {
  if (lp->guard_watched || lp->guard.pidfd < 0) return;
  lp->guard_watched = bg_loop_watch(lp, &lp->guard_watch, lp->guard.pidfd, EPOLLIN) == 0;
}

/* Start the guardian. The group table outlives any one guardian, so a
 * replacement knows every group at once. */
static int start_guardian(bg_loop *lp) {
  int err = bg_guardian_start(&lp->guard);
  if (err) return err;
  watch_guardian(lp);
  return 0;
}

static void guardian_exited(bg_loop *lp) {
  int pidfd = lp->guard.pidfd;
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (pidfd < 0) return;
  if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) == 0 &&
      si.si_pid == 0)
    return; /* still running */
  if (lp->guard_watched) bg_loop_unwatch(lp, pidfd);
  lp->guard_watched = 0;
  bg_guardian_reap(&lp->guard);
  /* Someone killed it: the jobs must not go unguarded. If this fails the
   * next spawn tries again. */
  if (!lp->closed) start_guardian(lp);
}

static int ensure_guardian(bg_loop *lp) {
  if (!lp->use_guardian) return 0;
  if (lp->guard.pidfd < 0) return start_guardian(lp); /* none, or it died */
  watch_guardian(lp);
  return 0;
}

/* ---- spawn option parsing ------------------------------------------------- */

static const char *const spawn_keys[] = {
    "command", "argv", "cwd", "env", "clear_env", "stdin", "pty", "ring",
    "pipe_size", "merge", NULL,
};

static void check_keys(lua_State *L, int t, const char *const *keys,
                       const char *what) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: option names must be strings, got %s", what,
                 luaL_typename(L, -1));
    const char *k = lua_tostring(L, -1);
    int known = 0;
    for (const char *const *p = keys; *p; p++)
      if (strcmp(*p, k) == 0) known = 1;
    if (!known) luaL_error(L, "%s: unknown option '%s'", what, k);
  }
}

/* Push t[k]; returns 0 (and pushes nothing) when absent. `what` names
 * the call in errors. */
static int get_opt(lua_State *L, int t, const char *k, int type,
                   const char *expected, const char *what) {
  int got = lua_getfield(L, t, k);
  if (got == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (got != type)
    luaL_error(L, "%s: option '%s' must be %s, got %s", what, k, expected,
               luaL_typename(L, -1));
  return 1;
}

static int bool_opt(lua_State *L, int t, const char *k, int dflt,
                    const char *what) {
  if (!get_opt(L, t, k, LUA_TBOOLEAN, "a boolean", what)) return dflt;
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static const char *checked_cstring(lua_State *L, int idx, const char *what) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (strlen(s) != len)
    luaL_error(L, "spawn: %s must not contain NUL bytes", what);
  return s;
}

static lua_Integer int_opt(lua_State *L, int t, const char *k,
                           lua_Integer dflt, lua_Integer lo, lua_Integer hi,
                           const char *what) {
  if (!get_opt(L, t, k, LUA_TNUMBER, "an integer", what)) return dflt;
  if (!lua_isinteger(L, -1))
    luaL_error(L, "%s: option '%s' must be an integer", what, k);
  lua_Integer v = lua_tointeger(L, -1);
  if (v < lo || v > hi)
    luaL_error(L, "%s: option '%s' must be between %I and %I, got %I", what,
               k, lo, hi, v);
  lua_pop(L, 1);
  return v;
}

/* argv: a non-empty sequence of strings -> NULL-terminated char* array kept
 * alive by a userdata left on the stack. */
static char **build_argv(lua_State *L, int t) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, t);
  if (n < 1) luaL_error(L, "spawn: option 'argv' must be a non-empty list");
  if (n > 100000) luaL_error(L, "spawn: option 'argv' is too long");
  char **argv = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *argv, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, t, i) != LUA_TSTRING)
      luaL_error(L, "spawn: argv[%I] must be a string, got %s", i,
                 luaL_typename(L, -1));
    argv[i - 1] = (char *)checked_cstring(L, -1, "argv entries");
    lua_pop(L, 1); /* still referenced by the argv table */
  }
  argv[n] = NULL;
  return argv;
}

/* The child's environment: the host's (unless clear) with the env table's
 * entries overriding; a false value removes a variable. Strings are
 * anchored in table `anchor`. */
static char **build_env(lua_State *L, int env, int clear, int anchor) {
  size_t n = 0, host = 0;
  if (!clear)
    for (char **e = environ; e && *e; e++) host++;
  size_t extra = 0;
  if (env) {
    lua_pushnil(L);
    while (lua_next(L, env)) {
      if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "spawn: env keys must be strings, got %s",
                   luaL_typename(L, -2));
      const char *k = checked_cstring(L, -2, "env names");
      if (*k == '\0' || strchr(k, '='))
        luaL_error(L, "spawn: env name '%s' must be non-empty without '='",
                   k);
      int vt = lua_type(L, -1);
      if (vt == LUA_TSTRING) {
        checked_cstring(L, -1, "env values");
        extra++;
      } else if (!(vt == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        luaL_error(L, "spawn: env value of '%s' must be a string or false, "
                   "got %s", k, luaL_typename(L, -1));
      }
      lua_pop(L, 1);
    }
  }
  char **envp = lua_newuserdatauv(L, (host + extra + 1) * sizeof *envp, 0);
  for (size_t i = 0; i < host; i++) {
    const char *e = environ[i];
    const char *eq = strchr(e, '=');
    if (env && eq) {
      lua_pushlstring(L, e, (size_t)(eq - e));
      int overridden = lua_rawget(L, env) != LUA_TNIL;
      lua_pop(L, 1);
      if (overridden) continue;
    }
    envp[n++] = (char *)e;
  }
  if (env) {
    lua_pushnil(L);
    while (lua_next(L, env)) {
      if (lua_type(L, -1) == LUA_TSTRING) {
        lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
        envp[n++] = (char *)lua_tostring(L, -1);
        lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
      }
      lua_pop(L, 1);
    }
  }
  envp[n] = NULL;
  return envp;
}

static const char *env_path(char *const *envp) {
  for (char *const *e = envp; *e; e++)
    if (strncmp(*e, "PATH=", 5) == 0) return *e + 5;
  return NULL;
}

/* ---- cgroups ------------------------------------------------------------------ */

/* Kill whatever is left in the loop's cgroup directory, remove it. */
static void drop_loop_cgroup(bg_loop *lp) {
  if (lp->cg_fd < 0) return;
  bg_cgroup_clear(lp->cg_fd);
  bg_close_fd(&lp->cg_fd);
  rmdir(lp->cg_path);
  lp->guard.cgroup_dir = NULL;
}

/* A cgroup directory of our own, where the machine allows it: jobs that
 * leave their session are still found and killed there. Made when first
 * needed, before the guardian is forked (it must know the directory), so
 * a host that never spawns leaves nothing behind. */
static void open_loop_cgroup(bg_loop *lp) {
  if (lp->cg_tried) return;
  lp->cg_tried = 1;
  lp->cg_fd = bg_cgroup_open_loop_dir(lp->cg_path, sizeof lp->cg_path,
                                      lp->cg_why, sizeof lp->cg_why);
  if (lp->cg_fd >= 0) lp->guard.cgroup_dir = lp->cg_path;
}

/* A fresh leaf for job j; returns its cgroup.procs (for the child to
 * join), or -1: the job runs without one. */
static int open_leaf(bg_loop *lp, bg_job *j) {
  if (lp->cg_fd < 0 || lp->cg_refused) return -1;
  char name[sizeof j->cg_name];
  snprintf(name, sizeof name, "job-%lu", ++lp->cg_seq);
  if (bg_cgroup_mkleaf(lp->cg_fd, name) < 0) return -1;
  int fd = bg_cgroup_procs_fd(lp->cg_fd, name);
  if (fd < 0) {
    unlinkat(lp->cg_fd, name, AT_REMOVEDIR);
    return -1;
  }
  memcpy(j->cg_name, name, sizeof name);
  return fd;
}

/* ---- spawn ----------------------------------------------------------------- */

static int spawn_failed(lua_State *L, int err, bg_stage stage,
                        const bg_spawn_req *req) {
  if (stage == BG_STAGE_CHDIR)
    return bg_fail(L, err, "chdir '%s'", req->cwd);
  if (stage == BG_STAGE_EXEC)
    return bg_fail(L, err, "exec '%s'", req->file);
  return bg_fail(L, err, "spawn '%s' (%s)", req->file, bg_stage_name(stage));
}

/* loop:spawn{ command = "sh string" | argv = {...}, cwd, env, clear_env,
 *             stdin = "null"|"pipe", pty = bool|{rows, cols}, ring,
 *             pipe_size } -> job | nil, msg, errname
 * pipe_size: what stdout/stderr pipes grow to once the job fills them (0:
 * never); growing only busy pipes spares the per-user pipe quota.
 * merge: stderr shares stdout's pipe: exact order, all bytes "stdout". */
static int loop_spawn(lua_State *L) {
  bg_loop *lp = checkloop(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  check_keys(L, 2, spawn_keys, "spawn");
  lua_newtable(L); /* 3: anchor for strings built here */
  int anchor = 3;

  bg_spawn_req req;
  memset(&req, 0, sizeof req);
  static char *sh_argv[4] = {"sh", "-c", NULL, NULL};
  char **argv;
  int has_cmd = get_opt(L, 2, "command", LUA_TSTRING, "a string", "spawn");
  int has_argv = get_opt(L, 2, "argv", LUA_TTABLE, "a list of strings", "spawn");
  if (has_cmd == has_argv)
    return luaL_error(L, has_cmd ? "spawn: options 'command' and 'argv' "
                                   "exclude each other"
                                 : "spawn: option 'command' (a string) or "
                                   "'argv' (a list) is required");
  if (has_cmd) {
    const char *cmd = checked_cstring(L, -1, "option 'command'");
    argv = lua_newuserdatauv(L, sizeof sh_argv, 0);
    memcpy(argv, sh_argv, sizeof sh_argv);
    argv[2] = (char *)cmd;
    req.file = "/bin/sh";
  } else {
    argv = build_argv(L, lua_gettop(L));
    req.file = argv[0];
    if (*req.file == '\0') return luaL_error(L, "spawn: argv[1] is empty");
  }
  req.argv = argv;

  if (get_opt(L, 2, "cwd", LUA_TSTRING, "a string", "spawn"))
    req.cwd = checked_cstring(L, -1, "option 'cwd'");
  int clear = bool_opt(L, 2, "clear_env", 0, "spawn");
  int env = 0;
  if (get_opt(L, 2, "env", LUA_TTABLE, "a table of strings", "spawn"))
    env = lua_gettop(L);
  req.envp = build_env(L, env, clear, anchor);
  req.path = env_path(req.envp);

  req.stdin_kind = BG_STDIN_NULL;
  if (get_opt(L, 2, "stdin", LUA_TSTRING, "\"null\" or \"pipe\"", "spawn")) {
    const char *s = lua_tostring(L, -1);
    if (strcmp(s, "pipe") == 0) req.stdin_kind = BG_STDIN_PIPE;
    else if (strcmp(s, "null") != 0)
      return luaL_error(L, "spawn: option 'stdin' must be \"null\" or "
                        "\"pipe\", got \"%s\"", s);
  }
  req.merge = bool_opt(L, 2, "merge", 0, "spawn");
  int pt = lua_getfield(L, 2, "pty");
  if (pt == LUA_TBOOLEAN) {
    if (lua_toboolean(L, -1)) req.stdin_kind = BG_STDIN_PTY;
  } else if (pt == LUA_TTABLE) {
    int t = lua_gettop(L);
    static const char *const pty_keys[] = {"rows", "cols", NULL};
    check_keys(L, t, pty_keys, "spawn: pty");
    req.stdin_kind = BG_STDIN_PTY;
    req.rows = (unsigned short)int_opt(L, t, "rows", 24, 1, 65535, "spawn: pty");
    req.cols = (unsigned short)int_opt(L, t, "cols", 80, 1, 65535, "spawn: pty");
  } else if (pt != LUA_TNIL) {
    return luaL_error(L, "spawn: option 'pty' must be a boolean or "
                      "{rows=, cols=}, got %s", luaL_typename(L, -1));
  }
  size_t ring = (size_t)int_opt(L, 2, "ring", (lua_Integer)lp->default_ring,
                                BG_MIN_RING, (lua_Integer)BG_MAX_RING, "spawn");
  int pipe_max = (int)int_opt(L, 2, "pipe_size", lp->pipe_size, 0,
                              BG_MAX_PIPE, "spawn");
  req.null_fd = lp->null_fd;
  req.cgroup_fd = -1;

  open_loop_cgroup(lp);
  int err = ensure_guardian(lp);
  if (err) return bg_fail(L, err, "start the guardian process");

  bg_job *j = bg_job_new(L, 1);
  int job_idx = lua_gettop(L);
  if (bg_ring_init(&j->ring, ring) != 0)
    return bg_fail(L, ENOMEM, "allocate a %d-byte output ring", (int)ring);
  j->pipe_max = pipe_max;
  j->stdin_kind = req.stdin_kind;
  j->t0_ns = bg_now_ns();
  j->started_ms = bg_wall_ms();

  bg_spawn_res res;
  bg_stage stage;
  req.cgroup_fd = open_leaf(lp, j);
  err = bg_spawn(&req, &res, lp->stack, lp->stack_size, &stage);
  bg_close_fd(&req.cgroup_fd);
  if (err && stage == BG_STAGE_CGROUP) {
    /* Not allowed to move processes here after all: run it (and the
     * loop's next jobs) without a cgroup. Jobs already in one keep it. */
    snprintf(lp->cg_why, sizeof lp->cg_why, "cannot join a cgroup under "
             "%.160s: %.60s", lp->cg_path, strerror(err));
    lp->cg_refused = 1;
    bg_job_drop_cgroup(j);
    err = bg_spawn(&req, &res, lp->stack, lp->stack_size, &stage);
  }
  if (err) {
    bg_job_drop_cgroup(j);
    bg_ring_free(&j->ring);
    j->closed = 1;
    return spawn_failed(L, err, stage, &req);
  }
  /* pid P was free: any group P we still track has certainly emptied */
  for (bg_loop *other = all_loops; other; other = other->next_loop)
    for (bg_job *old = other->groups; old; old = old->gnext)
      if (old->pid == res.pid) {
        bg_job_forget_group(old);
        break;
      }
  j->pid = res.pid;
  j->pidfd = res.pidfd;
  j->out_fd = res.out_fd;
  j->err_fd = res.err_fd;
  j->in_fd = res.in_fd;

  if (bg_job_track(j) < 0) err = errno;
  if (!err) err = bg_loop_watch(lp, &j->w[W_PIDFD], j->pidfd, EPOLLIN);
  if (!err) err = bg_loop_watch(lp, &j->w[W_OUT], j->out_fd, EPOLLIN);
  if (!err && j->err_fd >= 0)
    err = bg_loop_watch(lp, &j->w[W_ERR], j->err_fd, EPOLLIN);
  if (err) {
    bg_job_release(j);
    return bg_fail(L, err, "watch job %d", (int)res.pid);
  }
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, job_idx);
  lua_rawsetp(L, -2, j);
  lua_pop(L, 1);
  j->live = 1;
  lp->nlive++;
  lua_pushvalue(L, job_idx);
  return 1;
}

/* ---- dispatch -------------------------------------------------------------- */

static int poll_events(bg_loop *lp, int timeout_ms) {
  struct epoll_event ev[MAX_EVENTS];
  for (int round = 0; round < 16; round++) {
    int n = epoll_wait(lp->epfd, ev, MAX_EVENTS, round == 0 ? timeout_ms : 0);
    if (n < 0) return errno == EINTR ? 0 : errno;
    for (int i = 0; i < n; i++) {
      bg_watch *w = ev[i].data.ptr;
      if (w->kind == W_GUARD) {
        guardian_exited(lp);
        continue;
      }
      bg_job *j = w->job;
      switch (w->kind) {
        case W_OUT:
        case W_ERR:
          bg_job_drain(j, w->kind);
          break;
        case W_PIDFD:
          bg_job_collect(j);
          break;
        case W_IN:
          bg_job_flush_stdin(j);
          break;
      }
    }
    if (n < MAX_EVENTS) break;
  }
  /* Groups whose leader is gone live on only through their members: see
   * at once when the last one leaves (one kill(-P, 0) each), before the
   * id could be handed to someone else. */
  for (bg_job *j = lp->groups, *next; j; j = next) {
    next = j->gnext; /* checking may untrack j */
    if (j->reaped) bg_job_check_group(j);
  }
  return 0;
}

static void setflag(lua_State *L, const char *k, int on) {
  if (!on) return;
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, k);
}

/* Pop pending jobs into a list of {job=, output=, exit=, eof=} records. */
static void push_events(lua_State *L, bg_loop *lp) {
  lua_newtable(L);
  int result = lua_gettop(L);
  lua_getiuservalue(L, 1, 1);
  int live = lua_gettop(L);
  lua_Integer n = 0;
  while (lp->pend_head) {
    bg_job *j = lp->pend_head;
    lp->pend_head = j->pend_next;
    unsigned bits = j->pend;
    j->pend = 0;
    if (lua_rawgetp(L, live, j) != LUA_TUSERDATA) {
      lua_pop(L, 1);
      continue;
    }
    lua_createtable(L, 0, 4);
    lua_insert(L, -2);
    lua_setfield(L, -2, "job");
    setflag(L, "output", bits & EV_OUTPUT);
    setflag(L, "exit", bits & EV_EXIT);
    setflag(L, "eof", bits & EV_EOF);
    lua_rawseti(L, result, ++n);
    if (bg_job_finished(j) && j->live) {
      j->live = 0;
      lp->nlive--;
      lua_pushnil(L);
      lua_rawsetp(L, live, j);
    }
  }
  lua_settop(L, result);
}

static int dispatch(lua_State *L, bg_loop *lp, int timeout_ms) {
  int err = poll_events(lp, timeout_ms);
  if (err) return bg_fail(L, err, "epoll_wait");
  push_events(L, lp);
  return 1;
}

/* loop:dispatch() -> events; never blocks */
static int loop_dispatch(lua_State *L) {
  return dispatch(L, checkloop(L), 0);
}

/* loop:wait([timeout_ms]) -> events; blocks until something happens or the
 * timeout passes (nil or negative: no timeout) */
static int loop_wait(lua_State *L) {
  bg_loop *lp = checkloop(L);
  lua_Integer ms = luaL_optinteger(L, 2, -1);
  if (ms > 0x7fffffff) ms = 0x7fffffff;
  return dispatch(L, lp, ms < 0 ? -1 : (int)ms);
}

static int loop_fd(lua_State *L) {
  lua_pushinteger(L, checkloop(L)->epfd);
  return 1;
}

/* loop:count() -> jobs still watched (running, or output still open) */
static int loop_count(lua_State *L) {
  lua_pushinteger(L, checkloop(L)->nlive);
  return 1;
}

/* loop:guardian() -> pid of the guardian process, or nil */
static int loop_guardian(lua_State *L) {
  bg_loop *lp = checkloop(L);
  if (lp->guard.pid <= 0) return 0;
  lua_pushinteger(L, lp->guard.pid);
  return 1;
}

/* loop:cgroup() -> the loop's cgroup directory | nil, why new jobs get
 * none */
static int loop_cgroup(lua_State *L) {
  bg_loop *lp = checkloop(L);
  open_loop_cgroup(lp);
  if (lp->cg_fd >= 0 && !lp->cg_refused) {
    lua_pushstring(L, lp->cg_path);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, lp->cg_why);
  return 2;
}

/* ---- close ------------------------------------------------------------------ */

/* What a loop owns besides jobs; safe on a half-built loop. */
static void loop_free_parts(bg_loop *lp) {
  if (lp->epfd >= 0) close(lp->epfd);
  lp->epfd = -1;
  if (lp->null_fd >= 0) close(lp->null_fd);
  lp->null_fd = -1;
  if (lp->stack) munmap(lp->stack, lp->stack_size);
  lp->stack = NULL;
  drop_loop_cgroup(lp);
}

static void loop_shutdown(lua_State *L, bg_loop *lp) {
  if (lp->closed || lp->epfd < 0) {
    lp->closed = 1;
    return;
  }
  lp->closed = 1;
  if (lua_getiuservalue(L, 1, 1) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      bg_job *j = lua_touserdata(L, -1);
      bg_job_terminate(j);
      bg_job_collect(j);
      bg_job_drop_stdin(j);
      j->live = 0;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  while (lp->groups) bg_job_terminate(lp->groups); /* untracks it */
  drop_loop_cgroup(lp); /* escapees too */
  lp->pend_head = NULL;
  lp->nlive = 0;
  if (lp->guard_watched) bg_loop_unwatch(lp, lp->guard.pidfd);
  lp->guard_watched = 0;
  bg_guardian_stop(&lp->guard);
  unregister_loop(lp);
  if (lp->subreaper) {
    int others = 0;
    for (bg_loop *o = all_loops; o; o = o->next_loop) others |= o->subreaper;
    if (!others) prctl(PR_SET_CHILD_SUBREAPER, 0); /* we set it; we clear it */
  }
  loop_free_parts(lp);
  lua_newtable(L);
  lua_setiuservalue(L, 1, 1);
}

/* loop:close(): SIGKILL every job group, reap all, stop the guardian. */
static int loop_close(lua_State *L) {
  bg_loop *lp = luaL_checkudata(L, 1, BG_LOOP_MT);
  lua_settop(L, 1);
  loop_shutdown(L, lp);
  return 0;
}

static int loop_tostring(lua_State *L) {
  bg_loop *lp = luaL_checkudata(L, 1, BG_LOOP_MT);
  if (lp->closed) lua_pushstring(L, "bgproc.core.Loop (closed)");
  else lua_pushfstring(L, "bgproc.core.Loop: fd %d, %d jobs", lp->epfd,
                       (int)lp->nlive);
  return 1;
}

/* core.new{ guardian = true, ring = 1 MiB, pipe_size = 256 KiB,
 *           subreaper = false, cgroup = true } -> loop */
int bg_core_new(lua_State *L) {
  static const char *const keys[] = {"guardian", "ring", "pipe_size",
                                     "subreaper", "cgroup", NULL};
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  check_keys(L, 1, keys, "new");
  int use_guardian = bool_opt(L, 1, "guardian", 1, "new");
  int subreaper = bool_opt(L, 1, "subreaper", 0, "new");
  int use_cgroup = bool_opt(L, 1, "cgroup", 1, "new");
  size_t ring = (size_t)int_opt(L, 1, "ring", BG_DEFAULT_RING, BG_MIN_RING,
                                (lua_Integer)BG_MAX_RING, "new");
  int pipe_size = (int)int_opt(L, 1, "pipe_size", BG_DEFAULT_PIPE, 0,
                               BG_MAX_PIPE, "new");
  bg_loop *lp = lua_newuserdatauv(L, sizeof *lp, 1);
  memset(lp, 0, sizeof *lp);
  lp->epfd = -1;
  lp->null_fd = -1;
  lp->cg_fd = -1;
  lp->closed = 1; /* until fully built: __gc does nothing */
  bg_guardian_init(&lp->guard);
  lp->guard_watch.job = NULL;
  lp->guard_watch.kind = W_GUARD;
  lp->use_guardian = use_guardian;
  lp->default_ring = ring;
  lp->pipe_size = pipe_size;
  luaL_setmetatable(L, BG_LOOP_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  lp->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (lp->epfd < 0) return bg_fail(L, errno, "epoll_create1");
  lp->stack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (lp->stack == MAP_FAILED) {
    int err = errno;
    lp->stack = NULL;
    loop_free_parts(lp);
    return bg_fail(L, err, "allocate the spawn stack");
  }
  lp->stack_size = CHILD_STACK;
  /* Process-wide: orphans of the jobs become ours, and each dispatch reaps
   * those of our groups. For hosts that own their process (the daemon). */
  if (subreaper) {
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
      int err = errno;
      loop_free_parts(lp);
      return bg_fail(L, err, "prctl(PR_SET_CHILD_SUBREAPER)");
    }
    lp->subreaper = 1;
  }
  lp->cg_tried = !use_cgroup; /* made at the first spawn */
  if (!use_cgroup)
    snprintf(lp->cg_why, sizeof lp->cg_why, "disabled (cgroup = false)");
  /* stdin of every job that has none; failing that, each spawn opens one */
  lp->null_fd = bg_fd_above_stdio(open("/dev/null", O_RDONLY | O_CLOEXEC));
  register_loop(lp);
  lp->closed = 0;
  return 1;
}

static const luaL_Reg loop_methods[] = {
    {"spawn", loop_spawn},   {"dispatch", loop_dispatch},
    {"wait", loop_wait},     {"fd", loop_fd},
    {"count", loop_count},   {"guardian", loop_guardian},
    {"reap_strays", bg_loop_reap_strays},
    {"cgroup", loop_cgroup},
    {"close", loop_close},   {NULL, NULL},
};

static const luaL_Reg loop_meta[] = {
    {"__gc", loop_close},
    {"__close", loop_close},
    {"__tostring", loop_tostring},
    {"__index", NULL},
    {NULL, NULL},
};

void bg_loop_open(lua_State *L) {
  luaL_newmetatable(L, BG_LOOP_MT);
  luaL_setfuncs(L, loop_meta, 0);
  luaL_newlibtable(L, loop_methods);
  luaL_setfuncs(L, loop_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
