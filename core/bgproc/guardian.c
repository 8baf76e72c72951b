/*
 * guardian.c: the process that ends the jobs when their host dies.
 *
 * It is a fork of the host made with clone(CLONE_PIDFD) and exit signal 0,
 * so the host reaps it through a pidfd and gets no SIGCHLD. It shares the
 * host's group table (a memfd) and waits for EOF on a pipe. The child side
 * uses async-signal-safe calls only, because the host may have threads.
 */
#define _GNU_SOURCE
#include "guardian.h"

#include "cgroup.h"
#include "fds.h"
#include "group.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

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

/* TERM every member of every group (each verified through a pidfd, so a
 * recycled pid is never hit), a grace period, then KILL what is left. */
static void guardian_end_all(pid_t *pgids, size_t n) {
  if (n == 0) return;
  sort_pids(pgids, n);
  if (bg_group_signal_verified(pgids, n, SIGTERM) > 0) {
    for (long waited = 0; waited < BG_GUARDIAN_GRACE_MS; waited += 20) {
      sleep_ms(20);
      /* zombies do not count: with the host dead nobody may reap them */
      if (bg_group_signal_verified(pgids, n, 0) <= 0) break;
    }
  }
  /* Again while anything is hit: a member that forked between scan and
   * signal is caught by the next pass. */
  for (int pass = 0; pass < 5; pass++)
    if (bg_group_signal_verified(pgids, n, SIGKILL) <= 0) break;
}

/* fd 3: the pipe's read end, fd 4: the table; 0-2 on /dev/null so we
 * never hold a pipe or terminal that someone waits on. */
static void guardian_setup(int pipe_r, int memfd) {
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
  /* Keep only our two fds, with no new fd needed (the host may be at its
   * limit): close all others, then move them to 3 and 4 through 5 and 6. */
  int lo = pipe_r < memfd ? pipe_r : memfd, hi = pipe_r < memfd ? memfd : pipe_r;
  if (lo > 0) bg_close_from(0, (unsigned)lo - 1, 0);
  if (hi > lo + 1) bg_close_from((unsigned)lo + 1, (unsigned)hi - 1, 0);
  bg_close_from((unsigned)hi + 1, ~0U, 0);
  /* copies on two numbers that are neither fd, then onto 3 and 4 */
  int tmp[2], k = 0;
  for (int t = 5; t <= 8 && k < 2; t++)
    if (t != pipe_r && t != memfd) tmp[k++] = t;
  if (dup2(pipe_r, tmp[0]) < 0 || dup2(memfd, tmp[1]) < 0) _exit(1);
  if (dup2(tmp[0], 3) < 0 || dup2(tmp[1], 4) < 0) _exit(1);
  bg_close_from(5, ~0U, 0);
  int null = open("/dev/null", O_RDWR); /* the lowest free: 0 */
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    if (null > 2) close(null);
  }
}

/* Processes that left their job's group (setsid) are still in the loop's
 * cgroup: kill them all there, then remove the directories. */
static void guardian_end_cgroup(const char *dir) {
  if (dir == NULL) return;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  bg_cgroup_clear(fd);
  close(fd);
  rmdir(dir);
}

