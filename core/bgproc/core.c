/*
 * core.c: the module entry, luaopen_bgproc_core.
 *
 *   local core = require "bgproc.core"
 *   local loop = core.new{ guardian = true, ring = 1 << 20 }
 *   local job = assert(loop:spawn{ argv = { "make", "-j2" } })
 *   local events = loop:wait(1000)
 *
 * Files: loop.c (the epoll set, the guardian, the cgroup directory) and
 * job.c (a process group, its pipes and ring) do the work, pure C; l_loop.c
 * and l_job.c are their Lua userdata; l_output.c is a finished job's output
 * loaded back from a file; l_ring.c reads a ring for both; opts.c reads
 * option tables.
 */
#define _GNU_SOURCE
#include <errno.h>

#include <lauxlib.h>
#include <lua.h>

#include "cgroup.h"
#include "errors.h"
#include "l_job.h"
#include "l_loop.h"
#include "l_output.h"
#include "opts.h"
#include "signals.h"

/* core.leave_job_cgroup() -> true (moved), false (not in a job's leaf)
 * | nil, msg, errname: for a process that must outlive the job that
 * started it (the per-user daemon started on demand) */
static int core_leave_job_cgroup(lua_State *L) {
  int rc = bg_cgroup_leave_job();
  if (rc < 0) return bg_fail(L, errno, "leave the job's cgroup");
  lua_pushboolean(L, rc);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"leave_job_cgroup", core_leave_job_cgroup},
    {NULL, NULL},
};

int luaopen_bgproc_core(lua_State *L) {
  luaL_newlib(L, funcs);
  bg_open_loop(L);
  bg_open_job(L);
  bg_open_output(L);
  bg_open_signals(L);
  lua_pushinteger(L, BG_DEFAULT_RING);
  lua_setfield(L, -2, "DEFAULT_RING");
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  return 1;
}
