/*
 * cgroup.c: per-loop and per-job cgroup v2 directories (see cgroup.h).
 */
#define _GNU_SOURCE
#include "cgroup.h"

#include "fds.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- async-signal-safe helpers --------------------------------------- */

/* "<name>/<file>" (or just file when name is NULL) into buf. */
static const char *join(char *buf, size_t cap, const char *name,
                        const char *file) {
  size_t n = 0, fl = strlen(file);
  if (name != NULL) {
    size_t nl = strlen(name);
    if (nl + fl + 2 > cap) return NULL;
    memcpy(buf, name, nl);
    buf[nl] = '/';
    n = nl + 1;
  } else if (fl + 1 > cap) {
    return NULL;
  }
  memcpy(buf + n, file, fl + 1);
  return buf;
}

static int open_file(int dirfd, const char *name, const char *file, int flags) {
  char path[256];
  if (join(path, sizeof path, name, file) == NULL) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return openat(dirfd, path, flags | O_CLOEXEC);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/* Call fn(pid, ud) for each pid in <dirfd>/<name>/cgroup.procs. Returns
 * how many were listed, or -1 with errno. */
static long each_pid(int dirfd, const char *name, void (*fn)(pid_t, void *),
                     void *ud) {
  int fd = open_file(dirfd, name, "cgroup.procs", O_RDONLY);
  if (fd < 0) return -1;
  char buf[4096];
  long count = 0, v = 0;
  int digits = 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      errno = e;
      return -1;
    }
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] >= '0' && buf[i] <= '9') {
        v = v * 10 + (buf[i] - '0');
        digits = 1;
      } else {
        if (digits && v > 0) {
          fn((pid_t)v, ud);
          count++;
        }
        v = 0;
        digits = 0;
      }
    }
  }
  if (digits && v > 0) {
    fn((pid_t)v, ud);
    count++;
  }
  close(fd);
  return count;
}

static void kill_pid(pid_t pid, void *ud) {
  (void)ud;
  /* Listed in our own leaf a moment ago: a pid is reused only after its
   * process is reaped, and a pid in cgroup.procs is not yet reaped. */
  kill(pid, SIGKILL);
}

/* Call fn(dirfd_of_parent, child_name) for each subdirectory of
 * <dirfd>/<name>. */
static void each_child(int dirfd, const char *name,
                       void (*fn)(int, const char *, int), int depth) {
  int fd = openat(dirfd, name ? name : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[4096] __attribute__((aligned(8)));
  long n;
  while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
    for (long off = 0; off < n;) {
      struct bg_dirent64 *d = (struct bg_dirent64 *)(buf + off);
      off += d->d_reclen;
      if (d->d_type != DT_DIR || strcmp(d->d_name, ".") == 0 ||
          strcmp(d->d_name, "..") == 0)
        continue;
      fn(fd, d->d_name, depth);
    }
  }
  close(fd);
}

/* Without cgroup.kill: every listed pid, then the children, a few levels. */
static void kill_listed(int dirfd, const char *name, int depth) {
  each_pid(dirfd, name, kill_pid, NULL);
  if (depth < 3) each_child(dirfd, name, kill_listed, depth + 1);
}

int bg_cgroup_kill(int dirfd, const char *name) {
  if (dirfd < 0) {
    errno = EBADF;
    return -1;
  }
  int fd = open_file(dirfd, name, "cgroup.kill", O_WRONLY);
  if (fd >= 0) {
    ssize_t n;
    while ((n = write(fd, "1", 1)) < 0 && errno == EINTR) {
    }
    int e = errno;
    close(fd);
    if (n == 1) return 0;
    errno = e;
    return -1;
  }
  if (errno != ENOENT) return -1;
  /* No cgroup.kill (kernels before 5.14), or no such cgroup. New
   * processes forked between passes are caught by the next pass. */
  for (int pass = 0; pass < 5; pass++) {
    kill_listed(dirfd, name, 0);
    if (bg_cgroup_populated(dirfd, name) <= 0) break;
    sleep_ms(2);
  }
  return bg_cgroup_populated(dirfd, name) < 0 ? -1 : 0;
}

