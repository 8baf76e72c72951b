/*
 * spawn.c: start a job with clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD).
 *
 * Like glibc's posix_spawn, the child runs on a separate stack in the
 * parent's memory until it execs, so a spawn costs no page-table copy.
 * Unlike posix_spawn it hands back a pidfd atomically (so the job is never
 * confused with a recycled pid), makes the child a session leader, can
 * attach a pty as the controlling terminal, marks every inherited fd above
 * 2 close-on-exec with one close_range() call, and reports exactly which
 * step failed (chdir or exec): through the shared memory itself once the
 * first spawn has shown that CLONE_VM is honoured, else (valgrind turns a
 * vfork-style clone into a fork) through a close-on-exec error pipe.
 *
 * The child is collected by waitid(P_PIDFD, ..., __WALL) in job.c, never
 * by waitpid(-1): the SIGCHLD its exit raises (exec resets the exit signal
 * to SIGCHLD) finds no child of the host's own to steal.
 */
#define _GNU_SOURCE
#include "spawn.h"

#include "fds.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

typedef struct child_report {
  int ran; /* set first thing by the child: memory really is shared */
  int err;
  int stage;
} child_report;

typedef struct child_ctx {
  const bg_spawn_req *req;
  int fd0, fd1, fd2; /* become the child's 0, 1, 2; all >= 3 */
  int ctty;          /* pty slave to make the controlling tty, or -1 */
  int errfd;         /* write end of the error pipe, or -1 */
  child_report *rep; /* in the parent's memory */
} child_ctx;

/* 1 once a spawn showed that the child shares our memory until exec. */
static volatile int vm_shared;

static const char *const stage_names[] = {
    "spawn", "pipe", "pty", "clone", "child setup", "cgroup", "chdir", "exec",
};

const char *bg_stage_name(bg_stage stage) {
  if ((unsigned)stage >= sizeof stage_names / sizeof *stage_names)
    return "spawn";
  return stage_names[stage];
}

/* ---- child side: async-signal-safe calls only ------------------------ */

/* The kernel's struct sigaction: the raw syscall reaches every signal,
 * including the two glibc keeps to itself (32, 33) and any a sanitizer's
 * sigaction interceptor would guard. */
struct kernel_sigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)(void);
  unsigned long mask;
};

BG_CHILD_CODE static void child_reset_signals(void) {
  for (int s = 1; s < NSIG; s++) {
    struct kernel_sigaction cur, dfl;
    if (s == SIGKILL || s == SIGSTOP) continue;
    if (syscall(SYS_rt_sigaction, s, NULL, &cur, sizeof cur.mask) != 0)
      continue;
    if (cur.handler == SIG_DFL) continue;
    memset(&dfl, 0, sizeof dfl);
    dfl.handler = SIG_DFL;
    syscall(SYS_rt_sigaction, s, &dfl, NULL, sizeof dfl.mask);
  }
  unsigned long none = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none);
}

/* execvpe() without malloc: search `path` for a name without a slash. */
BG_CHILD_CODE static void child_exec(const bg_spawn_req *req) {
  const char *file = req->file;
  if (strchr(file, '/') != NULL) {
    execve(file, req->argv, req->envp);
    return;
  }
  const char *p = req->path ? req->path : "/usr/local/bin:/usr/bin:/bin";
  size_t flen = strlen(file);
  int saw_eacces = 0;
  char buf[PATH_MAX];
  for (;;) {
    const char *end = strchrnul(p, ':');
    size_t dlen = (size_t)(end - p);
    if (dlen + flen + 3 <= sizeof buf) {
      size_t n = 0;
      if (dlen == 0) {
        buf[n++] = '.';
      } else {
        memcpy(buf, p, dlen);
        n = dlen;
      }
      buf[n++] = '/';
      memcpy(buf + n, file, flen + 1);
      execve(buf, req->argv, req->envp);
      switch (errno) {
        case EACCES: saw_eacces = 1; break;
        case ENOENT: case ENOTDIR: case ESTALE: case ENODEV: case ETIMEDOUT:
          break;
        default: return; /* a real failure of an existing file */
      }
    }
    if (*end == '\0') break;
    p = end + 1;
  }
  errno = saw_eacces ? EACCES : ENOENT;
}

