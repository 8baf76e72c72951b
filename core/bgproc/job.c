/*
 * job.c: a job (see job.h): one process group, its pipes, its ring, its
 * exit status, and the groups of every loop that may still have members.
 */
#define _GNU_SOURCE
#include "job.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "clock.h"
#include "fds.h"
#include "group.h"

#define MAX_STDIN_QUEUE (16 * 1024 * 1024)
#define PIPE_FULL 65536 /* a read this big means the writer outruns us */
/* Bytes drained from one pipe per wakeup before others get a turn. */
#define DRAIN_BUDGET (4u * 1024 * 1024)

struct bg_job {
  bg_loop *loop; /* outlives the job (the host sees to it) */
  pid_t pid;     /* also the process group and session id */
  int pidfd, out_fd, err_fd, in_fd;
  bg_stdin_kind stdin_kind;
  int reaped, code, signal, core_dumped;
  int pipe_max;        /* grow busy stdout/stderr pipes to this; 0: never */
  unsigned char grown; /* bit per stream: pipe already grown */
  int tracked;   /* in the list of groups (and the guardian's table at
                    gslot, or -1) until the group is empty */
  long gslot;
  int group_empty;
  int closed;    /* released: ring freed */
  int dropped;   /* output dropped: ring freed, the rest as it was */
  int counted;   /* counted by its loop (watched, news not all taken) */
  double started_ms, ended_ms;  /* wall clock, ms since the epoch */
  int64_t t0_ns, t1_ns;         /* monotonic */
  bg_ring ring;
  /* queued stdin bytes not yet accepted by the pipe */
  unsigned char *inq;
  size_t inq_len, inq_off, inq_cap;
  int in_close_pending, in_watched;
  bg_note note;
  bg_job *gprev, *gnext; /* the list of groups */
  bg_watch w_exit, w_out, w_err, w_in;
  char cg_name[32]; /* its leaf under the loop's cgroup dir; "" for none */
};

/* Every job, of every loop, whose group may still have members (a Lua
 * state is single-threaded; several states in several threads would each
 * need their own core). */
static bg_job *groups;

size_t bg_job_size(void) { return sizeof(bg_job); }

static void pend(bg_job *j, unsigned bits) {
  bg_loop_note(j->loop, &j->note, bits);
}

static void unwatch_close(bg_job *j, int *fd) {
  if (*fd < 0) return;
  bg_loop_unwatch(j->loop, *fd);
  bg_close_fd(fd);
}

pid_t bg_job_pid(const bg_job *j) { return j->pid; }

int bg_job_exited(const bg_job *j) { return j->reaped; }

int bg_job_closed(const bg_job *j) { return j->closed; }

int bg_job_output_dropped(const bg_job *j) { return j->dropped; }

int bg_job_finished(const bg_job *j) {
  return j->reaped && j->out_fd < 0 && j->err_fd < 0;
}

const bg_ring *bg_job_ring(const bg_job *j) {
  return j->closed || j->dropped ? NULL : &j->ring;
}

void bg_job_status_get(const bg_job *j, bg_job_status *st) {
  memset(st, 0, sizeof *st);
  st->pid = j->pid;
  st->exited = j->reaped;
  st->closed = j->closed;
  st->code = j->code;
  st->signal = j->signal;
  st->core_dumped = j->core_dumped;
  st->started_ms = j->started_ms;
  st->ended_ms = j->ended_ms;
  int64_t end = j->reaped ? j->t1_ns : bg_now_ns();
  st->duration_ms = (double)(end - j->t0_ns) / 1e6;
  st->stdin_kind = j->stdin_kind;
  st->stdin_open = j->in_fd >= 0;
  st->eof = j->out_fd < 0 && j->err_fd < 0;
  st->group_empty = j->group_empty;
}

/* ---- the groups ---------------------------------------------------------- */

/* Track the job's group until it is known to be empty: in the list of
 * groups (for orphan reaping and loop:close) and in the guardian's table
 * (a store into shared memory). */
