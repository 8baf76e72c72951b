/*
 * l_job.c: the bgproc.core.Job userdata: one process group, its pipes, its
 * ring, its exit status (job.c does the work).
 *
 * Misuse (wrong types, bad stream names, a closed job, reading output that
 * was dropped) raises; operational failures (nothing left to signal, stdin
 * closed) return nil, "ENAME: ...", "ENAME".
 *
 * A Job's user value is its Loop, so the Loop outlives its Jobs; while the
 * loop still watches a job, the Loop's user value (a table
 * lightuserdata(job) -> Job) keeps it.
 */
#define _GNU_SOURCE
#include "l_job.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>

#include <lauxlib.h>

#include "errors.h"
#include "escape.h"
#include "l_ring.h"
#include "signals.h"

#define JOB_MT "bgproc.core.Job"

bg_job *bg_push_job(lua_State *L, int loop_idx, bg_loop *lp) {
  loop_idx = lua_absindex(L, loop_idx);
  bg_job *j = lua_newuserdatauv(L, bg_job_size(), 1);
  bg_job_init(j, lp);
  luaL_setmetatable(L, JOB_MT); /* from here __gc sees a sane object */
  lua_pushvalue(L, loop_idx);
  lua_setiuservalue(L, -2, 1);
  return j;
}

static bg_job *checkjob(lua_State *L) {
  return luaL_checkudata(L, 1, JOB_MT);
}

/* A job whose ring is gone cannot answer reads. */
static bg_job *checkopen(lua_State *L) {
  bg_job *j = checkjob(L);
  if (bg_job_closed(j)) luaL_error(L, "attempt to use a closed job");
  return j;
}

/* Drop the job at index 1 from its loop's table of watched jobs. */
static void unwatch(lua_State *L, bg_job *j) {
  if (lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA &&
      lua_getiuservalue(L, -1, 1) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_rawsetp(L, -2, j);
  }
  lua_settop(L, 1);
}

/* ---- state --------------------------------------------------------------- */

static int job_pid(lua_State *L) {
  pid_t pid = bg_job_pid(checkjob(L));
  if (pid <= 0) return 0;
  lua_pushinteger(L, pid);
  return 1;
}

static int job_alive(lua_State *L) {
  bg_job *j = checkjob(L);
  lua_pushboolean(L, bg_job_pid(j) > 0 && !bg_job_exited(j));
  return 1;
}

static void push_exit(lua_State *L, const bg_job_status *st) {
  if (st->signal) {
    lua_pushnil(L);
    lua_pushstring(L, bg_signame(st->signal));
  } else {
    if (st->code >= 0) lua_pushinteger(L, st->code);
    else lua_pushnil(L);
    lua_pushnil(L);
  }
  lua_pushboolean(L, st->core_dumped);
}

/* job:exit() -> code|nil, signal-name|nil, core-dumped; nothing if running */
static int job_exit(lua_State *L) {
  bg_job_status st;
  bg_job_status_get(checkjob(L), &st);
  if (!st.exited) return 0;
  push_exit(L, &st);
  return 3;
}

static void setfield_num(lua_State *L, const char *k, lua_Number v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void setfield_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void setfield_bool(lua_State *L, const char *k, int v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, k);
}

static int job_info(lua_State *L) {
  static const char *const stdin_names[] = {"null", "pipe", "pty"};
  bg_job *j = checkjob(L);
  bg_job_status st;
  bg_job_status_get(j, &st);
  lua_createtable(L, 0, 16);
  if (st.pid > 0) {
    setfield_int(L, "pid", st.pid);
    setfield_int(L, "pgid", st.pid);
  }
  lua_pushstring(L, st.closed ? "closed" : st.exited ? "exited" : "running");
  lua_setfield(L, -2, "state");
  if (st.exited) {
    push_exit(L, &st);
    lua_setfield(L, -4, "core_dumped");
    lua_setfield(L, -3, "signal");
    lua_setfield(L, -2, "code");
    setfield_num(L, "ended", st.ended_ms);
  }
  setfield_num(L, "started", st.started_ms);
  setfield_num(L, "duration_ms", st.duration_ms);
  lua_pushstring(L, stdin_names[st.stdin_kind]);
  lua_setfield(L, -2, "stdin");
  setfield_bool(L, "stdin_open", st.stdin_open);
  setfield_bool(L, "eof", st.eof);
  setfield_bool(L, "group_empty", st.group_empty);
  if (bg_job_output_dropped(j)) setfield_bool(L, "output_dropped", 1);
  const bg_ring *r = bg_job_ring(j);
  if (r) {
    setfield_int(L, "ring", (lua_Integer)bg_ring_cap(r));
    setfield_int(L, "head", (lua_Integer)bg_ring_head(r));
    setfield_int(L, "tail", (lua_Integer)bg_ring_tail(r));
  }
  return 1;
}

/* ---- output (l_ring.c reads the ring) ------------------------------------ */

