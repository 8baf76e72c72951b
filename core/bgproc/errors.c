/*
 * errors.c: the "nil, message, errno-name" convention (see errors.h).
 */
#define _GNU_SOURCE
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* "ENOENT" for ENOENT; "EIO" for a number without a name. */
static const char *errname(int err) {
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
  lua_pushfstring(L, "%s: %s: %s", errname(err), what, strerror(err));
  lua_pushstring(L, errname(err));
  return 3;
}
