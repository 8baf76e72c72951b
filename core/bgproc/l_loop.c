/*
 * l_loop.c: the bgproc.core.Loop userdata: spawn, dispatch and wait over
 * one epoll set (loop.c and job.c do the work).
 *
 * A host with its own loop watches loop:fd() for readability and calls
 * loop:dispatch(); a host without one calls loop:wait(timeout_ms).
 * Either way one call drains every ready pipe into its ring, reaps every
 * exited leader and returns one event record per job that changed.
 *
 * The Loop's user value is a table lightuserdata(job) -> Job of the jobs
 * it still watches, so a running Job is never collected.
 */
#define _GNU_SOURCE
#include "l_loop.h"

#include <errno.h>
#include <string.h>

#include <lauxlib.h>

#include "errors.h"
#include "job.h"
#include "l_job.h"
#include "loop.h"
#include "opts.h"

#define LOOP_MT "bgproc.core.Loop"

static bg_loop *checkloop(lua_State *L) {
  bg_loop *lp = luaL_checkudata(L, 1, LOOP_MT);
  if (bg_loop_closed(lp)) luaL_error(L, "attempt to use a closed loop");
  return lp;
}

/* ---- spawn ---------------------------------------------------------------- */

static int spawn_failed(lua_State *L, int err, bg_stage stage,
                        const bg_spawn_req *req) {
  if (stage == BG_STAGE_CHDIR)
    return bg_fail(L, err, "chdir '%s'", req->cwd);
  if (stage == BG_STAGE_EXEC)
    return bg_fail(L, err, "exec '%s'", req->file);
  return bg_fail(L, err, "spawn '%s' (%s)", req->file, bg_stage_name(stage));
}

/* loop:spawn{ command = "sh string" | argv = {...}, cwd, env, clear_env,
 *             stdin = "null"|"pipe", pty = bool|{rows, cols}, ring,
 *             pipe_size, merge } -> job | nil, msg, errname
 * pipe_size: what stdout/stderr pipes grow to once the job fills them (0:
 * never); growing only busy pipes spares the per-user pipe quota.
 * merge: stderr shares stdout's pipe: exact order, all bytes "stdout". */
static int loop_spawn(lua_State *L) {
  bg_loop *lp = checkloop(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  const bg_loop_config *cfg = bg_loop_config_of(lp);
  bg_spawn_opts o;
  bg_opt_spawn(L, 2, cfg->ring, cfg->pipe_size, &o);

  int err = bg_loop_prepare(lp);
  if (err) return bg_fail(L, err, "start the guardian process");

  bg_job *j = bg_push_job(L, 1, lp);
  int job_idx = lua_gettop(L);
  if (bg_job_alloc(j, o.ring, o.pipe_size, o.req.stdin_kind) != 0)
    return bg_fail(L, ENOMEM, "allocate a %d-byte output ring", (int)o.ring);
  bg_stage stage;
  err = bg_job_spawn(j, &o.req, &stage);
  if (err) return spawn_failed(L, err, stage, &o.req);
  err = bg_job_watch(j);
  if (err) return bg_fail(L, err, "watch job %d", (int)bg_job_pid(j));
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, job_idx);
  lua_rawsetp(L, -2, j);
  lua_pop(L, 1);
  lua_pushvalue(L, job_idx);
  return 1;
}

/* ---- dispatch -------------------------------------------------------------- */

static void setflag(lua_State *L, const char *k, int on) {
  if (!on) return;
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, k);
}

/* The news of the jobs as a list of {job=, output=, exit=, eof=} records;
 * a finished job is no longer watched. */
static void push_events(lua_State *L, bg_loop *lp) {
  lua_newtable(L);
  int result = lua_gettop(L);
  lua_getiuservalue(L, 1, 1);
  int live = lua_gettop(L);
  lua_Integer n = 0;
  bg_note *note;
  unsigned bits;
  while ((note = bg_loop_take_note(lp, &bits))) {
    bg_job *j = note->owner;
    if (lua_rawgetp(L, live, j) != LUA_TUSERDATA) {
      lua_pop(L, 1);
      continue;
    }
    lua_createtable(L, 0, 4);
    lua_insert(L, -2);
    lua_setfield(L, -2, "job");
    setflag(L, "output", bits & BG_EV_OUTPUT);
    setflag(L, "exit", bits & BG_EV_EXIT);
    setflag(L, "eof", bits & BG_EV_EOF);
    lua_rawseti(L, result, ++n);
    if (bg_job_finished(j)) {
      bg_job_retire(j);
      lua_pushnil(L);
      lua_rawsetp(L, live, j);
    }
  }
  lua_settop(L, result);
}

static int dispatch(lua_State *L, bg_loop *lp, int timeout_ms) {
  int err = bg_loop_poll(lp, timeout_ms);
  if (err == 0) bg_jobs_check_groups(lp);
  else if (err != EINTR) return bg_fail(L, err, "epoll_wait");
  push_events(L, lp);
  return 1;
}

/* loop:dispatch() -> events; never blocks */
static int loop_dispatch(lua_State *L) {
  return dispatch(L, checkloop(L), 0);
}