/* An open job whose output was not dropped: it has a ring. */
static bg_job *checkoutput(lua_State *L) {
  bg_job *j = checkopen(L);
  if (bg_job_output_dropped(j)) luaL_error(L, "job output was dropped");
  return j;
}

static const bg_ring *checkring(lua_State *L) {
  return bg_job_ring(checkoutput(L));
}

/* job:read([since [, max [, stream]]]) -> data, next, dropped */
static int job_read(lua_State *L) { return bg_lring_read(L, checkring(L), 2); }

/* job:tail([lines [, stream [, max_bytes]]]) -> data, from */
static int job_tail(lua_State *L) { return bg_lring_tail(L, checkring(L), 2); }

/* job:runs([from [, to]]) -> { {from, to, "stdout"|"stderr"}, ... } */
static int job_runs(lua_State *L) { return bg_lring_runs(L, checkring(L), 2); }

/* job:offsets() -> tail, head */
static int job_offsets(lua_State *L) { return bg_lring_offsets(L, checkring(L)); }

/* job:shrink() -> ring size: once all output is in, keep only what is held */
static int job_shrink(lua_State *L) {
  bg_job *j = checkoutput(L);
  int err = bg_job_shrink(j);
  if (err == EBUSY)
    return bg_fail(L, EBUSY, "job %d still has output open", (int)bg_job_pid(j));
  if (err) return bg_fail(L, err, "shrink ring");
  lua_pushinteger(L, (lua_Integer)bg_ring_cap(bg_job_ring(j)));
  return 1;
}

/* job:drop_output() -> true: once all output is in, free the ring (the
 * output is kept elsewhere); reads raise from then on */
