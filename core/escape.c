/*
 * escape.c: processes that belong to a job but left its process group
 * (setsid, a daemon's double fork), and the job's cgroup leaf.
 *
 * With a leaf, belonging is exact: whatever the kernel lists in it. Without
 * one, it is the descendants (by /proc ppid links) of the group's members:
 * a process whose parent chain was already broken (the middle process of
 * a double fork has exited) cannot be told from anyone else's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bgproc.h"
#include "cgroup.h"
#include "fds.h"
#include "group.h"

static int has_cgroup(const bg_job *j) {
  return j->cg_name[0] != '\0' && j->loop->cg_fd >= 0;
}

void bg_job_kill_cgroup(bg_job *j, long wait_ms) {
  if (!has_cgroup(j)) return;
  int fd = j->loop->cg_fd;
  if (bg_cgroup_populated(fd, j->cg_name) <= 0) return;
  bg_cgroup_kill(fd, j->cg_name);
  if (wait_ms > 0) bg_cgroup_wait_empty(fd, j->cg_name, wait_ms);
}

void bg_job_drop_cgroup(bg_job *j) {
  if (j->cg_name[0] == '\0') return;
  if (j->loop->cg_fd < 0 ||
      unlinkat(j->loop->cg_fd, j->cg_name, AT_REMOVEDIR) == 0 ||
      errno == ENOENT)
    j->cg_name[0] = '\0'; /* EBUSY: something still runs there */
}

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

/* Without a leaf: mark the group, then its descendants, to a fixpoint. */
static void mark_descendants(proc_table *t, pid_t pgid) {
  for (size_t i = 0; i < t->n; i++)
    if (t->e[i].pgrp == pgid && t->e[i].sid == pgid) t->e[i].mark = 1;
  for (int changed = 1; changed;) {
    changed = 0;
    for (size_t i = 0; i < t->n; i++) {
      if (t->e[i].mark) continue;
      for (size_t k = 0; k < t->n; k++)
        if (t->e[k].mark && t->e[k].pid == t->e[i].ppid) {
          t->e[i].mark = 2;
          changed = 1;
          break;
        }
    }
  }
}

/* With a leaf: everything listed there that is not in the group. */
static int scan_leaf(proc_table *t, int procfd, const bg_job *j) {
  size_t cap = 256;
  for (;;) {
    pid_t *pids = malloc(cap * sizeof *pids);
    if (pids == NULL) return -1;
    long n = bg_cgroup_pids(j->loop->cg_fd, j->cg_name, pids, cap);
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
        t->e[i].mark = (t->e[i].pgrp == j->pid && t->e[i].sid == j->pid) ? 1 : 2;
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

/* job:escaped() -> { {pid=, command=}, ... }: live processes of the job
 * outside its process group. */
int bg_job_escaped(lua_State *L, bg_job *j) {
  proc_table t = {NULL, 0, 0};
  int procfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (procfd < 0) return bg_fail(L, errno, "open /proc");
  int rc = 0;
  if (has_cgroup(j)) {
    rc = scan_leaf(&t, procfd, j);
  } else if (j->pid > 0 && !j->group_empty) {
    rc = scan_all(&t, procfd);
    if (rc == 0) mark_descendants(&t, j->pid);
  }
  if (rc < 0) {
    int e = errno ? errno : EIO;
    free(t.e);
    close(procfd);
    return bg_fail(L, e, "list the processes of job %d", (int)j->pid);
  }
  lua_newtable(L);
  lua_Integer k = 0;
  for (size_t i = 0; i < t.n; i++) {
    if (t.e[i].mark != 2) continue;
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, t.e[i].pid);
    lua_setfield(L, -2, "pid");
    push_command(L, procfd, t.e[i].pid);
    lua_setfield(L, -2, "command");
    lua_rawseti(L, -2, ++k);
  }
  free(t.e);
  close(procfd);
  /* An emptied leaf of a finished group is no longer needed. */
  if (k == 0 && j->group_empty && has_cgroup(j) &&
      bg_cgroup_populated(j->loop->cg_fd, j->cg_name) == 0)
    bg_job_drop_cgroup(j);
  return 1;
}