static int track(bg_job *j) {
  if (j->tracked) return 0;
  if (bg_loop_guard(j->loop, j->pid, &j->gslot) < 0) return -1;
  j->tracked = 1;
  j->gprev = NULL;
  j->gnext = groups;
  if (groups) groups->gprev = j;
  groups = j;
  return 0;
}

static void untrack(bg_job *j) {
  if (!j->tracked) return;
  j->tracked = 0;
  if (j->gprev) j->gprev->gnext = j->gnext;
  else groups = j->gnext;
  if (j->gnext) j->gnext->gprev = j->gprev;
  j->gprev = j->gnext = NULL;
  bg_loop_unguard(j->loop, j->gslot);
}

/* A live job leader or the guardian of any loop: theirs to collect. */
static int owned(pid_t pid) {
  if (bg_loop_is_guardian(pid)) return 1;
  for (bg_job *j = groups; j; j = j->gnext)
    if (j->pid == pid && !j->reaped) return 1;
  return 0;
}

/* With the host a subreaper, members orphaned by the leader's death are
 * our children: collect the exited ones of this group. Each is looked at
 * first (WNOWAIT): a job leader, ours or another loop's, is never taken
 * here, so its exit status stays with its job. */
static void reap_orphans(bg_job *j) {
  if (!j->reaped || !bg_loop_subreaper(j->loop)) return;
  for (int i = 0; i < 1024; i++) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PGID, (id_t)j->pid, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0 ||
        si.si_pid == 0 || owned(si.si_pid))
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
  untrack(j);
  bg_job_drop_cgroup(j); /* a no-op while escapees still run in it */
}

/* After the leader is reaped: is anything of the group left? Only ESRCH
 * proves the id is free; zombies (that nobody reaps) still hold it. */
static void check_group(bg_job *j) {
  if (j->group_empty || !j->reaped) return;
  reap_orphans(j); /* our own zombies would keep the group's id */
  if (kill(-j->pid, 0) < 0 && errno == ESRCH) release_group(j);
}

/* A new job got pid P: the kernel hands out P only when no process, group
 * or session uses it, so an old group P of ours is certainly gone. */
static void forget_group(pid_t pid) {
  for (bg_job *old = groups, *next; old; old = next) {
    next = old->gnext; /* releasing untracks it */
    if (old->pid == pid && !old->group_empty && old->reaped) release_group(old);
  }
}

/* Groups whose leader is gone live on only through their members: see
 * at once when the last one leaves (one kill(-P, 0) each), before the id
 * could be handed to someone else. */
void bg_jobs_check_groups(bg_loop *lp) {
  for (bg_job *j = groups, *next; j; j = next) {
    next = j->gnext; /* checking may untrack j */
    if (j->loop == lp && j->reaped) check_group(j);
  }
}

/* ---- output -------------------------------------------------------------- */

static void close_stream(bg_job *j, int *fd) {
  unwatch_close(j, fd);
  if (j->out_fd < 0 && j->err_fd < 0) {
    pend(j, BG_EV_EOF);
    check_group(j);
  }
}

/* Read a stream into the ring until it has nothing more, or `budget`
 * bytes. With `until_short`, a pipe read that comes back short ends it: a
 * pipe read returns all the pipe holds, so the next one would only say
 * EAGAIN (a pty may hand out less than it holds). */
