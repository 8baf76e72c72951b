/*
 * escape.c: processes that belong to a job but left its process group
 * (setsid, a daemon's double fork); see escape.h.
 *
 * With a leaf, belonging is exact: whatever the kernel lists in it. Without
 * one, it is the descendants (by /proc ppid links) of the group's members:
 * a process whose parent chain was already broken (the middle process of
 * a double fork has exited) cannot be told from anyone else's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "escape.h"

#include "cgroup.h"
#include "errors.h"
#include "fds.h"
#include "group.h"

typedef struct proc_entry {
  pid_t pid, ppid, pgrp, sid;
  int mark; /* 1: the job's group, 2: escaped */
} proc_entry;

typedef struct proc_table {
  proc_entry *e;
  size_t n, cap;
} proc_table;

static int table_add(proc_table *t, const proc_entry *p) {
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 256;
    proc_entry *e = realloc(t->e, cap * sizeof *e);
    if (e == NULL) return -1;
    t->e = e;
    t->cap = cap;
  }
  t->e[t->n++] = *p;
  return 0;
}

/* Stat one live process into the table (zombies and the gone skipped). */
static int add_pid(proc_table *t, int procfd, const char *name, pid_t pid) {
  proc_entry p = {pid, 0, 0, 0, 0};
  char state;
  int rc = bg_proc_stat(procfd, name, &state, &p.ppid, &p.pgrp, &p.sid);
  if (rc == -2) return -1;
  if (rc < 0 || state == 'Z' || state == 'X') return 0;
  return table_add(t, &p);
}