static int job_drop_output(lua_State *L) {
  bg_job *j = checkopen(L);
  if (bg_job_drop_output(j) == EBUSY)
    return bg_fail(L, EBUSY, "job %d still has output open", (int)bg_job_pid(j));
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- signals ------------------------------------------------------------- */

/* job:kill([sig]) -> hits | nil, msg, "ESRCH" */
static int job_kill(lua_State *L) {
  bg_job *j = checkopen(L);
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : bg_checksignal(L, 2);
  long hits = bg_job_signal(j, sig);
  if (hits < 0)
    return bg_fail(L, errno, "signal %s to process group %d",
                   sig ? bg_signame(sig) : "0", (int)bg_job_pid(j));
  lua_pushinteger(L, hits);
  return 1;
}

/* job:members() -> live processes left in the job's group */
static int job_members(lua_State *L) {
  bg_job *j = checkopen(L);
  long n = bg_job_members(j);
  if (n < 0)
    return bg_fail(L, errno, "read /proc for process group %d", (int)bg_job_pid(j));
  lua_pushinteger(L, n);
  return 1;
}

/* job:escaped() -> { {pid=, command=}, ... } */
static int job_escaped(lua_State *L) {
  bg_job *j = checkopen(L);
  int nret = bg_escaped_push(L, &j, 1);
  if (nret != 1) return nret; /* nil, msg, errname */
  lua_rawgeti(L, -1, 1);
  return 1;
}

/* core.escaped({job, ...}) -> { list, ... }: job:escaped() for many, one
 * /proc scan */
static int core_escaped(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  if (n > INT_MAX / (lua_Integer)sizeof(bg_job *))
    return luaL_error(L, "escaped: too many jobs");
  bg_job **jobs = lua_newuserdatauv(L, (size_t)n * sizeof *jobs, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    bg_job *j = luaL_testudata(L, -1, JOB_MT);
    if (j == NULL || bg_job_closed(j))
      return luaL_error(L, "escaped: item %d must be an open job", (int)i);
    lua_pop(L, 1);
    jobs[i - 1] = j;
  }
  return bg_escaped_push(L, jobs, (int)n);
}

/* job:cgroup() -> the job's cgroup directory, or nil */
static int job_cgroup(lua_State *L) {
  char path[PATH_MAX + 64];
  if (!bg_job_cgroup_path(checkjob(L), path, sizeof path)) return 0;
  lua_pushstring(L, path);
  return 1;
}

/* job:kill_cgroup() -> true: SIGKILL everything in the job's cgroup,
 * escapees included | nil, msg, "EOPNOTSUPP" without one */
static int job_kill_cgroup(lua_State *L) {
  bg_job *j = checkopen(L);
  int dirfd;
  if (bg_job_leaf(j, &dirfd) == NULL)
    return bg_fail(L, ENOTSUP, "job %d has no cgroup", (int)bg_job_pid(j));
  bg_job_kill_cgroup(j, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* job:signal_escaped([sig]) -> processes hit: the stop signal for the
 * job's processes outside its group (those in its leaf; 0 without one),
 * each checked through a pidfd */
static int job_signal_escaped(lua_State *L) {
  bg_job *j = checkopen(L);
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : bg_checksignal(L, 2);
  long hits = bg_escaped_signal(j, sig);
  if (hits < 0)
    return bg_fail(L, errno, "signal the escaped processes of job %d",
                   (int)bg_job_pid(j));
  lua_pushinteger(L, hits);
  return 1;
}

/* ---- stdin --------------------------------------------------------------- */

static int stdin_unusable(lua_State *L, bg_job *j, int err) {
  if (err == EBADF)
    return bg_fail(L, EBADF, "stdin of job %d is /dev/null (spawn it with "
                   "stdin = \"pipe\" or pty = true)", (int)bg_job_pid(j));
  return bg_fail(L, EPIPE, "stdin of job %d is closed", (int)bg_job_pid(j));
}

/* job:write(data) -> bytes accepted (queued if the pipe is full) */
static int job_write(lua_State *L) {
  bg_job *j = checkopen(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int err = bg_job_stdin_check(j);
  if (err) return stdin_unusable(L, j, err);
  switch (bg_job_write(j, data, len)) {
    case 0:
      break;
    case ENOBUFS:
      return bg_fail(L, ENOBUFS, "stdin queue of job %d is full (%d bytes "
                     "unread)", (int)bg_job_pid(j), (int)bg_job_stdin_queued(j));
    case ENOMEM:
      return bg_fail(L, ENOMEM, "queue stdin");
    default:
      return bg_fail(L, EPIPE, "write to stdin of job %d", (int)bg_job_pid(j));
  }
  lua_pushinteger(L, (lua_Integer)len);
  return 1;
}

/* job:close_stdin() -> true; pending bytes are written first */
static int job_close_stdin(lua_State *L) {
  bg_job *j = checkopen(L);
  int err = bg_job_stdin_check(j);
  if (err) return stdin_unusable(L, j, err);
  bg_job_close_stdin(j);
  lua_pushboolean(L, 1);
  return 1;
}

/* job:resize(rows, cols) for pty jobs */
static int job_resize(lua_State *L) {
  bg_job *j = checkopen(L);
  lua_Integer rows = luaL_checkinteger(L, 2), cols = luaL_checkinteger(L, 3);
  luaL_argcheck(L, rows > 0 && rows < 65536, 2, "rows must be 1-65535");
  luaL_argcheck(L, cols > 0 && cols < 65536, 3, "cols must be 1-65535");
  bg_job_status st;
  bg_job_status_get(j, &st);
  if (st.stdin_kind != BG_STDIN_PTY)
    return bg_fail(L, ENOTTY, "job %d has no pty", (int)st.pid);
  if (st.eof && !st.stdin_open) /* neither end of the pty is left */
    return bg_fail(L, EBADF, "pty of job %d is closed", (int)st.pid);
  if (bg_job_resize(j, (unsigned short)rows, (unsigned short)cols) < 0)
    return bg_fail(L, errno, "resize pty of job %d", (int)st.pid);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- life ---------------------------------------------------------------- */

/* job:close(): SIGKILL whatever is left of the group, reap, free. */
static int job_close(lua_State *L) {
  bg_job *j = checkjob(L);
  lua_settop(L, 1);
  unwatch(L, j);
  bg_job_release(j);
  return 0;
}

static int job_gc(lua_State *L) {
  bg_job_release(checkjob(L));
  return 0;
}

static int job_tostring(lua_State *L) {
  bg_job *j = checkjob(L);
  if (bg_job_pid(j) <= 0) lua_pushstring(L, "bgproc.core.Job (not started)");
  else
    lua_pushfstring(L, "bgproc.core.Job: pid %d (%s)", (int)bg_job_pid(j),
                    bg_job_closed(j) ? "closed" : bg_job_exited(j) ? "exited" : "running");
  return 1;
}

static const luaL_Reg job_methods[] = {
    {"pid", job_pid},         {"alive", job_alive},
    {"exit", job_exit},       {"info", job_info},
    {"read", job_read},       {"tail", job_tail},
    {"runs", job_runs},       {"offsets", job_offsets},
    {"kill", job_kill},       {"members", job_members},
    {"write", job_write},     {"close_stdin", job_close_stdin},
    {"resize", job_resize},   {"close", job_close},
    {"shrink", job_shrink},   {"drop_output", job_drop_output},
    {"escaped", job_escaped},
    {"cgroup", job_cgroup},   {"kill_cgroup", job_kill_cgroup},
    {"signal_escaped", job_signal_escaped},
    {NULL, NULL},
};

static const luaL_Reg job_meta[] = {
    {"__gc", job_gc},
    {"__close", job_close},
    {"__tostring", job_tostring},
    {"__index", NULL},
    {NULL, NULL},
};

static const luaL_Reg funcs[] = {
    {"escaped", core_escaped},
    {NULL, NULL},
};

void bg_open_job(lua_State *L) {
  luaL_newmetatable(L, JOB_MT);
  luaL_setfuncs(L, job_meta, 0);
  luaL_newlibtable(L, job_methods);
  luaL_setfuncs(L, job_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
