/*
 * job.c: the bgproc.core.Job userdata: one process group, its pipes, its
 * ring, its exit status.
 *
 * Misuse (wrong types, bad stream names) raises; operational failures
 * (nothing left to signal, stdin closed, job closed) return
 * nil, "ENAME: ...", "ENAME".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "bgproc.h"
#include "fds.h"
#include "group.h"

static bg_job *checkjob(lua_State *L) {
  return luaL_checkudata(L, 1, BG_JOB_MT);
}

/* A job whose ring is gone cannot answer reads. */
static bg_job *checkopen(lua_State *L) {
  bg_job *j = checkjob(L);
  if (j->closed) luaL_error(L, "attempt to use a closed job");
  return j;
}

static int checkstream(lua_State *L, int idx) {
  static const char *const opts[] = {"both", "stdout", "stderr", NULL};
  static const int vals[] = {BG_SEL_BOTH, BG_SEL_STDOUT, BG_SEL_STDERR};
  return vals[luaL_checkoption(L, idx, "both", opts)];
}

bg_job *bg_job_new(lua_State *L, int loop_idx) {
  loop_idx = lua_absindex(L, loop_idx);
  bg_job *j = lua_newuserdatauv(L, sizeof *j, 1);
  memset(j, 0, sizeof *j);
  j->pid = -1;
  j->pidfd = j->out_fd = j->err_fd = j->in_fd = -1;
  j->code = -1;
  for (int k = 0; k < W_COUNT; k++) {
    j->w[k].job = j;
    j->w[k].kind = k;
  }
  j->loop = luaL_checkudata(L, loop_idx, BG_LOOP_MT);
  luaL_setmetatable(L, BG_JOB_MT); /* from here __gc sees a sane object */
  lua_pushvalue(L, loop_idx);
  lua_setiuservalue(L, -2, 1);
  return j;
}

void bg_job_pend(bg_job *j, unsigned bits) {
  if (j->pend == 0) {
    j->pend_next = j->loop->pend_head;
    j->loop->pend_head = j;
  }
  j->pend |= bits;
}

static void unpend(bg_job *j) {
  if (j->pend == 0) return;
  for (bg_job **p = &j->loop->pend_head; *p; p = &(*p)->pend_next) {
    if (*p == j) {
      *p = j->pend_next;
      break;
    }
  }
  j->pend = 0;
}

static void unwatch_close(bg_job *j, int *fd) {
  if (*fd < 0) return;
  bg_loop_unwatch(j->loop, *fd);
  bg_close_fd(fd);
}

int bg_job_finished(const bg_job *j) {
  return j->reaped && j->out_fd < 0 && j->err_fd < 0;
}

/* ---- guardian registration -------------------------------------------- */

/* Track the job's group until it is known to be empty: in the loop's list
 * (for orphan reaping and loop:close) and in the guardian's table (a store
 * into shared memory). */
int bg_job_track(bg_job *j) {
  bg_loop *lp = j->loop;
  if (j->tracked) return 0;
  j->gslot = -1;
  if (lp->use_guardian && (j->gslot = bg_guardian_add(&lp->guard, j->pid)) < 0)
    return -1;
  j->tracked = 1;
  j->gprev = NULL;
  j->gnext = lp->groups;
  if (lp->groups) lp->groups->gprev = j;
  lp->groups = j;
  return 0;
}

void bg_job_untrack(bg_job *j) {
  bg_loop *lp = j->loop;
  if (!j->tracked) return;
  j->tracked = 0;
  if (j->gprev) j->gprev->gnext = j->gnext;
  else lp->groups = j->gnext;
  if (j->gnext) j->gnext->gprev = j->gprev;
  j->gprev = j->gnext = NULL;
  bg_guardian_del(&lp->guard, j->gslot);
}

/* With the host a subreaper, members orphaned by the leader's death are
 * our children: collect the exited ones of this group. Each is looked at
 * first (WNOWAIT): a job leader, ours or another loop's, is never taken
 * here, so its exit status stays with its job. */