static void drain(bg_job *j, int stream, size_t budget, int until_short) {
  int *fd = stream == BG_STDOUT ? &j->out_fd : &j->err_fd;
  size_t total = 0;
  if (*fd < 0 || j->closed || j->dropped) return; /* no ring */
  while (total < budget) {
    struct iovec iov[2];
    bg_ring_write_iov(&j->ring, iov);
    ssize_t n = readv(*fd, iov, 2);
    if (n > 0) {
      bg_ring_commit(&j->ring, (size_t)n, stream);
      total += (size_t)n;
      if (n >= PIPE_FULL && j->pipe_max > PIPE_FULL &&
          !(j->grown & (1u << stream))) {
        /* A fast writer: a bigger pipe means fewer wakeups. Best effort
         * (the per-user pipe quota may say no). */
        j->grown |= (unsigned char)(1u << stream);
        fcntl(*fd, F_SETPIPE_SZ, j->pipe_max);
      }
      if (until_short && (size_t)n < bg_ring_cap(&j->ring) &&
          j->stdin_kind != BG_STDIN_PTY)
        break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    close_stream(j, fd); /* EOF, or EIO once a pty's slave side is gone */
    break;
  }
  if (total) pend(j, BG_EV_OUTPUT);
}

static void stdout_ready(bg_watch *w) {
  drain(w->owner, BG_STDOUT, DRAIN_BUDGET, 1);
}

static void stderr_ready(bg_watch *w) {
  drain(w->owner, BG_STDERR, DRAIN_BUDGET, 1);
}

/* ---- stdin --------------------------------------------------------------- */

static void drop_stdin(bg_job *j) {
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
  drop_stdin(j);
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
          bg_loop_watch(j->loop, &j->w_in, j->in_fd, EPOLLOUT) == 0)
        j->in_watched = 1;
      return 0;
    }
    int epipe = n < 0 && errno == EPIPE;
    drop_stdin(j); /* nobody reads stdin any more */
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
static void flush_stdin(bg_job *j) {
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

static void stdin_ready(bg_watch *w) { flush_stdin(w->owner); }

int bg_job_stdin_check(const bg_job *j) {
  if (j->in_fd >= 0 && !j->in_close_pending) return 0;
  return j->stdin_kind == BG_STDIN_NULL ? EBADF : EPIPE;
}

size_t bg_job_stdin_queued(const bg_job *j) { return j->inq_len - j->inq_off; }

int bg_job_write(bg_job *j, const void *data, size_t len) {
  size_t pending = j->inq_len - j->inq_off;
  if (pending + len > MAX_STDIN_QUEUE) return ENOBUFS;
  if (j->inq_off > 0 && pending > 0) memmove(j->inq, j->inq + j->inq_off, pending);
  j->inq_len = pending;
  j->inq_off = 0;
  if (j->inq_len + len > j->inq_cap) {
    size_t cap = j->inq_cap ? j->inq_cap : 4096;
    while (cap < j->inq_len + len) cap *= 2;
    unsigned char *q = realloc(j->inq, cap);
    if (q == NULL) return ENOMEM;
    j->inq = q;
    j->inq_cap = cap;
  }
  memcpy(j->inq + j->inq_len, data, len);
  j->inq_len += len;
  flush_stdin(j);
  return j->in_fd < 0 ? EPIPE : 0;
}

void bg_job_close_stdin(bg_job *j) {
  j->in_close_pending = 1;
  flush_stdin(j);
}

int bg_job_resize(bg_job *j, unsigned short rows, unsigned short cols) {
  int fd = j->out_fd >= 0 ? j->out_fd : j->in_fd;
  if (fd < 0) {
    errno = EBADF;
    return -1;
  }
  struct winsize ws = {.ws_row = rows, .ws_col = cols};
  return ioctl(fd, TIOCSWINSZ, &ws) < 0 ? -1 : 0;
}

/* ---- exit ---------------------------------------------------------------- */

static void reap(bg_job *j) {
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
  drop_stdin(j); /* with a pty, a dup: the master stays for output */
  check_group(j);
  pend(j, BG_EV_EXIT);
}

/* What the leader wrote before it exited belongs before its exit: drain
 * up to a full pipe (and a little more), to EOF if it is there, then
 * reap. */
static void collect(bg_job *j) {
  size_t budget = (size_t)j->pipe_max + DRAIN_BUDGET;
  drain(j, BG_STDOUT, budget, 0);
  drain(j, BG_STDERR, budget, 0);
  reap(j);
}

static void exit_ready(bg_watch *w) { collect(w->owner); }

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
      collect(j);
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
    check_group(j);
    errno = ESRCH;
    return -1;
  }
  return n; /* or -1: /proc could not be read completely (errno) */
}

long bg_job_members(bg_job *j) {
  if (j->pid <= 0 || j->group_empty) return 0;
  check_group(j);
  return j->group_empty ? 0 : bg_group_count(j->pid);
}