BG_CHILD_CODE static int child_main(void *arg) {
  const child_ctx *c = arg;
  child_report *rep = c->rep;
  rep->ran = 1;
  /* "0" moves the writer: the program never runs outside its cgroup, as
   * with clone3's CLONE_INTO_CGROUP, and the vfork-style clone stays. */
  rep->stage = BG_STAGE_CGROUP;
  if (c->req->cgroup_fd >= 0 && write(c->req->cgroup_fd, "0", 1) != 1) goto fail;
  rep->stage = BG_STAGE_SETUP;
  if (setsid() < 0) goto fail;
  if (c->ctty >= 0 && ioctl(c->ctty, TIOCSCTTY, 0) < 0) goto fail;
  if (dup2(c->fd0, 0) < 0 || dup2(c->fd1, 1) < 0 || dup2(c->fd2, 2) < 0)
    goto fail;
  /* Nothing the host opened reaches the program, O_CLOEXEC or not; the
   * error pipe stays usable until exec closes it. */
  bg_close_from(3, ~0U, 1);
  if (c->req->cwd != NULL && chdir(c->req->cwd) < 0) {
    rep->stage = BG_STAGE_CHDIR;
    goto fail;
  }
  child_reset_signals();
  rep->stage = BG_STAGE_EXEC;
  child_exec(c->req);
fail:
  rep->err = errno ? errno : EIO;
  if (c->errfd >= 0)
    while (write(c->errfd, rep, sizeof *rep) < 0 && errno == EINTR) {
    }
  _exit(127);
}

/* ---- parent side ----------------------------------------------------- */

static int open_pty(const bg_spawn_req *req, int *master, int *slave) {
  *master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*master < 0) return -1;
  if (grantpt(*master) < 0 || unlockpt(*master) < 0) return -1;
  *slave = ioctl(*master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*slave < 0) {
    char name[64];
    if (ptsname_r(*master, name, sizeof name) != 0) return -1;
    *slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*slave < 0) return -1;
  }
  struct winsize ws = {.ws_row = req->rows ? req->rows : 24,
                       .ws_col = req->cols ? req->cols : 80};
  ioctl(*slave, TIOCSWINSZ, &ws);
  return 0;
}

/* Pipe whose parent end is non-blocking; both ends close-on-exec. */
static int make_pipe(int *parent_end, int *child_end, int child_reads) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return -1;
  *child_end = child_reads ? p[0] : p[1];
  *parent_end = child_reads ? p[1] : p[0];
  return bg_set_nonblock(*parent_end);
}

static pid_t do_clone(child_ctx *ctx, void *stack, size_t stack_size,
                      int *pidfd) {
  uintptr_t top = ((uintptr_t)stack + stack_size) & ~(uintptr_t)15;
  sigset_t all, old;
  sigfillset(&all);
  /* Host signal handlers must not run on the child's stack before exec. */
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = clone(child_main, (void *)top,
                    CLONE_VM | CLONE_VFORK | CLONE_PIDFD, ctx, pidfd);
  if (pid < 0 && errno == EINVAL) { /* kernels without CLONE_PIDFD */
    pid = clone(child_main, (void *)top, CLONE_VM | CLONE_VFORK, ctx);
    if (pid > 0) *pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  }
  int saved = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = saved;
  return pid;
}

