/*
 * loop.h: the loop. One epoll set, and what a process that runs jobs holds
 * once per loop: the guardian, the cgroup directory, the spawn stack and an
 * open /dev/null. Pure C, no Lua.
 *
 * The loop knows nothing of jobs. A job watches its fds through the loop
 * (bg_loop_watch: a callback per fd, called by bg_loop_poll) and queues
 * its news on it (bg_loop_note), which the host takes after each poll.
 *
 * The memory of a loop is its host's (bg_loop_size() bytes: a Lua
 * userdata), so that it outlives the jobs that point at it; every loop
 * function is safe on a closed one.
 */
#ifndef BGPROC_LOOP_H
#define BGPROC_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "spawn.h"

typedef struct bg_loop bg_loop;

/* An fd in the epoll set: bg_loop_poll calls ready(w) once it is ready. */
typedef struct bg_watch bg_watch;
struct bg_watch {
  void (*ready)(bg_watch *w);
  void *owner; /* for ready: whose fd it is */
};

/* News for the host: bits queued on the loop until the host takes them. */
typedef struct bg_note bg_note;
struct bg_note {
  bg_note *next;
  unsigned bits; /* 0: not queued */
  void *owner;   /* for the host: whose news it is */
};

typedef struct bg_loop_config {
  int guardian;   /* start the guardian before the first spawn */
  int subreaper;  /* make the process a child subreaper while the loop is open */
  int cgroup;     /* per-job cgroup leaves where the machine allows */
  size_t ring;    /* a job's ring, unless its spawn says otherwise */
  int pipe_size;  /* what a busy stdout/stderr pipe grows to (0: never) */
} bg_loop_config;

/* ---- life ---------------------------------------------------------------- */

size_t bg_loop_size(void);

/* A closed loop: what bg_loop_open opens, and safe to close. */
void bg_loop_init(bg_loop *lp);

/* Open an initialised loop: 0, or an errno value and *step names what
 * failed (the loop stays closed, nothing left open). */
int bg_loop_open(bg_loop *lp, const bg_loop_config *cfg, const char **step);

/* The guardian stands down, the cgroup directory is emptied and removed,
 * the news dropped, the fds closed. The jobs are the host's to end first. */
void bg_loop_close(bg_loop *lp);

int bg_loop_closed(const bg_loop *lp);
const bg_loop_config *bg_loop_config_of(const bg_loop *lp);

/* ---- the epoll set ------------------------------------------------------- */

/* The fd to poll for readability (the epoll set itself). */
int bg_loop_fd(const bg_loop *lp);

/* Add fd: 0 or an errno value. */
int bg_loop_watch(bg_loop *lp, bg_watch *w, int fd, uint32_t events);
void bg_loop_unwatch(bg_loop *lp, int fd);

/* Wait up to timeout_ms (-1: forever) and call the ready watches: 0, EINTR
 * (nothing was called), or epoll_wait's errno. */
int bg_loop_poll(bg_loop *lp, int timeout_ms);

/* ---- news ---------------------------------------------------------------- */

/* Queue n (once) with these bits added. */
void bg_loop_note(bg_loop *lp, bg_note *n, unsigned bits);

/* Take n off the queue, its bits dropped. */
void bg_loop_unnote(bg_loop *lp, bg_note *n);

/* The next note (the latest queued first), off the queue, its bits in
 * *bits; NULL when there is none. */
bg_note *bg_loop_take_note(bg_loop *lp, unsigned *bits);

/* Jobs the host still expects news from, counted for it. */
void bg_loop_count_add(bg_loop *lp, long delta);
long bg_loop_count(const bg_loop *lp);

/* ---- what jobs use --------------------------------------------------------- */

/* Before a spawn: the cgroup directory (made at the first spawn) and the
 * guardian (started again if it died). 0, or the guardian's errno. */
int bg_loop_prepare(bg_loop *lp);

/* bg_spawn with the loop's stack and /dev/null. */
int bg_loop_spawn(bg_loop *lp, bg_spawn_req *req, bg_spawn_res *res,
                  bg_stage *stage);

/* A fresh leaf for a job, its name in name: its cgroup.procs (for the
 * child to join), or -1: the job runs without one. */
int bg_loop_new_leaf(bg_loop *lp, char *name, size_t cap);

/* A child could not join its leaf (err): no leaf for later jobs, and
 * loop:cgroup() says why. */
void bg_loop_refuse_cgroup(bg_loop *lp, int err);

/* The cgroup directory (an fd, -1 when none) and its path. */
int bg_loop_cgroup_fd(const bg_loop *lp);
const char *bg_loop_cgroup_path(const bg_loop *lp);

/* The directory new jobs get leaves in (made now if it was not yet), or
 * NULL and *why. */
const char *bg_loop_cgroup(bg_loop *lp, const char **why);

/* A group for the guardian to end if the host dies: 0 and *slot (-1
 * without a guardian), or -1 with errno. */
int bg_loop_guard(bg_loop *lp, pid_t pgid, long *slot);
void bg_loop_unguard(bg_loop *lp, long slot);

/* The guardian's pid, or -1. */
pid_t bg_loop_guardian_pid(const bg_loop *lp);

/* pid is the guardian of an open loop of this process. */
int bg_loop_is_guardian(pid_t pid);

/* The loop made the process a subreaper: orphans of its jobs are ours. */
int bg_loop_subreaper(const bg_loop *lp);

#endif