/* SIGKILL the group, reap, close fds. */
static void terminate(bg_job *j) {
  if (j->pid <= 0) return;
  if (!j->reaped && j->pidfd >= 0)
    bg_job_signal(j, SIGKILL); /* may find it exited, and reap it */
  if (!j->reaped && j->pidfd >= 0) {
    /* even one stuck in the kernel: wait rather than leak it */
    struct pollfd p = {j->pidfd, POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
    reap(j);
    if (!j->reaped) { /* waitid itself failed: never wait on it again */
      j->reaped = 1;
      unwatch_close(j, &j->pidfd);
    }
  }
  for (int pass = 0; pass < 3 && !j->group_empty; pass++)
    if (bg_job_signal(j, SIGKILL) < 0) break;
  /* Orphans we adopted die asynchronously: give them a moment to become
   * zombies we can collect. */
  if (bg_loop_subreaper(j->loop) && !j->group_empty)
    for (int i = 0; i < 50 && !j->group_empty; i++) {
      struct timespec ts = {0, 2000000};
      nanosleep(&ts, NULL);
      check_group(j);
    }
  /* What is left (zombies nobody reaps, or members /proc would not show)
   * is released, not merely untracked: once untracked, nothing would stop
   * a later kill from reaching a new session that got the same id. */
  if (!j->group_empty) release_group(j);
}

void bg_jobs_terminate(bg_loop *lp) {
  for (bg_job *j = groups; j;) {
    if (j->loop == lp) {
      terminate(j); /* untracks it */
      j = groups;
    } else {
      j = j->gnext;
    }
  }
}

long bg_jobs_reap_strays(bg_loop *lp) {
  long n = 0;
  for (int i = 0; i < 4096; i++) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0 ||
        si.si_pid == 0)
      break;
    bg_job *j = groups;
    while (j && !(j->loop == lp && j->pid == si.si_pid && !j->reaped)) j = j->gnext;
    if (j) {
      collect(j);
      if (!j->reaped) break; /* cannot happen; never spin */
    } else if (owned(si.si_pid)) {
      break; /* a guardian or another loop's leader: theirs to collect */
    } else {
      pid_t stray = si.si_pid;
      memset(&si, 0, sizeof si);
      if (waitid(P_PID, (id_t)stray, &si, WEXITED | WNOHANG | __WALL) < 0 || si.si_pid == 0)
        break; /* never spin on a child we cannot take */
      n++;
    }
  }
  return n;
}

/* ---- the cgroup leaf ----------------------------------------------------- */

const char *bg_job_leaf(const bg_job *j, int *dirfd) {
  *dirfd = bg_loop_cgroup_fd(j->loop);
  return j->cg_name[0] != '\0' && *dirfd >= 0 ? j->cg_name : NULL;
}

int bg_job_cgroup_path(const bg_job *j, char *buf, size_t cap) {
  int dirfd;
  if (bg_job_leaf(j, &dirfd) == NULL) return 0;
  snprintf(buf, cap, "%s/%s", bg_loop_cgroup_path(j->loop), j->cg_name);
  return 1;
}

void bg_job_kill_cgroup(bg_job *j, long wait_ms) {
  int fd;
  const char *leaf = bg_job_leaf(j, &fd);
  if (leaf == NULL || bg_cgroup_populated(fd, leaf) <= 0) return;
  bg_cgroup_kill(fd, leaf);
  if (wait_ms > 0) bg_cgroup_wait_empty(fd, leaf, wait_ms);
}

void bg_job_drop_cgroup(bg_job *j) {
  if (j->cg_name[0] == '\0') return;
  int fd = bg_loop_cgroup_fd(j->loop);
  if (fd < 0 || unlinkat(fd, j->cg_name, AT_REMOVEDIR) == 0 || errno == ENOENT)
    j->cg_name[0] = '\0'; /* EBUSY: something still runs there */
}

/* ---- life ---------------------------------------------------------------- */

