/*
 * procscan.c: the process table in one pass, for the engine's CPU and
 * memory figures (bgproc.lib.usage).
 *
 *   sys.proc_scan()   -> pids, pgids, cpu_ticks, rss_pages
 *   sys.clock_ticks() -> ticks per second (/proc's unit of CPU time)
 *   sys.page_size()   -> bytes per page (/proc's unit of RSS)
 */
#define _GNU_SOURCE
#include "readers.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct stat_row {
  lua_Integer pid, pgid, ticks, rss;
} stat_row;

/* /proc/<name>/stat of a live process into r: 1, or 0 when it is gone,
 * a zombie or unreadable (it may have exited since the readdir). */
static int read_stat(int procfd, const char *name, stat_row *r) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "%s/stat", name);
  int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf - 1)) < 0 && errno == EINTR) {
  }
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  /* comm may hold spaces and parentheses: the fields start after the
   * last ')'. f[0] is field 3 (state), the rest integers. */
  const char *s = strrchr(buf, ')');
  if (s == NULL || s[1] != ' ' || s[2] == 'Z' || s[2] == 'X') return 0;
  s += 3;
  long long f[22];
  for (int i = 1; i < 22; i++) {
    char *end;
    f[i] = strtoll(s, &end, 10);
    if (end == s) return 0;
    s = end;
  }
  r->pid = strtol(name, NULL, 10);
  r->pgid = f[2];            /* field 5 */
  r->ticks = f[11] + f[12];  /* utime + stime, fields 14 and 15 */
  r->rss = f[21];            /* field 24 */
  return 1;
}

/* sys.proc_scan() -> pids, pgids, cpu_ticks, rss_pages: four arrays, one
 * entry per live (not zombie) process, from one readdir of /proc and one
 * read of each /proc/<pid>/stat | nil, msg, errname */
int bg_sys_proc_scan(lua_State *L) {
  lua_settop(L, 0);
  bg_handle *h = bg_sys_handle(L);
  if (bg_sys_handle_opendir(h, AT_FDCWD, "/proc") < 0)
    return bg_sys_fail(L, errno, "open /proc");
  for (int i = 0; i < 4; i++) lua_newtable(L); /* 2..5 */
  lua_Integer n = 0;
  struct dirent *e;
  while ((e = readdir(h->dir)) != NULL) {
    stat_row r;
    if (!isdigit((unsigned char)e->d_name[0]) || !read_stat(dirfd(h->dir), e->d_name, &r))
      continue;
    n++;
    lua_Integer v[4] = {r.pid, r.pgid, r.ticks, r.rss};
    for (int i = 0; i < 4; i++) {
      lua_pushinteger(L, v[i]);
      lua_rawseti(L, 2 + i, n);
    }
  }
  bg_sys_handle_close(h);
  return 4;
}

int bg_sys_clock_ticks(lua_State *L) {
  lua_pushinteger(L, sysconf(_SC_CLK_TCK));
  return 1;
}

int bg_sys_page_size(lua_State *L) {
  lua_pushinteger(L, sysconf(_SC_PAGESIZE));
  return 1;
}
