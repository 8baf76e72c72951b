/*
 * guardian.h: a small process that outlives the host if the host dies.
 *
 * The host keeps the process group id of every job in a table in shared
 * memory (a memfd) and holds the write end of a pipe whose read end the
 * guardian blocks on. Registering a job is a store into the table: no
 * syscall, no wakeup. When the pipe reaches EOF, which happens when the
 * host exits or is killed, even by SIGKILL, the guardian maps the table,
 * sends SIGTERM to every group in it, waits a short grace period, sends
 * SIGKILL to what is left, kills the loop's cgroup directory (escapees
 * included) and removes it, and exits. Members are found in /proc and
 * signalled through pidfds, so a recycled pid is never hit.
 */
#ifndef BGPROC_GUARDIAN_H
#define BGPROC_GUARDIAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Grace between SIGTERM and SIGKILL when the host has died. */
#define BG_GUARDIAN_GRACE_MS 400

typedef struct bg_guardian {
  pid_t pid;       /* -1 when not running */
  int pidfd;       /* readable when the guardian exits */
  int pipe_w;      /* our end; its EOF wakes the guardian */
  int memfd;       /* the table, shared with every guardian we start */
  int32_t *slots;  /* mapped table: a process group id, or 0 when free */
  size_t cap;      /* slots in the table */
  size_t used;     /* slots ever handed out (high-water mark) */
  uint32_t *free;  /* freed slot indexes */
  size_t nfree, capfree;
  const char *cgroup_dir; /* the loop's cgroup directory, or NULL */
} bg_guardian;

void bg_guardian_init(bg_guardian *g);
/* Start the guardian (creating the table on first use): 0 or errno. */
int bg_guardian_start(bg_guardian *g);
/* Record a group; returns its slot, or -1 with errno (table full and
 * cannot grow). */
long bg_guardian_add(bg_guardian *g, pid_t pgid);
/* Forget a group whose processes are all gone. */
void bg_guardian_del(bg_guardian *g, long slot);
/* Reap a guardian whose pidfd became readable; 1 if it had exited. */
int bg_guardian_reap(bg_guardian *g);
/* Tell the guardian to stand down, reap it and free the table. */
void bg_guardian_stop(bg_guardian *g);

/* The running guardian's pid (-1: none) and pidfd (readable once it has
 * exited; -1: none). */
static inline pid_t bg_guardian_pid(const bg_guardian *g) { return g->pid; }
static inline int bg_guardian_pidfd(const bg_guardian *g) { return g->pidfd; }

/* The directory that guardians started from now on kill and remove when
 * the host dies (NULL: none). It must outlive them. */
static inline void bg_guardian_set_cgroup(bg_guardian *g, const char *dir) {
  g->cgroup_dir = dir;
}

#endif