void bg_job_init(bg_job *j, bg_loop *lp) {
  memset(j, 0, sizeof *j);
  j->loop = lp;
  j->pid = -1;
  j->pidfd = j->out_fd = j->err_fd = j->in_fd = -1;
  j->code = -1;
  j->note.owner = j;
  j->w_exit = (bg_watch){exit_ready, j};
  j->w_out = (bg_watch){stdout_ready, j};
  j->w_err = (bg_watch){stderr_ready, j};
  j->w_in = (bg_watch){stdin_ready, j};
}

int bg_job_alloc(bg_job *j, size_t ring, int pipe_max, bg_stdin_kind kind) {
  if (bg_ring_init(&j->ring, ring) != 0) return ENOMEM;
  j->pipe_max = pipe_max;
  j->stdin_kind = kind;
  return 0;
}

int bg_job_spawn(bg_job *j, bg_spawn_req *req, bg_stage *stage) {
  j->t0_ns = bg_now_ns();
  j->started_ms = bg_wall_ms();
  bg_spawn_res res;
  req->cgroup_fd = bg_loop_new_leaf(j->loop, j->cg_name, sizeof j->cg_name);
  if (req->cgroup_fd < 0) j->cg_name[0] = '\0';
  int err = bg_loop_spawn(j->loop, req, &res, stage);
  bg_close_fd(&req->cgroup_fd);
  if (err && *stage == BG_STAGE_CGROUP) {
    /* Not allowed to move processes here after all: run it (and the
     * loop's next jobs) without a cgroup. Jobs already in one keep it. */
    bg_loop_refuse_cgroup(j->loop, err);
    bg_job_drop_cgroup(j);
    err = bg_loop_spawn(j->loop, req, &res, stage);
  }
  if (err) {
    bg_job_drop_cgroup(j);
    bg_ring_free(&j->ring);
    j->closed = 1;
    return err;
  }
  forget_group(res.pid); /* pid P was free: any group P we track has emptied */
  j->pid = res.pid;
  j->pidfd = res.pidfd;
  j->out_fd = res.out_fd;
  j->err_fd = res.err_fd;
  j->in_fd = res.in_fd;
  return 0;
}

int bg_job_watch(bg_job *j) {
  int err = 0;
  if (track(j) < 0) err = errno;
  if (!err) err = bg_loop_watch(j->loop, &j->w_exit, j->pidfd, EPOLLIN);
  if (!err) err = bg_loop_watch(j->loop, &j->w_out, j->out_fd, EPOLLIN);
  if (!err && j->err_fd >= 0)
    err = bg_loop_watch(j->loop, &j->w_err, j->err_fd, EPOLLIN);
  if (err) {
    bg_job_release(j);
    return err;
  }
  j->counted = 1;
  bg_loop_count_add(j->loop, 1);
  return 0;
}

void bg_job_retire(bg_job *j) {
  if (!j->counted) return;
  j->counted = 0;
  bg_loop_count_add(j->loop, -1);
}

void bg_job_stop(bg_job *j) {
  terminate(j);
  collect(j);
  drop_stdin(j);
  bg_job_retire(j);
}

int bg_job_shrink(bg_job *j) {
  if (j->out_fd >= 0 || j->err_fd >= 0) return EBUSY;
  return j->closed || j->dropped ? 0 : bg_ring_shrink(&j->ring);
}

/* No read can follow: drain reads only while a pipe is open, and both are
 * closed for good here. */
int bg_job_drop_output(bg_job *j) {
  if (j->out_fd >= 0 || j->err_fd >= 0) return EBUSY;
  bg_ring_free(&j->ring);
  j->dropped = 1;
  return 0;
}

void bg_job_release(bg_job *j) {
  if (j->closed) return;
  bg_job_retire(j);
  terminate(j);
  bg_job_kill_cgroup(j, 500); /* what left the group: it dies too */
  bg_job_drop_cgroup(j);
  bg_loop_unnote(j->loop, &j->note);
  drop_stdin(j);
  unwatch_close(j, &j->out_fd);
  unwatch_close(j, &j->err_fd);
  unwatch_close(j, &j->pidfd);
  bg_ring_free(&j->ring);
  j->closed = 1;
}