void bg_job_reap_orphans(bg_job *j) {
  if (!j->reaped || !j->loop->subreaper) return;
  for (int i = 0; i < 1024; i++) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PGID, (id_t)j->pid, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0 ||
        si.si_pid == 0 || bg_loop_owns_pid(si.si_pid))
      break;
    pid_t orphan = si.si_pid;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)orphan, &si, WEXITED | WNOHANG | __WALL) < 0 || si.si_pid == 0)
      break;
  }
}

/* Mark the group released: its id is free, so it is forgotten (also by
 * the guardian) and never signalled again. */
static void release_group(bg_job *j) {
  j->group_empty = 1;
  bg_job_untrack(j);
  bg_job_drop_cgroup(j); /* a no-op while escapees still run in it */
}

/* After the leader is reaped: is anything of the group left? Only ESRCH
 * proves the id is free; zombies (that nobody reaps) still hold it. */
void bg_job_check_group(bg_job *j) {
  if (j->group_empty || !j->reaped) return;
  bg_job_reap_orphans(j); /* our own zombies would keep the group's id */
  if (kill(-j->pid, 0) < 0 && errno == ESRCH) release_group(j);
}

/* A new job got pid P: the kernel hands out P only when no process, group
 * or session uses it, so an old group P of ours is certainly gone. */
void bg_job_forget_group(bg_job *j) {
  if (!j->group_empty && j->reaped) release_group(j);
}

/* ---- output ------------------------------------------------------------ */

static void close_stream(bg_job *j, int kind) {
  unwatch_close(j, kind == W_OUT ? &j->out_fd : &j->err_fd);
  if (j->out_fd < 0 && j->err_fd < 0) {
    bg_job_pend(j, EV_EOF);
    bg_job_check_group(j);
  }
}

/* Read a stream into the ring until it has nothing more, or `budget`
 * bytes. With `until_short`, a pipe read that comes back short ends it: a
 * pipe read returns all the pipe holds, so the next one would only say
 * EAGAIN (a pty may hand out less than it holds). */
static void drain(bg_job *j, int kind, size_t budget, int until_short) {
  int fd = kind == W_OUT ? j->out_fd : j->err_fd;
  int stream = kind == W_OUT ? BG_STDOUT : BG_STDERR;
  size_t total = 0;
  if (fd < 0 || j->closed) return;
  while (total < budget) {
    struct iovec iov[2];
    bg_ring_write_iov(&j->ring, iov);
    ssize_t n = readv(fd, iov, 2);
    if (n > 0) {
      bg_ring_commit(&j->ring, (size_t)n, stream);
      total += (size_t)n;
      if (n >= BG_PIPE_FULL && j->pipe_max > BG_PIPE_FULL &&
          !(j->grown & (1u << stream))) {
        /* A fast writer: a bigger pipe means fewer wakeups. Best effort
         * (the per-user pipe quota may say no). */
        j->grown |= (unsigned char)(1u << stream);
        fcntl(fd, F_SETPIPE_SZ, j->pipe_max);
      }
      if (until_short && (size_t)n < j->ring.cap && j->stdin_kind != BG_STDIN_PTY)
        break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    close_stream(j, kind); /* EOF, or EIO once a pty's slave side is gone */
    break;
  }
  if (total) bg_job_pend(j, EV_OUTPUT);
}

void bg_job_drain(bg_job *j, int kind) {
  drain(j, kind, BG_DRAIN_BUDGET, 1);
}

/* ---- stdin --------------------------------------------------------------- */

void bg_job_drop_stdin(bg_job *j) {
  if (j->in_watched) bg_loop_unwatch(j->loop, j->in_fd);
  j->in_watched = 0;
  bg_close_fd(&j->in_fd);
  free(j->inq);
  j->inq = NULL;
  j->inq_len = j->inq_off = j->inq_cap = 0;
  j->in_close_pending = 0;
}

/* Returns 1 if the write hit EPIPE. */
static int finish_stdin(bg_job *j) {
  int epipe = 0;
  if (j->stdin_kind == BG_STDIN_PTY) {
    /* A pty has no half-close: send the terminal's EOF character. */
    struct termios tio;
    unsigned char eof = 4;
    if (tcgetattr(j->in_fd, &tio) == 0 && tio.c_cc[VEOF]) eof = tio.c_cc[VEOF];
    epipe = write(j->in_fd, &eof, 1) < 0 && errno == EPIPE;
  }
  bg_job_drop_stdin(j);
  return epipe;
}

/* Write what is queued; returns 1 if a write hit EPIPE. */
static int flush_queue(bg_job *j) {
  while (j->in_fd >= 0 && j->inq_off < j->inq_len) {
    ssize_t n = write(j->in_fd, j->inq + j->inq_off, j->inq_len - j->inq_off);
    if (n > 0) {
      j->inq_off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!j->in_watched &&
          bg_loop_watch(j->loop, &j->w[W_IN], j->in_fd, EPOLLOUT) == 0)
        j->in_watched = 1;
      return 0;
    }
    int epipe = n < 0 && errno == EPIPE;
    bg_job_drop_stdin(j); /* nobody reads stdin any more */
    return epipe;
  }
  if (j->in_fd < 0) return 0;
  if (j->in_watched) {
    bg_loop_unwatch(j->loop, j->in_fd);
    j->in_watched = 0;
  }
  j->inq_len = j->inq_off = 0;
  return j->in_close_pending ? finish_stdin(j) : 0;
}

