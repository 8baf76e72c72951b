/*
 * spawn.h: start one job as the leader of a new session and process group.
 * Pure C, no Lua: opts.c turns Lua options into a request, which a job
 * spawns with its loop's stack (bg_loop_spawn).
 */
#ifndef BGPROC_SPAWN_H
#define BGPROC_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

/* A job's stdin; with a pty, stdout and stderr are on it too. */
typedef enum { BG_STDIN_NULL, BG_STDIN_PIPE, BG_STDIN_PTY } bg_stdin_kind;

typedef struct bg_spawn_req {
  const char *file;     /* program: a path, or a name searched in `path` */
  char *const *argv;    /* NULL-terminated */
  char *const *envp;    /* NULL-terminated, complete environment */
  const char *path;     /* search path for `file` without a slash */
  const char *cwd;      /* NULL: inherit */
  bg_stdin_kind stdin_kind;
  int merge;            /* 0/1: stderr shares stdout's pipe */
  unsigned short rows, cols;
  int null_fd;          /* an open /dev/null (>= 3) to use as stdin, or -1 */
  int cgroup_fd;        /* a cgroup.procs to join before exec, or -1 */
} bg_spawn_req;

typedef struct bg_spawn_res {
  pid_t pid;
  int pidfd;
  int in_fd;            /* parent end of stdin (pipe or pty master), or -1 */
  int out_fd;           /* stdout pipe, or the pty master (dup) */
  int err_fd;           /* stderr pipe, or -1 with pty or merge */
} bg_spawn_res;

/* Where a failed spawn went wrong, for the error message. */
typedef enum {
  BG_STAGE_NONE = 0,
  BG_STAGE_PIPE,        /* creating pipes or opening /dev/null */
  BG_STAGE_PTY,         /* allocating the pty */
  BG_STAGE_FORK,        /* clone/fork */
  BG_STAGE_SETUP,       /* setsid, controlling tty, dup2 in the child */
  BG_STAGE_CGROUP,      /* joining the job's cgroup */
  BG_STAGE_CHDIR,       /* changing to cwd */
  BG_STAGE_EXEC         /* execve */
} bg_stage;

/*
 * Spawn. On success returns 0 and fills *res (all fds O_CLOEXEC, the
 * parent's ends O_NONBLOCK). On failure returns an errno value, sets *stage,
 * and leaves nothing behind: no fd, no child, no zombie.
 * `stack` is scratch memory for the vfork-style child (stack_size bytes).
 */
int bg_spawn(const bg_spawn_req *req, bg_spawn_res *res, void *stack,
             size_t stack_size, bg_stage *stage);

const char *bg_stage_name(bg_stage stage);

#endif