static void guardian_main(int pipe_r, int memfd, const char *cgroup_dir) {
  guardian_setup(pipe_r, memfd);
  char c;
  for (;;) {
    ssize_t n = read(3, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    /* A byte: the host closes the core in order (its groups are ended
     * already) and tells us to go. EOF without one: the host is gone. */
    if (n == 1) _exit(0);
    break;
  }
  struct stat st;
  if (fstat(4, &st) < 0 || st.st_size <= 0) _exit(0);
  size_t cap = (size_t)st.st_size / sizeof(int32_t);
  const int32_t *slots = mmap(NULL, (size_t)st.st_size, PROT_READ,
                              MAP_SHARED, 4, 0);
  if (slots == MAP_FAILED) _exit(1);
  pid_t *pgids = mmap(NULL, cap * sizeof *pgids, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (pgids == MAP_FAILED) _exit(1);
  size_t n = 0;
  for (size_t i = 0; i < cap; i++)
    if (slots[i] > 0) pgids[n++] = slots[i];
  guardian_end_all(pgids, n);
  guardian_end_cgroup(cgroup_dir);
  _exit(0);
}

/* ---- the host side ---------------------------------------------------- */

void bg_guardian_init(bg_guardian *g) {
  memset(g, 0, sizeof *g);
  g->pid = -1;
  g->pidfd = -1;
  g->pipe_w = -1;
  g->memfd = -1;
}

#define TABLE_MIN 1024 /* slots */

static int table_resize(bg_guardian *g, size_t cap) {
  if (ftruncate(g->memfd, (off_t)(cap * sizeof(int32_t))) < 0) return errno;
  void *p = g->slots
                ? mremap(g->slots, g->cap * sizeof(int32_t),
                         cap * sizeof(int32_t), MREMAP_MAYMOVE)
                : mmap(NULL, cap * sizeof(int32_t), PROT_READ | PROT_WRITE,
                       MAP_SHARED, g->memfd, 0);
  if (p == MAP_FAILED) return errno;
  g->slots = p;
  g->cap = cap;
  return 0;
}

static int table_open(bg_guardian *g) {
  if (g->memfd >= 0) return 0;
  g->memfd = memfd_create("bgproc-groups", MFD_CLOEXEC);
  if (g->memfd < 0) return errno;
  int err = table_resize(g, TABLE_MIN);
  if (err) {
    close(g->memfd);
    g->memfd = -1;
  }
  return err;
}

long bg_guardian_add(bg_guardian *g, pid_t pgid) {
  size_t slot;
  if (g->nfree > 0) {
    slot = g->free[--g->nfree];
  } else {
    if (g->used == g->cap) {
      int err = g->memfd < 0 ? table_open(g) : table_resize(g, g->cap * 2);
      if (err) {
        errno = err;
        return -1;
      }
    }
    slot = g->used++;
  }
  g->slots[slot] = (int32_t)pgid;
  return (long)slot;
}

void bg_guardian_del(bg_guardian *g, long slot) {
  if (slot < 0 || (size_t)slot >= g->used) return;
  g->slots[slot] = 0;
  if (g->nfree == g->capfree) {
    size_t cap = g->capfree ? g->capfree * 2 : 64;
    uint32_t *f = realloc(g->free, cap * sizeof *f);
    if (f == NULL) return; /* the slot stays empty, unused: harmless */
    g->free = f;
    g->capfree = cap;
  }
  g->free[g->nfree++] = (uint32_t)slot;
}

struct guardian_args {
  int pipe_r, memfd;
  const char *cgroup_dir;
};

/* A fork-like clone with a pidfd and no exit signal, so the host gets no
 * SIGCHLD. The raw syscall with no new stack: the child runs on its own
 * copy of this one, and nothing is shared with other threads. */
static pid_t clone_guardian(struct guardian_args *a, int *pidfd) {
  long pid = syscall(SYS_clone, (unsigned long)CLONE_PIDFD, NULL, pidfd, NULL, NULL);
  if (pid == 0) {
    guardian_main(a->pipe_r, a->memfd, a->cgroup_dir); /* never returns */
    _exit(1);
  }
  return (pid_t)pid;
}

int bg_guardian_start(bg_guardian *g) {
  int err = table_open(g);
  if (err) return err;
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return errno;
  struct guardian_args a = {p[0], g->memfd, g->cgroup_dir};
  int pidfd = -1;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = clone_guardian(&a, &pidfd);
  err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(p[0]);
  if (pid < 0) {
    close(p[1]);
    return err ? err : EIO;
  }
  g->pid = pid;
  g->pidfd = pidfd;
  g->pipe_w = p[1];
  return 0;
}

int bg_guardian_reap(bg_guardian *g) {
  if (g->pidfd < 0) return 1;
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(P_PIDFD, (id_t)g->pidfd, &si, WEXITED | WNOHANG | __WALL) < 0) {
    if (errno != ECHILD) return 0; /* ECHILD: someone else reaped it */
  } else if (si.si_pid == 0) {
    return 0;
  }
  close(g->pidfd);
  g->pidfd = -1;
  g->pid = -1;
  if (g->pipe_w >= 0) close(g->pipe_w);
  g->pipe_w = -1;
  return 1;
}

void bg_guardian_stop(bg_guardian *g) {
  if (g->pipe_w >= 0) {
    char bye = 'q'; /* stand down: not a death of the host */
    while (write(g->pipe_w, &bye, 1) < 0 && errno == EINTR) {
    }
    close(g->pipe_w);
  }
  g->pipe_w = -1;
  if (g->pidfd >= 0) {
    struct pollfd p = {g->pidfd, POLLIN, 0};
    while (poll(&p, 1, 2000) < 0 && errno == EINTR) {
    }
    if (!(p.revents & POLLIN)) bg_pidfd_signal(g->pidfd, SIGKILL); /* stuck */
    siginfo_t si;
    while (waitid(P_PIDFD, (id_t)g->pidfd, &si, WEXITED | __WALL) < 0 &&
           errno == EINTR) {
    }
    close(g->pidfd);
  }
  g->pidfd = -1;
  g->pid = -1;
  if (g->slots) munmap(g->slots, g->cap * sizeof(int32_t));
  if (g->memfd >= 0) close(g->memfd);
  free(g->free);
  bg_guardian_init(g);
}