/* A reader-less pipe must give EPIPE, not a SIGPIPE that ends the host:
 * SIGPIPE is blocked around the writes, and one they raised is taken. */
void bg_job_flush_stdin(bg_job *j) {
  if (j->in_fd < 0) return;
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  if (flush_queue(j) && !sigismember(&old, SIGPIPE)) {
    struct timespec zero = {0, 0};
    sigtimedwait(&pipe_set, NULL, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- exit ---------------------------------------------------------------- */

void bg_job_reap(bg_job *j) {
  if (j->reaped || j->pidfd < 0) return;
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(P_PIDFD, (id_t)j->pidfd, &si, WEXITED | WNOHANG | __WALL) < 0) {
    if (errno != ECHILD) return;
    j->code = -1; /* reaped behind our back (a host's waitpid(-1)) */
  } else if (si.si_pid == 0) {
    return; /* not yet */
  } else if (si.si_code == CLD_EXITED) {
    j->code = si.si_status;
  } else {
    j->signal = si.si_status;
    j->core_dumped = si.si_code == CLD_DUMPED;
  }
  j->reaped = 1;
  j->t1_ns = bg_now_ns();
  j->ended_ms = bg_wall_ms();
  unwatch_close(j, &j->pidfd);
  bg_job_drop_stdin(j); /* with a pty, a dup: the master stays for output */
  bg_job_check_group(j);
  bg_job_pend(j, EV_EXIT);
}

/* What the leader wrote before it exited belongs before its exit: drain
 * up to a full pipe (and a little more), to EOF if it is there, then
 * reap. */
void bg_job_collect(bg_job *j) {
  size_t budget = (size_t)j->pipe_max + BG_DRAIN_BUDGET;
  drain(j, W_OUT, budget, 0);
  drain(j, W_ERR, budget, 0);
  bg_job_reap(j);
}

/* ---- signals ------------------------------------------------------------- */

long bg_job_signal(bg_job *j, int sig) {
  if (j->pid <= 0) {
    errno = ESRCH;
    return -1;
  }
  /* A leader that exited (or was reaped behind our back by a host's
   * waitpid(-1)) no longer pins the group id: learn it before trusting
   * kill(-pgid), keeping its output before its exit. */
  if (!j->reaped && j->pidfd >= 0) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int rc = waitid(P_PIDFD, (id_t)j->pidfd, &si, WEXITED | WNOHANG | WNOWAIT | __WALL);
    if ((rc == 0 && si.si_pid != 0) || (rc < 0 && errno == ECHILD))
      bg_job_collect(j);
  }
  if (!j->reaped && j->pidfd >= 0) {
    /* The unreaped leader pins its pid, which is also the group id; as a
     * session leader it cannot leave the group, so this reaches it too. */
    return kill(-j->pid, sig) == 0 ? 1 : -1;
  }
  if (j->group_empty) {
    errno = ESRCH;
    return -1;
  }
  long n = bg_group_signal_verified(&j->pid, 1, sig);
  if (n == 0) {
    bg_job_check_group(j);
    errno = ESRCH;
    return -1;
  }
  return n; /* or -1: /proc could not be read completely (errno) */
}

void bg_job_terminate(bg_job *j) {
  if (j->pid <= 0) return;
  if (!j->reaped && j->pidfd >= 0)
    bg_job_signal(j, SIGKILL); /* may find it exited, and reap it */
  if (!j->reaped && j->pidfd >= 0) {
    /* even one stuck in the kernel: wait rather than leak it */
    struct pollfd p = {j->pidfd, POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
    bg_job_reap(j);
    if (!j->reaped) { /* waitid itself failed: never wait on it again */
      j->reaped = 1;
      unwatch_close(j, &j->pidfd);
    }
  }
  for (int pass = 0; pass < 3 && !j->group_empty; pass++)
    if (bg_job_signal(j, SIGKILL) < 0) break;
  /* Orphans we adopted die asynchronously: give them a moment to become
   * zombies we can collect. */
  if (j->loop->subreaper && !j->group_empty)
    for (int i = 0; i < 50 && !j->group_empty; i++) {
      struct timespec ts = {0, 2000000};
      nanosleep(&ts, NULL);
      bg_job_check_group(j);
    }
  /* What is left (zombies nobody reaps, or members /proc would not show)
   * is released, not merely untracked: once untracked, nothing would stop
   * a later kill from reaching a new session that got the same id. */
  if (!j->group_empty) release_group(j);
}

/* Everything but the memory of the userdata itself. */
void bg_job_release(bg_job *j) {
  if (j->closed) return;
  bg_job_terminate(j);
  bg_job_kill_cgroup(j, 500); /* what left the group: it dies too */
  bg_job_drop_cgroup(j);
  unpend(j);
  bg_job_drop_stdin(j);
  unwatch_close(j, &j->out_fd);
  unwatch_close(j, &j->err_fd);
  unwatch_close(j, &j->pidfd);
  bg_ring_free(&j->ring);
  j->closed = 1;
}


/* Drop the job from its loop's table of watched jobs. */
static void unlive(lua_State *L, bg_job *j) {
  if (!j->live) return;
  j->live = 0;
  j->loop->nlive--;
  if (lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA &&
      lua_getiuservalue(L, -1, 1) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_rawsetp(L, -2, j);
  }
  lua_settop(L, 1);
}

/* ---- methods ------------------------------------------------------------- */

static int job_pid(lua_State *L) {
  bg_job *j = checkjob(L);
  if (j->pid <= 0) return 0;
  lua_pushinteger(L, j->pid);
  return 1;
}

static int job_alive(lua_State *L) {
  bg_job *j = checkjob(L);
  lua_pushboolean(L, j->pid > 0 && !j->reaped);
  return 1;
}

static void push_exit(lua_State *L, const bg_job *j) {
  if (j->signal) {
    lua_pushnil(L);
    lua_pushstring(L, bg_signame(j->signal));
  } else {
    if (j->code >= 0) lua_pushinteger(L, j->code);
    else lua_pushnil(L);
    lua_pushnil(L);
  }
  lua_pushboolean(L, j->core_dumped);
}

/* job:exit() -> code|nil, signal-name|nil, core-dumped; nothing if running */
static int job_exit(lua_State *L) {
  bg_job *j = checkjob(L);
  if (!j->reaped) return 0;
  push_exit(L, j);
  return 3;
}

static void setfield_num(lua_State *L, const char *k, lua_Number v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void setfield_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static int job_info(lua_State *L) {
  static const char *const stdin_names[] = {"null", "pipe", "pty"};
  bg_job *j = checkjob(L);
  lua_createtable(L, 0, 16);
  if (j->pid > 0) {
    setfield_int(L, "pid", j->pid);
    setfield_int(L, "pgid", j->pid);
  }
  lua_pushstring(L, j->closed ? "closed" : j->reaped ? "exited" : "running");
  lua_setfield(L, -2, "state");
  if (j->reaped) {
    push_exit(L, j);
    lua_setfield(L, -4, "core_dumped");
    lua_setfield(L, -3, "signal");
    lua_setfield(L, -2, "code");
    setfield_num(L, "ended", j->ended_ms);
  }
  setfield_num(L, "started", j->started_ms);
  int64_t end = j->reaped ? j->t1_ns : bg_now_ns();
  setfield_num(L, "duration_ms", (double)(end - j->t0_ns) / 1e6);
  lua_pushstring(L, stdin_names[j->stdin_kind]);
  lua_setfield(L, -2, "stdin");
  lua_pushboolean(L, j->in_fd >= 0);
  lua_setfield(L, -2, "stdin_open");
  lua_pushboolean(L, j->out_fd < 0 && j->err_fd < 0);
  lua_setfield(L, -2, "eof");
  lua_pushboolean(L, j->group_empty);
  lua_setfield(L, -2, "group_empty");
  if (!j->closed) {
    setfield_int(L, "ring", (lua_Integer)j->ring.cap);
    setfield_int(L, "head", (lua_Integer)j->ring.head);
    setfield_int(L, "tail", (lua_Integer)bg_ring_tail(&j->ring));
  }
  return 1;
}

static lua_Integer opt_offset(lua_State *L, int idx) {
  lua_Integer v = luaL_optinteger(L, idx, 0);
  luaL_argcheck(L, v >= 0, idx, "offset must be >= 0");
  return v;
}

static size_t opt_size(lua_State *L, int idx, size_t dflt) {
  lua_Integer v = luaL_optinteger(L, idx, (lua_Integer)dflt);
  luaL_argcheck(L, v >= 0, idx, "size must be >= 0");
  return (size_t)v;
}

/* job:read([since [, max [, stream]]]) -> data, next, dropped */
static int job_read(lua_State *L) {
  bg_job *j = checkopen(L);
  uint64_t since = (uint64_t)opt_offset(L, 2);
  size_t max = opt_size(L, 3, j->ring.cap);
  int sel = checkstream(L, 4);
  uint64_t tail = bg_ring_tail(&j->ring);
  uint64_t from = since < tail ? tail : since;
  uint64_t held = from < j->ring.head ? j->ring.head - from : 0;
  if (max > held) max = (size_t)held; /* never a ring-sized buffer for a few bytes */
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, max);
  uint64_t next;
  size_t n = bg_ring_copy(&j->ring, from, sel, out, max, &next);
  luaL_pushresultsize(&b, n);
  lua_pushinteger(L, (lua_Integer)next);
  lua_pushinteger(L, (lua_Integer)(since < tail ? tail - since : 0));
  return 3;
}

/* job:tail([lines [, stream [, max_bytes]]]) -> data, from */
static int job_tail(lua_State *L) {
  bg_job *j = checkopen(L);
  size_t lines = opt_size(L, 2, 10);
  int sel = checkstream(L, 3);
  size_t max = opt_size(L, 4, j->ring.cap);
  if (max > j->ring.cap) max = j->ring.cap;
  uint64_t from = bg_ring_tail_start(&j->ring, lines, sel, max);
  if (max > j->ring.head - from) max = (size_t)(j->ring.head - from);
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, max);
  uint64_t next;
  size_t n = bg_ring_copy(&j->ring, from, sel, out, max, &next);
  luaL_pushresultsize(&b, n);
  lua_pushinteger(L, (lua_Integer)from);
  return 2;
}

struct runs_ctx {
  lua_State *L;
  lua_Integer n;
};

static int push_run(uint64_t from, uint64_t to, int stream, void *ud) {
  struct runs_ctx *c = ud;
  lua_State *L = c->L;
  lua_createtable(L, 3, 0);
  lua_pushinteger(L, (lua_Integer)from);
  lua_rawseti(L, -2, 1);
  lua_pushinteger(L, (lua_Integer)to);
  lua_rawseti(L, -2, 2);
  lua_pushstring(L, stream == BG_STDERR ? "stderr" : "stdout");
  lua_rawseti(L, -2, 3);
  lua_rawseti(L, -2, ++c->n);
  return 0;
}

/* job:runs([from [, to]]) -> { {from, to, "stdout"|"stderr"}, ... } */
static int job_runs(lua_State *L) {
  bg_job *j = checkopen(L);
  uint64_t from = (uint64_t)opt_offset(L, 2);
  lua_Integer to = luaL_optinteger(L, 3, (lua_Integer)j->ring.head);
  luaL_argcheck(L, to >= 0, 3, "offset must be >= 0");
  lua_newtable(L);
  struct runs_ctx c = {L, 0};
  luaL_checkstack(L, 4, NULL);
  bg_ring_runs(&j->ring, from, (uint64_t)to, push_run, &c);
  return 1;
}

/* job:shrink() -> ring size: once all output is in, keep only what is held */
static int job_shrink(lua_State *L) {
  bg_job *j = checkopen(L);
  if (j->out_fd >= 0 || j->err_fd >= 0)
    return bg_fail(L, EBUSY, "job %d still has output open", (int)j->pid);
  if (bg_ring_shrink(&j->ring) != 0) return bg_fail(L, ENOMEM, "shrink ring");
  lua_pushinteger(L, (lua_Integer)j->ring.cap);
  return 1;
}

/* job:offsets() -> tail, head */
static int job_offsets(lua_State *L) {
  bg_job *j = checkopen(L);
  lua_pushinteger(L, (lua_Integer)bg_ring_tail(&j->ring));
  lua_pushinteger(L, (lua_Integer)j->ring.head);
  return 2;
}

/* job:kill([sig]) -> hits | nil, msg, "ESRCH" */
static int job_kill(lua_State *L) {
  bg_job *j = checkopen(L);
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : bg_checksignal(L, 2);
  long hits = bg_job_signal(j, sig);
  if (hits < 0)
    return bg_fail(L, errno, "signal %s to process group %d",
                   sig ? bg_signame(sig) : "0", (int)j->pid);
  lua_pushinteger(L, hits);
  return 1;
}

/* job:escaped() -> { {pid=, command=}, ... } */
static int job_escaped(lua_State *L) {
  checkopen(L);
  return bg_job_escaped(L);
}

/* job:cgroup() -> the job's cgroup directory, or nil */
static int job_cgroup(lua_State *L) {
  bg_job *j = checkjob(L);
  if (!bg_job_has_cgroup(j)) return 0;
  lua_pushfstring(L, "%s/%s", j->loop->cg_path, j->cg_name);
  return 1;
}

/* job:kill_cgroup() -> true: SIGKILL everything in the job's cgroup,
 * escapees included | nil, msg, "EOPNOTSUPP" without one */
static int job_kill_cgroup(lua_State *L) {
  bg_job *j = checkopen(L);
  if (!bg_job_has_cgroup(j))
    return bg_fail(L, ENOTSUP, "job %d has no cgroup", (int)j->pid);
  bg_job_kill_cgroup(j, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* job:signal_escaped([sig]) -> processes hit: the stop signal for the
 * job's processes outside its group (those in its leaf; 0 without one),
 * each checked through a pidfd */
static int job_signal_escaped(lua_State *L) {
  bg_job *j = checkopen(L);
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : bg_checksignal(L, 2);
  long hits = bg_job_signal_escaped(j, sig);
  if (hits < 0)
    return bg_fail(L, errno, "signal the escaped processes of job %d", (int)j->pid);
  lua_pushinteger(L, hits);
  return 1;
}

/* job:members() -> live processes left in the job's group */
static int job_members(lua_State *L) {
  bg_job *j = checkopen(L);
  long n = 0;
  if (j->pid > 0 && !j->group_empty) {
    bg_job_check_group(j);
    if (!j->group_empty && (n = bg_group_count(j->pid)) < 0)
      return bg_fail(L, errno, "read /proc for process group %d", (int)j->pid);
  }
  lua_pushinteger(L, n);
  return 1;
}

static int stdin_unusable(lua_State *L, bg_job *j) {
  if (j->stdin_kind == BG_STDIN_NULL)
    return bg_fail(L, EBADF, "stdin of job %d is /dev/null (spawn it with "
                   "stdin = \"pipe\" or pty = true)", (int)j->pid);
  return bg_fail(L, EPIPE, "stdin of job %d is closed", (int)j->pid);
}

/* job:write(data) -> bytes accepted (queued if the pipe is full) */
static int job_write(lua_State *L) {
  bg_job *j = checkopen(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (j->in_fd < 0 || j->in_close_pending) return stdin_unusable(L, j);
  size_t pending = j->inq_len - j->inq_off;
  if (pending + len > BG_MAX_STDIN_QUEUE)
    return bg_fail(L, ENOBUFS, "stdin queue of job %d is full (%d bytes "
                   "unread)", (int)j->pid, (int)pending);
  if (j->inq_off > 0 && pending > 0) {
    memmove(j->inq, j->inq + j->inq_off, pending);
  }
  j->inq_len = pending;
  j->inq_off = 0;
  if (j->inq_len + len > j->inq_cap) {
    size_t cap = j->inq_cap ? j->inq_cap : 4096;
    while (cap < j->inq_len + len) cap *= 2;
    unsigned char *q = realloc(j->inq, cap);
    if (q == NULL) return bg_fail(L, ENOMEM, "queue stdin");
    j->inq = q;
    j->inq_cap = cap;
  }
  memcpy(j->inq + j->inq_len, data, len);
  j->inq_len += len;
  bg_job_flush_stdin(j);
  if (j->in_fd < 0) return bg_fail(L, EPIPE, "write to stdin of job %d",
                                   (int)j->pid);
  lua_pushinteger(L, (lua_Integer)len);
  return 1;
}

/* job:close_stdin() -> true; pending bytes are written first */
static int job_close_stdin(lua_State *L) {
  bg_job *j = checkopen(L);
  if (j->in_fd < 0 || j->in_close_pending) return stdin_unusable(L, j);
  j->in_close_pending = 1;
  bg_job_flush_stdin(j);
  lua_pushboolean(L, 1);
  return 1;
}

/* job:resize(rows, cols) for pty jobs */
static int job_resize(lua_State *L) {
  bg_job *j = checkopen(L);
  lua_Integer rows = luaL_checkinteger(L, 2), cols = luaL_checkinteger(L, 3);
  luaL_argcheck(L, rows > 0 && rows < 65536, 2, "rows must be 1-65535");
  luaL_argcheck(L, cols > 0 && cols < 65536, 3, "cols must be 1-65535");
  int fd = j->out_fd >= 0 ? j->out_fd : j->in_fd;
  if (j->stdin_kind != BG_STDIN_PTY)
    return bg_fail(L, ENOTTY, "job %d has no pty", (int)j->pid);
  if (fd < 0) return bg_fail(L, EBADF, "pty of job %d is closed", (int)j->pid);
  struct winsize ws = {.ws_row = (unsigned short)rows,
                       .ws_col = (unsigned short)cols};
  if (ioctl(fd, TIOCSWINSZ, &ws) < 0)
    return bg_fail(L, errno, "resize pty of job %d", (int)j->pid);
  lua_pushboolean(L, 1);
  return 1;
}

/* job:close(): SIGKILL whatever is left of the group, reap, free. */
static int job_close(lua_State *L) {
  bg_job *j = checkjob(L);
  lua_settop(L, 1);
  unlive(L, j);
  bg_job_release(j);
  return 0;
}

static int job_gc(lua_State *L) {
  bg_job *j = checkjob(L);
  bg_job_release(j);
  return 0;
}

static int job_tostring(lua_State *L) {
  bg_job *j = checkjob(L);
  if (j->pid <= 0) lua_pushstring(L, "bgproc.core.Job (not started)");
  else
    lua_pushfstring(L, "bgproc.core.Job: pid %d (%s)", (int)j->pid,
                    j->closed ? "closed" : j->reaped ? "exited" : "running");
  return 1;
}

static const luaL_Reg job_methods[] = {
    {"pid", job_pid},         {"alive", job_alive},
    {"exit", job_exit},       {"info", job_info},
    {"read", job_read},       {"tail", job_tail},
    {"runs", job_runs},       {"offsets", job_offsets},
    {"kill", job_kill},       {"members", job_members},
    {"write", job_write},     {"close_stdin", job_close_stdin},
    {"resize", job_resize},   {"close", job_close},
    {"shrink", job_shrink},   {"escaped", job_escaped},
    {"cgroup", job_cgroup},   {"kill_cgroup", job_kill_cgroup},
    {"signal_escaped", job_signal_escaped},
    {NULL, NULL},
};

static const luaL_Reg job_meta[] = {
    {"__gc", job_gc},
    {"__close", job_close},
    {"__tostring", job_tostring},
    {"__index", NULL},
    {NULL, NULL},
};

void bg_job_open(lua_State *L) {
  luaL_newmetatable(L, BG_JOB_MT);
  luaL_setfuncs(L, job_meta, 0);
  luaL_newlibtable(L, job_methods);
  luaL_setfuncs(L, job_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
