/*
 * core.c: the module entry, luaopen_bgproc_core.
 *
 *   local core = require "bgproc.core"
 *   local loop = core.new{ guardian = true, ring = 1 << 20 }
 *   local job = assert(loop:spawn{ argv = { "make", "-j2" } })
 *   local events = loop:wait(1000)
 */
#define _GNU_SOURCE
#include <signal.h>

#include "bgproc.h"

/* core.signum(name|number) -> number; raises on an unknown signal */
static int core_signum(lua_State *L) {
  lua_pushinteger(L, bg_checksignal(L, 1));
  return 1;
}

/* core.signame(number) -> "TERM" | nil */
static int core_signame(lua_State *L) {
  lua_Integer sig = luaL_checkinteger(L, 1);
  const char *name = sig > 0 && sig < NSIG ? bg_signame((int)sig) : NULL;
  if (name == NULL) return 0;
  lua_pushstring(L, name);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"new", bg_core_new},
    {"escaped", bg_core_escaped},
    {"signum", core_signum},
    {"signame", core_signame},
    {NULL, NULL},
};

int luaopen_bgproc_core(lua_State *L) {
  bg_loop_open(L);
  bg_job_open(L);
  luaL_newlib(L, funcs);
  bg_proc_open(L);
  bg_push_signals(L);
  lua_setfield(L, -2, "signals");
  lua_pushinteger(L, BG_DEFAULT_RING);
  lua_setfield(L, -2, "DEFAULT_RING");
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  return 1;
}