int bg_cgroup_populated(int dirfd, const char *name) {
  int fd = open_file(dirfd, name, "cgroup.events", O_RDONLY);
  if (fd < 0) return -1;
  char buf[256];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf - 1)) < 0 && errno == EINTR) {
  }
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char *p = strstr(buf, "populated ");
  if (p == NULL) return -1;
  return p[10] == '1';
}

int bg_cgroup_wait_empty(int dirfd, const char *name, long ms) {
  for (long waited = 0;; waited += 5) {
    if (bg_cgroup_populated(dirfd, name) <= 0) return 1;
    if (waited >= ms) return 0;
    sleep_ms(5);
  }
}

static void remove_tree(int dirfd, const char *name, int depth) {
  if (depth < 3) each_child(dirfd, name, remove_tree, depth + 1);
  unlinkat(dirfd, name, AT_REMOVEDIR);
}

void bg_cgroup_clear(int dirfd) {
  if (bg_cgroup_populated(dirfd, NULL) != 0) { /* populated, or unknown */
    bg_cgroup_kill(dirfd, NULL);
    bg_cgroup_wait_empty(dirfd, NULL, 1000);
  }
  each_child(dirfd, NULL, remove_tree, 0);
}

int bg_cgroup_mkleaf(int dirfd, const char *name) {
  return mkdirat(dirfd, name, 0755);
}

int bg_cgroup_procs_fd(int dirfd, const char *name) {
  return open_file(dirfd, name, "cgroup.procs", O_WRONLY);
}

struct pid_list {
  pid_t *out;
  size_t cap, n;
};

static void store_pid(pid_t pid, void *ud) {
  struct pid_list *l = ud;
  if (l->n < l->cap) l->out[l->n++] = pid;
}

long bg_cgroup_pids(int dirfd, const char *name, pid_t *out, size_t cap) {
  struct pid_list l = {out, cap, 0};
  if (each_pid(dirfd, name, store_pid, &l) < 0) return -1;
  return (long)l.n;
}

/* ---- finding our cgroup (host side: stdio and malloc are fine) -------- */

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s) {
  char *w = s;
  for (char *r = s; *r;) {
    if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' &&
        r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
      *w++ = (char)(((r[1] - '0') << 6) | ((r[2] - '0') << 3) | (r[3] - '0'));
      r += 4;
    } else {
      *w++ = *r++;
    }
  }
  *w = '\0';
}

/* Our path in the v2 hierarchy ("0::/a/b" in /proc/self/cgroup). */
static int own_cgroup(char *out, size_t cap) {
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (f == NULL) return -1;
  char *line = NULL;
  size_t len = 0;
  int found = -1;
  while (getline(&line, &len, f) > 0) {
    if (strncmp(line, "0::", 3) != 0) continue;
    line[strcspn(line, "\n")] = '\0';
    if (strlen(line + 3) < cap) {
      strcpy(out, line + 3);
      found = 0;
    }
    break;
  }
  free(line);
  fclose(f);
  return found;
}

/* The directory of cgroup path `cg` under a cgroup2 mount: the mount's
 * root (field 4) must be a prefix of cg. */
static int find_mount(const char *cg, char *dir, size_t cap) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (f == NULL) return -1;
  char *line = NULL;
  size_t len = 0;
  int found = -1;
  while (found < 0 && getline(&line, &len, f) > 0) {
    char *sep = strstr(line, " - ");
    if (sep == NULL || strncmp(sep + 3, "cgroup2 ", 8) != 0) continue;
    char *save = NULL, *field[5];
    int i = 0;
    for (char *t = strtok_r(line, " ", &save); t && i < 5;
         t = strtok_r(NULL, " ", &save))
      field[i++] = t;
    if (i < 5) continue;
    char *root = field[3], *mnt = field[4];
    unescape(root);
    unescape(mnt);
    size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
    if (strncmp(cg, root, rl) != 0 || (cg[rl] != '/' && cg[rl] != '\0'))
      continue;
    const char *rest = cg + rl;
    if (strcmp(rest, "/") == 0) rest = "";
    if ((size_t)snprintf(dir, cap, "%s%s", mnt, rest) < cap) found = 0;
  }
  free(line);
  fclose(f);
  return found;
}

