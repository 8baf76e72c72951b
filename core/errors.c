/*
 * errors.c: the "nil, message, errno-name" convention, and clocks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bgproc.h"

const char *bg_errname(int err) {
  const char *name = strerrorname_np(err);
  return name ? name : "EIO";
}

/* Push nil, "ENAME: what: strerror", "ENAME" and return 3. */
int bg_fail(lua_State *L, int err, const char *fmt, ...) {
  char what[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s: %s", bg_errname(err), what, strerror(err));
  lua_pushstring(L, bg_errname(err));
  return 3;
}

int64_t bg_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double bg_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000);
}
