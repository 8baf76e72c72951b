/*
 * guardian.c: the process that ends the jobs when their host dies.
 *
 * It is a fork of the host made with clone3(CLONE_PIDFD) and exit signal 0,
 * so the host reaps it through a pidfd and gets no SIGCHLD. The child side
 * uses async-signal-safe calls only, because the host may have threads.
 */
#define _GNU_SOURCE
#include "guardian.h"

#include "group.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

enum { MSG_ADD = 1, MSG_DEL = 2 };

typedef struct guard_msg {
  int32_t op;
  int32_t pgid;
} guard_msg;

typedef struct entry {
  pid_t pgid;
  int pidfd;
} entry;

/* ---- the guardian process -------------------------------------------- */

typedef struct table {
  entry *e;
  size_t n, cap;
} table;

static int table_grow(table *t) {
  size_t cap = t->cap ? t->cap * 2 : 1024;
  entry *e = mmap(NULL, cap * sizeof *e, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (e == MAP_FAILED) return -1;
  if (t->e) {
    memcpy(e, t->e, t->n * sizeof *e);
    munmap(t->e, t->cap * sizeof *e);
  }
  t->e = e;
  t->cap = cap;
  return 0;
}

static void table_del(table *t, pid_t pgid) {
  for (size_t i = 0; i < t->n; i++) {
    if (t->e[i].pgid != pgid) continue;
    if (t->e[i].pidfd >= 0) close(t->e[i].pidfd);
    t->e[i] = t->e[--t->n];
    return;
  }
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/* Shell sort: qsort may allocate, and this runs after a fork. */
static void sort_pids(pid_t *a, size_t n) {
  for (size_t gap = n / 2; gap > 0; gap /= 2)
    for (size_t i = gap; i < n; i++) {
      pid_t v = a[i];
      size_t j = i;
      for (; j >= gap && a[j - gap] > v; j -= gap) a[j] = a[j - gap];
      a[j] = v;
    }
}

/* Signal every group: kill(-pgid) where the live leader pins the id, the
 * verified /proc path for groups whose leader is gone. Returns how many
 * groups or processes were hit. */
static long signal_all(table *t, pid_t *sorted, int sig) {
  long hits = 0;
  for (size_t i = 0; i < t->n; i++) {
    entry *e = &t->e[i];
    if (e->pidfd >= 0 && bg_pidfd_signal(e->pidfd, 0) == 0) {
      if (kill(-e->pgid, sig) == 0) hits++;
      bg_pidfd_signal(e->pidfd, sig);
    }
  }
  long more = bg_group_signal_verified(sorted, t->n, sig);
  return more > 0 ? hits + more : hits;
}

static void guardian_end_all(table *t) {
  if (t->n == 0) return;
  /* the table's memory is ours (mmap), sorting in place is safe */
  pid_t *sorted = mmap(NULL, t->n * sizeof *sorted, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (sorted == MAP_FAILED) return;
  for (size_t i = 0; i < t->n; i++) sorted[i] = t->e[i].pgid;
  sort_pids(sorted, t->n);
  if (signal_all(t, sorted, SIGTERM) > 0) {
    for (long waited = 0; waited < BG_GUARDIAN_GRACE_MS; waited += 20) {
      sleep_ms(20);
      /* zombies do not count: with the host dead nobody may reap them */
      if (bg_group_signal_verified(sorted, t->n, 0) <= 0) break;
    }
  }
  /* Twice: a member that forked between scan and signal is caught next. */
  for (int pass = 0; pass < 3; pass++)
    if (signal_all(t, sorted, SIGKILL) <= 0) break;
}

static void guardian_setup(int sock) {
  sigset_t none;
  setsid();
  prctl(PR_SET_NAME, "bgproc-guardian", 0, 0, 0);
  for (int s = 1; s < NSIG; s++) {
    struct sigaction sa;
    if (s == SIGKILL || s == SIGSTOP) continue;
    memset(&sa, 0, sizeof sa);
    /* Terminal signals aimed at the host's group must not end us. */
    sa.sa_handler = (s == SIGINT || s == SIGHUP || s == SIGPIPE ||
                     s == SIGTSTP || s == SIGTTIN || s == SIGTTOU || s == SIGQUIT)
                        ? SIG_IGN
                        : SIG_DFL;
    sigaction(s, &sa, NULL);
  }
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* Keep only the socket, as fd 3; 0-2 on /dev/null so we never hold a
   * pipe or terminal that someone waits on. */
  if (sock != 3) {
    dup2(sock, 3);
    close(sock);
  }
  syscall(SYS_close_range, 4U, ~0U, 0U);
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    if (null > 2) close(null);
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static void guardian_main(int sock) {
  table t = {NULL, 0, 0};
  guardian_setup(sock);
  for (;;) {
    guard_msg m;
    union {
      char buf[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } cm;
    struct iovec iov = {&m, sizeof m};
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cm.buf;
    mh.msg_controllen = sizeof cm.buf;
    ssize_t n = recvmsg(3, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; /* EOF: the host is gone or closed the core */
    if (n != (ssize_t)sizeof m) continue;
    int fd = -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      memcpy(&fd, CMSG_DATA(c), sizeof fd);
    if (m.op == MSG_ADD) {
      table_del(&t, m.pgid); /* a re-registration replaces */
      if (t.n == t.cap && table_grow(&t) < 0) {
        if (fd >= 0) close(fd);
        continue;
      }
      t.e[t.n].pgid = m.pgid;
      t.e[t.n].pidfd = fd;
      t.n++;
    } else {
      if (fd >= 0) close(fd);
      if (m.op == MSG_DEL) table_del(&t, m.pgid);
    }
  }
  guardian_end_all(&t);
  _exit(0);
}

/* ---- the host side ---------------------------------------------------- */

void bg_guardian_init(bg_guardian *g) {
  g->pid = -1;
  g->pidfd = -1;
  g->sock = -1;
}

static pid_t clone_pidfd(int *pidfd) {
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = CLONE_PIDFD;
  args.pidfd = (uint64_t)(uintptr_t)pidfd;
  args.exit_signal = 0;
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0 && (errno == ENOSYS || errno == EINVAL || errno == E2BIG)) {
    pid = fork(); /* valgrind and old kernels: fork, then open the pidfd */
    if (pid > 0) *pidfd = bg_pidfd_open((pid_t)pid);
  }
  return (pid_t)pid;
}

int bg_guardian_start(bg_guardian *g) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    return errno;
  int pidfd = -1;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = clone_pidfd(&pidfd);
  if (pid == 0) {
    close(sv[0]);
    guardian_main(sv[1]); /* never returns */
  }
  int err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(sv[1]);
  if (pid < 0 || pidfd < 0) {
    close(sv[0]);
    if (pid > 0) { /* no pidfd: closing the socket ends it; reap it */
      siginfo_t si;
      waitid(P_PID, (id_t)pid, &si, WEXITED | __WALL);
    }
    return err ? err : EIO;
  }
  g->pid = pid;
  g->pidfd = pidfd;
  g->sock = sv[0];
  return 0;
}

static int send_msg(bg_guardian *g, int op, pid_t pgid, int fd) {
  if (g->sock < 0) return EBADF;
  guard_msg m = {op, (int32_t)pgid};
  struct iovec iov = {&m, sizeof m};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } cm;
  struct msghdr mh = {0};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (fd >= 0) {
    memset(&cm, 0, sizeof cm);
    mh.msg_control = cm.buf;
    mh.msg_controllen = sizeof cm.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  while (sendmsg(g->sock, &mh, MSG_NOSIGNAL) < 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

int bg_guardian_add(bg_guardian *g, pid_t pgid, int leader_pidfd) {
  return send_msg(g, MSG_ADD, pgid, leader_pidfd);
}

int bg_guardian_del(bg_guardian *g, pid_t pgid) {
  return send_msg(g, MSG_DEL, pgid, -1);
}

int bg_guardian_reap(bg_guardian *g) {
  if (g->pidfd < 0) return 1;
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(P_PIDFD, (id_t)g->pidfd, &si, WEXITED | WNOHANG | __WALL) < 0)
    return errno == ECHILD; /* someone else reaped it */
  if (si.si_pid == 0) return 0;
  close(g->pidfd);
  g->pidfd = -1;
  g->pid = -1;
  if (g->sock >= 0) close(g->sock);
  g->sock = -1;
  return 1;
}

void bg_guardian_stop(bg_guardian *g) {
  if (g->sock >= 0) close(g->sock);
  g->sock = -1;
  if (g->pidfd >= 0) {
    siginfo_t si;
    while (waitid(P_PIDFD, (id_t)g->pidfd, &si, WEXITED | __WALL) < 0 &&
           errno == EINTR) {
    }
    close(g->pidfd);
  }
  g->pidfd = -1;
  g->pid = -1;
}