/* "<prefix><digits>" with an optional "-<digits>" after (bgproc-1-0). */
static int named(const char *s, const char *prefix, int parts) {
  size_t len = strlen(s), pl = strlen(prefix);
  if (len <= pl || strncmp(s, prefix, pl) != 0) return 0;
  int seen = 0, digits = 0;
  for (size_t i = pl; i < len; i++) {
    if (s[i] >= '0' && s[i] <= '9') {
      digits = 1;
    } else if (s[i] == '-' && digits && seen + 1 < parts) {
      seen++;
      digits = 0;
    } else {
      return 0;
    }
  }
  return digits && seen + 1 == parts;
}

/* Directory `name` of a host that died without a guardian to clean up
 * (one started with guardian = false): removed when empty and its pid no
 * longer exists. A populated leaf stays (rmdir refuses). */
static void remove_if_stale(int dirfd, const char *name, int depth) {
  (void)depth;
  if (!named(name, "bgproc-", 2)) return;
  long pid = strtol(name + 7, NULL, 10);
  if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
    return;
  remove_tree(dirfd, name, 0);
}

int bg_cgroup_open_loop_dir(char *path, size_t path_cap, char *why,
                            size_t why_cap) {
  static unsigned seq; /* loops of this process */
  char cg[1024], base[1024];
  if (own_cgroup(cg, sizeof cg) < 0) {
    snprintf(why, why_cap, "no cgroup v2 entry in /proc/self/cgroup");
    return -1;
  }
  if (find_mount(cg, base, sizeof base) < 0) {
    snprintf(why, why_cap, "no cgroup2 mount holds our cgroup %s", cg);
    return -1;
  }
  int basefd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (basefd < 0) {
    snprintf(why, why_cap, "cannot open %s", base);
    return -1;
  }
  each_child(basefd, NULL, remove_if_stale, 0);
  char name[64];
  int made = -1, err = 0;
  for (int tries = 0; tries < 100 && made < 0; tries++) {
    snprintf(name, sizeof name, "bgproc-%d-%u", (int)getpid(), seq++);
    made = mkdirat(basefd, name, 0755);
    err = errno;
    if (made < 0 && err != EEXIST) break;
  }
  if (made < 0) {
    close(basefd);
    snprintf(why, why_cap, "cannot create a directory in %s: %s", base,
             strerror(err));
    return -1;
  }
  int fd = openat(basefd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  err = errno;
  if (fd < 0) unlinkat(basefd, name, AT_REMOVEDIR);
  close(basefd);
  if (fd < 0) {
    snprintf(why, why_cap, "cannot open %s/%s: %s", base, name, strerror(err));
    return -1;
  }
  /* A directory that cannot take processes is no use (no cgroup.procs
   * we may write: a read-only or undelegated hierarchy). */
  if (faccessat(fd, "cgroup.procs", W_OK, 0) < 0) {
    err = errno;
    close(fd);
    snprintf(path, path_cap, "%s/%s", base, name);
    rmdir(path);
    snprintf(why, why_cap, "%s/cgroup.procs is not writable: %s", name,
             strerror(err));
    return -1;
  }
  snprintf(path, path_cap, "%s/%s", base, name);
  return bg_fd_above_stdio(fd);
}

int bg_cgroup_leave_job(void) {
  char cg[1024], dir[1024];
  if (own_cgroup(cg, sizeof cg) < 0 || find_mount(cg, dir, sizeof dir) < 0)
    return 0;
  char *leaf = strrchr(dir, '/');
  if (leaf == NULL || !named(leaf + 1, "job-", 1)) return 0;
  *leaf = '\0';
  char *loop = strrchr(dir, '/');
  if (loop == NULL || !named(loop + 1, "bgproc-", 2)) return 0;
  *loop = '\0';
  size_t len = strlen(dir);
  if (len + sizeof "/cgroup.procs" > sizeof dir) return 0;
  memcpy(dir + len, "/cgroup.procs", sizeof "/cgroup.procs");
  int fd = open(dir, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, "0", 1);
  int e = errno;
  close(fd);
  errno = e;
  return n == 1 ? 1 : -1;
}