/* loop:wait([timeout_ms]) -> events; blocks until something happens or the
 * timeout passes (nil or negative: no timeout) */
static int loop_wait(lua_State *L) {
  bg_loop *lp = checkloop(L);
  lua_Integer ms = luaL_optinteger(L, 2, -1);
  if (ms > 0x7fffffff) ms = 0x7fffffff;
  return dispatch(L, lp, ms < 0 ? -1 : (int)ms);
}

static int loop_fd(lua_State *L) {
  lua_pushinteger(L, bg_loop_fd(checkloop(L)));
  return 1;
}

/* loop:count() -> jobs still watched (running, or output still open) */
static int loop_count(lua_State *L) {
  lua_pushinteger(L, bg_loop_count(checkloop(L)));
  return 1;
}

/* loop:guardian() -> pid of the guardian process, or nil */
static int loop_guardian(lua_State *L) {
  pid_t pid = bg_loop_guardian_pid(checkloop(L));
  if (pid <= 0) return 0;
  lua_pushinteger(L, pid);
  return 1;
}

/* loop:cgroup() -> the loop's cgroup directory | nil, why new jobs get
 * none */
static int loop_cgroup(lua_State *L) {
  const char *why = NULL;
  const char *path = bg_loop_cgroup(checkloop(L), &why);
  if (path) {
    lua_pushstring(L, path);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}

/* loop:reap_strays() -> orphans reaped. For a host that owns every child
 * it has (a daemon with subreaper = true): each exited child is reaped, a
 * job's leader through its job (its exit status is kept). */
static int loop_reap_strays(lua_State *L) {
  bg_loop *lp = luaL_checkudata(L, 1, LOOP_MT);
  lua_pushinteger(L, bg_loop_closed(lp) ? 0 : bg_jobs_reap_strays(lp));
  return 1;
}

/* ---- close ------------------------------------------------------------------ */

/* loop:close(): SIGKILL every job group, reap all, stop the guardian. */
static int loop_close(lua_State *L) {
  bg_loop *lp = luaL_checkudata(L, 1, LOOP_MT);
  lua_settop(L, 1);
  if (bg_loop_closed(lp)) return 0;
  if (lua_getiuservalue(L, 1, 1) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      bg_job_stop(lua_touserdata(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  bg_jobs_terminate(lp);
  bg_loop_close(lp);
  lua_newtable(L);
  lua_setiuservalue(L, 1, 1);
  return 0;
}

static int loop_tostring(lua_State *L) {
  bg_loop *lp = luaL_checkudata(L, 1, LOOP_MT);
  if (bg_loop_closed(lp)) lua_pushstring(L, "bgproc.core.Loop (closed)");
  else lua_pushfstring(L, "bgproc.core.Loop: fd %d, %d jobs", bg_loop_fd(lp),
                       (int)bg_loop_count(lp));
  return 1;
}

/* core.new{ guardian = true, ring = 1 MiB, pipe_size = 256 KiB,
 *           subreaper = false, cgroup = true } -> loop */
static int core_new(lua_State *L) {
  static const char *const keys[] = {"guardian", "ring", "pipe_size",
                                     "subreaper", "cgroup", NULL};
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  bg_opt_keys(L, 1, keys, "new");
  bg_loop_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.guardian = bg_opt_bool(L, 1, "guardian", 1, "new");
  cfg.subreaper = bg_opt_bool(L, 1, "subreaper", 0, "new");
  cfg.cgroup = bg_opt_bool(L, 1, "cgroup", 1, "new");
  cfg.ring = (size_t)bg_opt_int(L, 1, "ring", BG_DEFAULT_RING, BG_MIN_RING,
                                (lua_Integer)BG_MAX_RING, "new");
  cfg.pipe_size = (int)bg_opt_int(L, 1, "pipe_size", BG_DEFAULT_PIPE, 0,
                                  BG_MAX_PIPE, "new");
  bg_loop *lp = lua_newuserdatauv(L, bg_loop_size(), 1);
  bg_loop_init(lp); /* closed until open: __gc does nothing */
  luaL_setmetatable(L, LOOP_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  const char *step = NULL;
  int err = bg_loop_open(lp, &cfg, &step);
  if (err) return bg_fail(L, err, "%s", step);
  return 1;
}

static const luaL_Reg loop_methods[] = {
    {"spawn", loop_spawn},   {"dispatch", loop_dispatch},
    {"wait", loop_wait},     {"fd", loop_fd},
    {"count", loop_count},   {"guardian", loop_guardian},
    {"reap_strays", loop_reap_strays},
    {"cgroup", loop_cgroup},
    {"close", loop_close},   {NULL, NULL},
};

static const luaL_Reg loop_meta[] = {
    {"__gc", loop_close},
    {"__close", loop_close},
    {"__tostring", loop_tostring},
    {"__index", NULL},
    {NULL, NULL},
};

static const luaL_Reg funcs[] = {
    {"new", core_new},
    {NULL, NULL},
};

void bg_open_loop(lua_State *L) {
  luaL_newmetatable(L, LOOP_MT);
  luaL_setfuncs(L, loop_meta, 0);
  luaL_newlibtable(L, loop_methods);
  luaL_setfuncs(L, loop_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
