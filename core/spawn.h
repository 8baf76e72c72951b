/*
 * spawn.h: start one job as the leader of a new session and process group.
 * Pure C, no Lua: the caller (loop.c) turns Lua options into a request.
 */
#ifndef BGPROC_SPAWN_H
#define BGPROC_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

enum { BG_STDIN_NULL = 0, BG_STDIN_PIPE = 1 };

typedef struct bg_spawn_req {
  const char *file;     /* program: a path, or a name searched in `path` */
  char *const *argv;    /* NULL-terminated */
  char *const *envp;    /* NULL-terminated, complete environment */
  const char *path;     /* search path for `file` without a slash */
  const char *cwd;      /* NULL: inherit */
  int stdin_mode;       /* BG_STDIN_*; ignored with pty */
  int pty;              /* 0/1: stdin, stdout and stderr on a new pty */
  int merge;            /* 0/1: stderr shares stdout's pipe */
  unsigned short rows, cols;
  int null_fd;          /* an open /dev/null to use as stdin, or -1 */
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

/* Move fd to a number >= 3 (closing the original) so that dup2 onto 0-2 in
 * the child never overlaps. Returns the new fd or -1. */
int bg_fd_above_stdio(int fd);

#endif