int bg_spawn(const bg_spawn_req *req, bg_spawn_res *res, void *stack,
             size_t stack_size, bg_stage *stage) {
  int err = 0;
  int ep[2] = {-1, -1};
  int c_in = -1, c_out = -1, c_err = -1, slave = -1;
  int p_in = -1, p_out = -1, p_err = -1;
  int pidfd = -1;
  pid_t pid = -1;
  child_report rep = {0, 0, 0};
  int pty = req->stdin_kind == BG_STDIN_PTY;

  *stage = BG_STAGE_PIPE;
  if (!vm_shared && pipe2(ep, O_CLOEXEC) < 0) goto sys_fail;
  if (pty) {
    *stage = BG_STAGE_PTY;
    if (open_pty(req, &p_out, &slave) < 0) goto sys_fail;
    if (bg_set_nonblock(p_out) < 0) goto sys_fail;
    p_in = fcntl(p_out, F_DUPFD_CLOEXEC, 3);
    if (p_in < 0) goto sys_fail;
    if ((slave = bg_fd_above_stdio(slave)) < 0) goto sys_fail;
  } else {
    /* c_in stays -1 when the loop's shared /dev/null (never ours to close)
     * serves as stdin */
    if (req->stdin_kind == BG_STDIN_PIPE) {
      if (make_pipe(&p_in, &c_in, 1) < 0) goto sys_fail;
    } else if (req->null_fd < 0 &&
               (c_in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
      goto sys_fail;
    }
    if (make_pipe(&p_out, &c_out, 0) < 0) goto sys_fail;
    if (!req->merge && make_pipe(&p_err, &c_err, 0) < 0) goto sys_fail;
    if ((c_in >= 0 && (c_in = bg_fd_above_stdio(c_in)) < 0) ||
        (c_out = bg_fd_above_stdio(c_out)) < 0 ||
        (!req->merge && (c_err = bg_fd_above_stdio(c_err)) < 0))
      goto sys_fail;
  }
  if (ep[1] >= 0 && (ep[1] = bg_fd_above_stdio(ep[1])) < 0) goto sys_fail;

  child_ctx ctx = {
      .req = req,
      .fd0 = pty ? slave : c_in >= 0 ? c_in : req->null_fd,
      .fd1 = pty ? slave : c_out,
      .fd2 = pty ? slave : req->merge ? c_out : c_err,
      .ctty = pty ? slave : -1,
      .errfd = ep[1],
      .rep = &rep,
  };
  *stage = BG_STAGE_FORK;
  pid = do_clone(&ctx, stack, stack_size, &pidfd);
  if (pid < 0) goto sys_fail;
  if (pidfd < 0) { /* pidfd_open failed after the fallback clone */
    err = errno;
    kill(pid, SIGKILL);
    siginfo_t si;
    while (waitid(P_PID, (id_t)pid, &si, WEXITED | __WALL) < 0 && errno == EINTR) {
    }
    pid = -1;
    goto fail;
  }
  bg_close_fd(&ep[1]);
  bg_close_fd(&c_in);
  bg_close_fd(&c_out);
  bg_close_fd(&c_err);
  bg_close_fd(&slave);

  /* With CLONE_VFORK honoured we resume only after the child exec'd or
   * exited, and rep tells which; otherwise the pipe does. */
  if (rep.ran) vm_shared = 1;
  if (ep[0] >= 0) {
    ssize_t n;
    while ((n = read(ep[0], &rep, sizeof rep)) < 0 && errno == EINTR) {
    }
    if (n != (ssize_t)sizeof rep) rep.err = 0;
  }
  if (rep.err) { /* the child failed before exec */
    siginfo_t si;
    while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | __WALL) < 0 &&
           errno == EINTR) {
    }
    bg_close_fd(&pidfd);
    *stage = (bg_stage)rep.stage;
    err = rep.err;
    goto fail;
  }
  bg_close_fd(&ep[0]);
  res->pid = pid;
  res->pidfd = pidfd;
  res->in_fd = p_in;
  res->out_fd = p_out;
  res->err_fd = p_err;
  *stage = BG_STAGE_NONE;
  return 0;

sys_fail:
  err = errno ? errno : EIO;
fail:
  bg_close_fd(&ep[0]);
  bg_close_fd(&ep[1]);
  bg_close_fd(&c_in);
  bg_close_fd(&c_out);
  bg_close_fd(&c_err);
  bg_close_fd(&slave);
  bg_close_fd(&p_in);
  bg_close_fd(&p_out);
  bg_close_fd(&p_err);
  bg_close_fd(&pidfd);
  return err;
}
