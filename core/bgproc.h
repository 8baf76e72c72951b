/*
 * bgproc.h: what loop.c, job.c and the module entry share.
 *
 * Two userdata types, each with one metatable:
 *   bgproc.core.Loop  an epoll set, the guardian, the jobs still running
 *   bgproc.core.Job   one spawned process group and its output ring
 * A Job's user value is its Loop (so the Loop outlives its Jobs); the Loop's
 * user value is a table lightuserdata(job) -> Job of the jobs it still
 * watches, so a running Job is never collected.
 */
#ifndef BGPROC_H
#define BGPROC_H

#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <stdint.h>
#include <sys/types.h>

#include "guardian.h"
#include "ring.h"
#include "spawn.h"

#define BG_LOOP_MT "bgproc.core.Loop"
#define BG_JOB_MT "bgproc.core.Job"

#define BG_DEFAULT_RING (1024 * 1024)
#define BG_MIN_RING 64
#define BG_MAX_RING ((size_t)1 << 30)
#define BG_MAX_STDIN_QUEUE (16 * 1024 * 1024)
#define BG_DEFAULT_PIPE (256 * 1024)
#define BG_MAX_PIPE (64 * 1024 * 1024) /* F_SETPIPE_SZ's usual ceiling */
#define BG_PIPE_FULL 65536 /* a read this big means the writer outruns us */
/* Bytes drained from one pipe per wakeup before others get a turn. */
#define BG_DRAIN_BUDGET (4u * 1024 * 1024)

enum { W_PIDFD, W_OUT, W_ERR, W_IN, W_GUARD, W_COUNT };

/* Pending event bits, coalesced per job per dispatch. */
enum { EV_OUTPUT = 1, EV_EXIT = 2, EV_EOF = 4 };

typedef struct bg_job bg_job;
typedef struct bg_loop bg_loop;

typedef struct bg_watch {
  bg_job *job; /* NULL for the guardian's watch */
  int kind;
} bg_watch;

struct bg_job {
  bg_loop *loop; /* outlives the job: it is the job's user value */
  pid_t pid;     /* also the process group and session id */
  int pidfd, out_fd, err_fd, in_fd;
  bg_stdin_kind stdin_kind;
  int reaped, code, signal, core_dumped;
  int pipe_max;        /* grow busy stdout/stderr pipes to this; 0: never */
  unsigned char grown; /* bit per stream: pipe already grown */
  int tracked;   /* in the loop's list of groups (and the guardian's
                    table at gslot, or -1) until the group is empty */
  long gslot;
  int group_empty;
  int closed;    /* job:close() ran: ring freed */
  int live;      /* in the loop's table of watched jobs */
  double started_ms, ended_ms;  /* wall clock, ms since the epoch */
  int64_t t0_ns, t1_ns;         /* monotonic */
  bg_ring ring;
  /* queued stdin bytes not yet accepted by the pipe */
  unsigned char *inq;
  size_t inq_len, inq_off, inq_cap;
  int in_close_pending, in_watched;
  unsigned pend;
  bg_job *pend_next;
  bg_job *gprev, *gnext; /* the loop's list of groups */
  bg_watch w[W_COUNT];
  char cg_name[32]; /* its leaf under the loop's cgroup dir; "" for none */
};

struct bg_loop {
  int epfd;
  int closed;
  int use_guardian;
  bg_guardian guard;
  bg_watch guard_watch;
  void *stack;
  size_t stack_size;
  size_t default_ring;
  int pipe_size;
  int null_fd;
  bg_job *pend_head;
  bg_job *groups;  /* jobs whose group may still have members */
  int subreaper;   /* the host is PR_SET_CHILD_SUBREAPER: reap orphans */
  int guard_watched; /* the guardian's pidfd is in the epoll set */
  bg_loop *next_loop; /* every open loop of the process */
  long nlive;
  int cg_fd;          /* the loop's cgroup directory, or -1 */
  int cg_tried;       /* made (or found impossible, or disabled) */
  int cg_refused;     /* a child could not join: new jobs get no leaf */
  unsigned long cg_seq;  /* leaf names: job-<seq> */
  char cg_path[PATH_MAX];
  char cg_why[256];   /* why there is no cgroup */
};

/* errors.c */
int bg_fail(lua_State *L, int err, const char *fmt, ...);
const char *bg_errname(int err);
int64_t bg_now_ns(void);
double bg_wall_ms(void);

/* signals.c */
int bg_checksignal(lua_State *L, int idx);
const char *bg_signame(int sig);
void bg_push_signals(lua_State *L);

/* job.c */
void bg_job_open(lua_State *L);
bg_job *bg_job_new(lua_State *L, int loop_idx); /* pushes a half-built job */
void bg_job_pend(bg_job *j, unsigned bits);
void bg_job_drain(bg_job *j, int kind); /* W_OUT or W_ERR, once ready */
void bg_job_reap(bg_job *j);
void bg_job_collect(bg_job *j); /* the leader exited: drain, then reap */
void bg_job_release(bg_job *j); /* terminate, free all but the userdata */
void bg_job_flush_stdin(bg_job *j);
void bg_job_drop_stdin(bg_job *j);
int bg_job_finished(const bg_job *j);
void bg_job_untrack(bg_job *j);
int bg_job_track(bg_job *j); /* 0, or -1 with errno */
void bg_job_reap_orphans(bg_job *j);
void bg_job_check_group(bg_job *j);
void bg_job_forget_group(bg_job *j);
void bg_job_terminate(bg_job *j); /* SIGKILL the group, reap, close fds */
long bg_job_signal(bg_job *j, int sig); /* processes/groups hit, -1+errno */
void bg_job_kill_cgroup(bg_job *j, long wait_ms); /* SIGKILL its whole leaf */
void bg_job_drop_cgroup(bg_job *j); /* rmdir the leaf once it is empty */

/* escape.c */
int bg_job_has_cgroup(const bg_job *j); /* in a leaf of a still-open loop */
long bg_job_signal_escaped(bg_job *j, int sig); /* hits, or -1 with errno */
int bg_job_escaped(lua_State *L); /* job:escaped() */
int bg_core_escaped(lua_State *L); /* core.escaped({job, ...}) */

/* proc.c */
void bg_proc_open(lua_State *L);
int bg_loop_reap_strays(lua_State *L);

/* loop.c */
int bg_loop_owns_pid(pid_t pid); /* a live job leader or guardian of any loop */
void bg_loop_open(lua_State *L);
int bg_core_new(lua_State *L);
int bg_loop_watch(bg_loop *lp, bg_watch *w, int fd, uint32_t ev); /* 0 or errno */
void bg_loop_unwatch(bg_loop *lp, int fd);

#endif
