/*
 * errors.h: operational failures as Lua sees them: nil, "ENAME: what:
 * strerror", "ENAME". (Misuse raises instead, with luaL_error.)
 */
#ifndef BGPROC_ERRORS_H
#define BGPROC_ERRORS_H

#include <lua.h>

/* Push nil, "ENAME: what: strerror", "ENAME" (what from fmt, printf-like)
 * and return 3, for `return bg_fail(L, err, ...)`. */
int bg_fail(lua_State *L, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
