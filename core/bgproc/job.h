/*
 * job.h: a job: one spawned process group, its pipes, its output ring, its
 * exit status. Pure C, no Lua.
 *
 * A job runs on a loop (loop.h): its fds are watched there, and what
 * happens to it is queued there as news (a bg_note whose owner is the job,
 * bits BG_EV_*). The memory of a job is its host's (bg_job_size() bytes: a
 * Lua userdata); every function is safe on a job that never started.
 */
#ifndef BGPROC_JOB_H
#define BGPROC_JOB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "loop.h"
#include "ring.h"
#include "spawn.h"

typedef struct bg_job bg_job;

/* The news a job queues on its loop, coalesced until the host takes it. */
enum { BG_EV_OUTPUT = 1, BG_EV_EXIT = 2, BG_EV_EOF = 4 };

/* ---- life ---------------------------------------------------------------- */

size_t bg_job_size(void);

/* A job of loop lp that has not started. */
void bg_job_init(bg_job *j, bg_loop *lp);

/* Its ring (ENOMEM: none, and the job must not be spawned). */
int bg_job_alloc(bg_job *j, size_t ring, int pipe_max, bg_stdin_kind kind);

/* Spawn it (in a fresh cgroup leaf where the loop has them): 0, or an
 * errno value and *stage; then the job is closed, nothing left behind. */
int bg_job_spawn(bg_job *j, bg_spawn_req *req, bg_stage *stage);

/* Register the spawned job with the loop and the guardian: 0, or an errno
 * value and the job is released. From here the loop counts it until
 * bg_job_retire. */
int bg_job_watch(bg_job *j);

/* The host took the last news of a finished job: the loop stops counting
 * it. */
void bg_job_retire(bg_job *j);

/* Its loop closes: SIGKILL the group, collect the output left, close
 * stdin. The ring stays readable. */
void bg_job_stop(bg_job *j);

/* SIGKILL what is left (the leaf too), reap, close, free all but the
 * job's own memory. Twice is fine. */
void bg_job_release(bg_job *j);

/* ---- state --------------------------------------------------------------- */

typedef struct bg_job_status {
  pid_t pid;          /* > 0 once spawned: also its group and session id */
  int exited;         /* the leader was reaped */
  int closed;         /* released: no ring any more */
  int code;           /* exit code, or -1 (a signal, or not known) */
  int signal;         /* the signal that ended it, or 0 */
  int core_dumped;
  double started_ms, ended_ms; /* wall clock, ms since the epoch */
  double duration_ms;          /* until the exit, or until now */
  bg_stdin_kind stdin_kind;
  int stdin_open;     /* its stdin (pipe or pty) is still open */
  int eof;            /* stdout and stderr are both closed */
  int group_empty;    /* nothing is left of its group */
} bg_job_status;

void bg_job_status_get(const bg_job *j, bg_job_status *st);

pid_t bg_job_pid(const bg_job *j); /* <= 0 before the spawn */
int bg_job_exited(const bg_job *j);
int bg_job_closed(const bg_job *j);

/* Exited, and all its output is in. */
int bg_job_finished(const bg_job *j);

/* Its ring, or NULL once closed or its output dropped. */
const bg_ring *bg_job_ring(const bg_job *j);

/* Once all output is in: keep only what the ring holds. 0 (also once the
 * output was dropped), EBUSY (output still open) or ENOMEM. */
int bg_job_shrink(bg_job *j);

/* Once all output is in: free the ring (the host keeps the output
 * elsewhere); the job is otherwise unchanged. 0 (twice is fine), or EBUSY
 * (output still open). */
int bg_job_drop_output(bg_job *j);

/* Its output was dropped (bg_job_drop_output). */
int bg_job_output_dropped(const bg_job *j);

/* ---- signals ------------------------------------------------------------- */

/* Signal its group: processes (or the group) hit, or -1 with errno
 * (ESRCH: nothing is left). Never a recycled pid. */
long bg_job_signal(bg_job *j, int sig);

/* Live processes left in its group, or -1 with errno. */
long bg_job_members(bg_job *j);

/* ---- stdin --------------------------------------------------------------- */

/* 0: writable; EBADF: it is /dev/null; EPIPE: closed (or closing). */
int bg_job_stdin_check(const bg_job *j);

/* Write or queue data (the pipe may be full): 0; ENOBUFS (the queue is
 * full), ENOMEM, or EPIPE (nobody reads it any more). */
int bg_job_write(bg_job *j, const void *data, size_t len);

/* Bytes queued, not yet accepted by the pipe. */
size_t bg_job_stdin_queued(const bg_job *j);

/* Close stdin once the queue is written (a pty gets its EOF character). */
void bg_job_close_stdin(bg_job *j);

/* The pty's window size: 0, or -1 with errno (EBADF: the pty is closed). */
int bg_job_resize(bg_job *j, unsigned short rows, unsigned short cols);

/* ---- the cgroup leaf ----------------------------------------------------- */

/* Its leaf's name, and in *dirfd the loop's directory holding it; NULL
 * when it has none (or the loop closed). */
const char *bg_job_leaf(const bg_job *j, int *dirfd);

/* Its leaf's path: 1, or 0 when it has none. */
int bg_job_cgroup_path(const bg_job *j, char *buf, size_t cap);

/* SIGKILL everything in its leaf (escapees too), waiting up to wait_ms
 * for it to empty. */
void bg_job_kill_cgroup(bg_job *j, long wait_ms);

/* Remove its leaf once nothing runs there. */
void bg_job_drop_cgroup(bg_job *j);

/* ---- the jobs of a loop --------------------------------------------------- */

/* After a poll: note every group of lp whose leader is gone and whose
 * last member has left. */
void bg_jobs_check_groups(bg_loop *lp);

/* End every group of lp still known to have members. */
void bg_jobs_terminate(bg_loop *lp);

/* For a host that owns all its children (subreaper): reap each exited
 * child; a leader of lp through its job. Returns the orphans reaped. */
long bg_jobs_reap_strays(bg_loop *lp);

#endif
