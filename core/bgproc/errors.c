/*
 * errors.c: the "nil, message, errno-name" convention (see errors.h).
 */
#define _GNU_SOURCE
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *bg_errname(int err) {
  const char *name = strerrorname_np(err);
  return name ? name : "EIO";
}

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
