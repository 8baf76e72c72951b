/*
 * group.c: /proc scan and pidfd-verified group signalling (see group.h).
 */
#define _GNU_SOURCE
#include "group.h"

#include "fds.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Set once a pidfd call reports ENOSYS (old kernels, valgrind): from then
 * on callers fall back to kill() on a pid they have just verified. */
static volatile int no_pidfd_open, no_pidfd_signal;

int bg_pidfd_open(pid_t pid) {
  if (no_pidfd_open) {
    errno = ENOSYS;
    return -1;
  }
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0 && errno == ENOSYS) no_pidfd_open = 1;
  return fd;
}

int bg_pidfd_signal(int pidfd, int sig) {
  if (no_pidfd_signal) {
    errno = ENOSYS;
    return -1;
  }
  int rc = (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
  if (rc < 0 && errno == ENOSYS) no_pidfd_signal = 1;
  return rc;
}

static long parse_long(const char **pp) {
  const char *p = *pp;
  long v = 0;
  int neg = 0;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  while (*p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
  if (*p == ' ') p++;
  *pp = p;
  return neg ? -v : v;
}

/* Parse "/proc/<pid>/stat": state, ppid, pgrp and session come after the last
 * ')' of the command name, which may itself contain spaces and parentheses.
 * Returns 0; -1 if the process is gone (or the entry unreadable); -2 with
 * errno set when we are out of fds or memory (the scan cannot be trusted). */
int bg_proc_stat(int procfd, const char *name, char *state, pid_t *ppid,
                 pid_t *pgrp, pid_t *sid) {
  char path[64];
  size_t len = strlen(name);
  if (len + 6 > sizeof path) return -1;
  memcpy(path, name, len);
  memcpy(path + len, "/stat", 6);
  int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return (errno == EMFILE || errno == ENFILE || errno == ENOMEM) ? -2 : -1;
  char buf[512];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char *p = strrchr(buf, ')');
  if (p == NULL || p[1] != ' ') return -1;
  p += 2;
  *state = *p;
  p += 2;              /* "S " */
  *ppid = (pid_t)parse_long(&p);
  *pgrp = (pid_t)parse_long(&p);
  *sid = (pid_t)parse_long(&p);
  return 0;
}

static int read_stat(int procfd, const char *name, char *state, pid_t *pgrp,
                     pid_t *sid) {
  pid_t ppid;
  return bg_proc_stat(procfd, name, state, &ppid, pgrp, sid);
}

static int pid_of_name(const char *s, pid_t *pid) {
  long v = 0;
  if (*s == '\0') return 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return 0;
    v = v * 10 + (*s - '0');
    if (v > INT32_MAX) return 0;
  }
  *pid = (pid_t)v;
  return 1;
}

static int in_set(const pid_t *a, size_t n, pid_t x) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (a[mid] == x) return 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return 0;
}

/* Process group of /proc entry `name`, or -1 (gone, zombie, unreadable,
 * or not in a session of the same id). */
static pid_t pgid_at(int procfd, const char *name) {
  char state;
  pid_t pgrp, sid;
  int rc = read_stat(procfd, name, &state, &pgrp, &sid);
  if (rc < 0 || state == 'Z' || state == 'X' || sid != pgrp) return -1;
  return pgrp;
}

typedef void member_fn(int procfd, const char *name, pid_t pid, pid_t pgid,
                       void *ud);

/*
 * For every live (non-zombie) process whose process group is one of the
 * `n` ids in `sorted_pgids` (ascending) and whose session has the same id
 * (jobs lead their sessions), call fn with its /proc entry. Returns 0, or
 * an errno value if /proc could not be read completely (out of fds...).
 */
static int proc_scan(const pid_t *sorted_pgids, size_t n, member_fn *fn,
                     void *ud) {
  int procfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (procfd < 0) return errno;
  int failed = 0;
  char buf[8192] __attribute__((aligned(8)));
  while (!failed) {
    long nread = syscall(SYS_getdents64, procfd, buf, sizeof buf);
    if (nread < 0) {
      int e = errno;
      close(procfd);
      return e;
    }
    if (nread == 0) break;
    for (long off = 0; off < nread && !failed;) {
      struct bg_dirent64 *d = (struct bg_dirent64 *)(buf + off);
      off += d->d_reclen;
      pid_t pid, pgrp, sid;
      char state;
      if (!pid_of_name(d->d_name, &pid)) continue;
      int rc = read_stat(procfd, d->d_name, &state, &pgrp, &sid);
      if (rc == -2 && !failed) failed = errno;
      if (rc < 0) continue;
      if (state == 'Z' || state == 'X') continue;
      /* A job leads its session: its members are in group P of session P.
       * A recycled P in someone else's session is not ours. */
      if (sid == pgrp && in_set(sorted_pgids, n, pgrp))
        fn(procfd, d->d_name, pid, pgrp, ud);
    }
  }
  close(procfd);
  return failed;
}

struct signal_ctx {
  const pid_t *pgids;
  size_t n;
  int sig;
  long hits;
  int err; /* a member that could not be checked or signalled */
};

static void signal_member(int procfd, const char *name, pid_t pid, pid_t pgid,
                          void *ud) {
  struct signal_ctx *c = ud;
  int pidfd = bg_pidfd_open(pid);
  if (pidfd < 0) {
    /* Without pidfds only a check right before kill() is possible. */
    if (errno == ENOSYS) {
      if (pgid_at(procfd, name) == pgid && kill(pid, c->sig) == 0) c->hits++;
    } else if (errno != ESRCH && !c->err) {
      c->err = errno; /* EMFILE...: a live member we could not reach */
    }
    return;
  }
  /* The pidfd now pins this exact process: check it is still ours. */
  if (pgid_at(procfd, name) == pgid) {
    int rc = bg_pidfd_signal(pidfd, c->sig);
    if (rc < 0 && errno == ENOSYS) rc = kill(pid, c->sig);
    if (rc == 0) c->hits++;
  }
  close(pidfd);
}

long bg_group_signal_verified(const pid_t *sorted_pgids, size_t n, int sig) {
  struct signal_ctx c = {sorted_pgids, n, sig, 0, 0};
  int err = proc_scan(sorted_pgids, n, signal_member, &c);
  if (!err && c.hits == 0) err = c.err;
  if (err) {
    errno = err;
    return -1;
  }
  return c.hits;
}

static void count_member(int procfd, const char *name, pid_t pid, pid_t pgid,
                         void *ud) {
  (void)procfd;
  (void)name;
  (void)pid;
  (void)pgid;
  ++*(long *)ud;
}

long bg_group_count(pid_t pgid) {
  long count = 0;
  int err = proc_scan(&pgid, 1, count_member, &count);
  if (err) {
    errno = err;
    return -1;
  }
  return count;
}