/* Every live process, with its links. */
static int scan_all(proc_table *t, int procfd) {
  int dir = openat(procfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  char buf[8192] __attribute__((aligned(8)));
  long n;
  int rc = 0;
  while (rc == 0 && (n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
    for (long off = 0; off < n && rc == 0;) {
      struct bg_dirent64 *d = (struct bg_dirent64 *)(buf + off);
      off += d->d_reclen;
      char *end;
      long pid = strtol(d->d_name, &end, 10);
      if (*end != '\0' || pid <= 0) continue;
      rc = add_pid(t, procfd, d->d_name, (pid_t)pid);
    }
  }
  close(dir);
  return rc;
}

/* Entry indexes ordered by parent pid: a process's children are one run,
 * found by binary search. */
static int by_ppid(const void *a, const void *b, void *table) {
  const proc_table *t = table;
  pid_t x = t->e[*(const size_t *)a].ppid;
  pid_t y = t->e[*(const size_t *)b].ppid;
  return (x > y) - (x < y);
}

static size_t first_child(const proc_table *t, const size_t *order, pid_t ppid) {
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (t->e[order[mid]].ppid < ppid) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static int member(const proc_entry *e, pid_t pgid) {
  return e->pgrp == pgid && e->sid == pgid;
}

/* Without a leaf: mark (with `stamp` in seen[]) the group's members and,
 * breadth first, all their descendants. queue has room for t->n. */
static void walk(const proc_table *t, const size_t *order, pid_t pgid,
                 unsigned *seen, unsigned stamp, size_t *queue) {
  size_t qn = 0;
  for (size_t i = 0; i < t->n; i++)
    if (member(&t->e[i], pgid)) {
      seen[i] = stamp;
      queue[qn++] = i;
    }
  for (size_t q = 0; q < qn; q++) {
    pid_t parent = t->e[queue[q]].pid;
    for (size_t k = first_child(t, order, parent);
         k < t->n && t->e[order[k]].ppid == parent; k++)
      if (seen[order[k]] != stamp) {
        seen[order[k]] = stamp;
        queue[qn++] = order[k];
      }
  }
}

/* With a leaf: everything listed there that is not in the group. */
static int scan_leaf(proc_table *t, int procfd, const bg_job *j) {
  int dirfd;
  const char *leaf = bg_job_leaf(j, &dirfd);
  pid_t pgid = bg_job_pid(j);
  size_t cap = 256;
  for (;;) {
    pid_t *pids = malloc(cap * sizeof *pids);
    if (pids == NULL) return -1;
    long n = bg_cgroup_pids(dirfd, leaf, pids, cap);
    if (n < 0 && errno == ENOENT) n = 0; /* the leaf is gone: nothing left */
    if (n < 0 || (size_t)n < cap) {
      int rc = n < 0 ? -1 : 0;
      for (long i = 0; i < n && rc == 0; i++) {
        char name[16];
        char *p = name + sizeof name;
        *--p = '\0';
        for (pid_t v = pids[i]; v > 0; v /= 10) *--p = (char)('0' + v % 10);
        rc = add_pid(t, procfd, p, pids[i]);
      }
      int e = errno;
      free(pids);
      errno = e;
      for (size_t i = 0; i < t->n; i++)
        t->e[i].mark = member(&t->e[i], pgid) ? 1 : 2;
      return rc;
    }
    free(pids);
    cap *= 2;
  }
}

/* The command line of a process, NULs as spaces; its name if empty. */
static void push_command(lua_State *L, int procfd, pid_t pid) {
  char path[32], buf[256];
  ssize_t n = 0;
  snprintf(path, sizeof path, "%d/cmdline", (int)pid);
  int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
  }
  if (n <= 0) {
    snprintf(path, sizeof path, "%d/comm", (int)pid);
    fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
    n = 0;
    if (fd >= 0) {
      n = read(fd, buf, sizeof buf - 1);
      close(fd);
    }
    if (n < 0) n = 0;
  }
  while (n > 0 && (buf[n - 1] == '\0' || buf[n - 1] == '\n')) n--;
  for (ssize_t i = 0; i < n; i++)
    if (buf[i] == '\0') buf[i] = ' ';
  lua_pushlstring(L, buf, (size_t)n);
}

static void push_entry(lua_State *L, int procfd, pid_t pid, lua_Integer k) {
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, pid);
  lua_setfield(L, -2, "pid");
  push_command(L, procfd, pid);
  lua_setfield(L, -2, "command");
  lua_rawseti(L, -2, k);
}

/* An emptied leaf of a finished group is no longer needed. */
static void drop_if_empty(bg_job *j, lua_Integer found) {
  bg_job_status st;
  int dirfd;
  const char *leaf = bg_job_leaf(j, &dirfd);
  bg_job_status_get(j, &st);
  if (found == 0 && st.group_empty && leaf && bg_cgroup_populated(dirfd, leaf) == 0)
    bg_job_drop_cgroup(j);
}

/* Push the list of job j (from its leaf). */
static int push_leaf(lua_State *L, int procfd, bg_job *j) {
  proc_table t = {NULL, 0, 0};
  if (scan_leaf(&t, procfd, j) < 0) {
    free(t.e);
    return -1;
  }
  lua_newtable(L);
  lua_Integer k = 0;
  for (size_t i = 0; i < t.n; i++)
    if (t.e[i].mark == 2) push_entry(L, procfd, t.e[i].pid, ++k);
  free(t.e);
  drop_if_empty(j, k);
  return 0;
}

/* Is process pid (pinned by a pidfd the caller holds) in job j's leaf?
 * Its "0::" line of /proc/<pid>/cgroup ends with /<loop dir>/<leaf>. */
static int in_leaf(int procfd, pid_t pid, const bg_job *j) {
  char path[32], buf[1024], want[PATH_MAX + 64];
  if (!bg_job_cgroup_path(j, want, sizeof want)) return 0;
  const char *end = strrchr(want, '/');
  const char *from = want;
  for (const char *p = want; p < end; p++) /* the loop dir's '/' */
    if (*p == '/') from = p;
  snprintf(path, sizeof path, "%d/cgroup", (int)pid);
  int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  char *line = strncmp(buf, "0::", 3) == 0 ? buf : strstr(buf, "\n0::");
  if (line == NULL) return 0;
  if (*line == '\n') line++;
  line[strcspn(line, "\n")] = '\0';
  size_t len = strlen(from), have = strlen(line);
  return len <= have && strcmp(line + have - len, from) == 0;
}

long bg_escaped_signal(bg_job *j, int sig) {
  int dirfd;
  if (bg_job_leaf(j, &dirfd) == NULL) return 0;
  int procfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (procfd < 0) return -1;
  proc_table t = {NULL, 0, 0};
  long hits = scan_leaf(&t, procfd, j) < 0 ? -1 : 0;
  for (size_t i = 0; hits >= 0 && i < t.n; i++) {
    if (t.e[i].mark != 2) continue;
    pid_t pid = t.e[i].pid;
    int pidfd = bg_pidfd_open(pid);
    if (pidfd < 0 && errno != ENOSYS) continue; /* gone already */
    /* Listed a moment ago; pinned now (with pidfds), so checked again
     * before the signal: a reused pid is never hit. */
    if (in_leaf(procfd, pid, j)) {
      int rc = pidfd >= 0 ? bg_pidfd_signal(pidfd, sig) : -1;
      if (pidfd < 0 || (rc < 0 && errno == ENOSYS)) rc = kill(pid, sig);
      if (rc == 0) hits++;
    }
    if (pidfd >= 0) close(pidfd);
  }
  int e = errno;
  free(t.e);
  close(procfd);
  errno = e;
  return hits;
}

/* The whole process table with its parent index, read once for every job
 * without a leaf. */
typedef struct walk_state {
  proc_table t;
  size_t *order, *queue;
  unsigned *seen;
  unsigned stamp;
  int ready;
} walk_state;

static int walk_ready(walk_state *w, int procfd) {
  if (w->ready) return 0;
  if (scan_all(&w->t, procfd) < 0) return -1;
  size_t n = w->t.n ? w->t.n : 1;
  w->order = malloc(n * sizeof *w->order);
  w->queue = malloc(n * sizeof *w->queue);
  w->seen = calloc(n, sizeof *w->seen);
  if (!w->order || !w->queue || !w->seen) {
    errno = ENOMEM;
    return -1;
  }
  for (size_t i = 0; i < w->t.n; i++) w->order[i] = i;
  qsort_r(w->order, w->t.n, sizeof *w->order, by_ppid, &w->t);
  w->ready = 1;
  return 0;
}

static void walk_free(walk_state *w) {
  free(w->t.e);
  free(w->order);
  free(w->queue);
  free(w->seen);
}

static int push_walk(lua_State *L, int procfd, walk_state *w, bg_job *j) {
  bg_job_status st;
  bg_job_status_get(j, &st);
  lua_newtable(L);
  if (st.pid <= 0 || st.group_empty) return 0; /* no members to start from */
  if (walk_ready(w, procfd) < 0) return -1;
  walk(&w->t, w->order, st.pid, w->seen, ++w->stamp, w->queue);
  lua_Integer k = 0;
  for (size_t i = 0; i < w->t.n; i++)
    if (w->seen[i] == w->stamp && !member(&w->t.e[i], st.pid))
      push_entry(L, procfd, w->t.e[i].pid, ++k);
  return 0;
}

int bg_escaped_push(lua_State *L, bg_job *const *jobs, int n) {
  int procfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (procfd < 0) return bg_fail(L, errno, "open /proc");
  walk_state w;
  memset(&w, 0, sizeof w);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    int dirfd;
    bg_job *j = jobs[i];
    int rc = bg_job_leaf(j, &dirfd) ? push_leaf(L, procfd, j) : push_walk(L, procfd, &w, j);
    if (rc < 0) {
      int e = errno ? errno : EIO;
      walk_free(&w);
      close(procfd);
      return bg_fail(L, e, "list the processes of job %d", (int)bg_job_pid(j));
    }
    lua_rawseti(L, -2, i + 1);
  }
  walk_free(&w);
  close(procfd);
  return 1;
}
