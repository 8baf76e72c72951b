/*
 * opts.c: options tables, read strictly (see opts.h).
 */
#define _GNU_SOURCE
#include "opts.h"

#include <string.h>

#include <lauxlib.h>

extern char **environ;

void bg_opt_keys(lua_State *L, int t, const char *const *keys, const char *what) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: option names must be strings, got %s", what,
                 luaL_typename(L, -1));
    const char *k = lua_tostring(L, -1);
    int known = 0;
    for (const char *const *p = keys; *p; p++)
      if (strcmp(*p, k) == 0) known = 1;
    if (!known) luaL_error(L, "%s: unknown option '%s'", what, k);
  }
}

/* Push t[k]; returns 0 (and pushes nothing) when absent. */
static int get_opt(lua_State *L, int t, const char *k, int type,
                   const char *expected, const char *what) {
  int got = lua_getfield(L, t, k);
  if (got == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (got != type)
    luaL_error(L, "%s: option '%s' must be %s, got %s", what, k, expected,
               luaL_typename(L, -1));
  return 1;
}

int bg_opt_bool(lua_State *L, int t, const char *k, int dflt, const char *what) {
  if (!get_opt(L, t, k, LUA_TBOOLEAN, "a boolean", what)) return dflt;
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

lua_Integer bg_opt_int(lua_State *L, int t, const char *k, lua_Integer dflt,
                       lua_Integer lo, lua_Integer hi, const char *what) {
  if (!get_opt(L, t, k, LUA_TNUMBER, "an integer", what)) return dflt;
  if (!lua_isinteger(L, -1))
    luaL_error(L, "%s: option '%s' must be an integer", what, k);
  lua_Integer v = lua_tointeger(L, -1);
  if (v < lo || v > hi)
    luaL_error(L, "%s: option '%s' must be between %I and %I, got %I", what,
               k, lo, hi, v);
  lua_pop(L, 1);
  return v;
}

/* ---- loop:spawn ---------------------------------------------------------- */

static const char *checked_cstring(lua_State *L, int idx, const char *what) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (strlen(s) != len)
    luaL_error(L, "spawn: %s must not contain NUL bytes", what);
  return s;
}

/* argv: a non-empty sequence of strings -> NULL-terminated char* array kept
 * alive by a userdata left on the stack. */
static char **build_argv(lua_State *L, int t) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, t);
  if (n < 1) luaL_error(L, "spawn: option 'argv' must be a non-empty list");
  if (n > 100000) luaL_error(L, "spawn: option 'argv' is too long");
  char **argv = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *argv, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, t, i) != LUA_TSTRING)
      luaL_error(L, "spawn: argv[%I] must be a string, got %s", i,
                 luaL_typename(L, -1));
    argv[i - 1] = (char *)checked_cstring(L, -1, "argv entries");
    lua_pop(L, 1); /* still referenced by the argv table */
  }
  argv[n] = NULL;
  return argv;
}

/* The child's environment: the host's (unless clear) with the env table's
 * entries overriding; a false value removes a variable. Strings are
 * anchored in table `anchor`. */
static char **build_env(lua_State *L, int env, int clear, int anchor) {
  size_t n = 0, host = 0;
  if (!clear)
    for (char **e = environ; e && *e; e++) host++;
  size_t extra = 0;
  if (env) {
    lua_pushnil(L);
    while (lua_next(L, env)) {
      if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "spawn: env keys must be strings, got %s",
                   luaL_typename(L, -2));
      const char *k = checked_cstring(L, -2, "env names");
      if (*k == '\0' || strchr(k, '='))
        luaL_error(L, "spawn: env name '%s' must be non-empty without '='",
                   k);
      int vt = lua_type(L, -1);
      if (vt == LUA_TSTRING) {
        checked_cstring(L, -1, "env values");
        extra++;
      } else if (!(vt == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        luaL_error(L, "spawn: env value of '%s' must be a string or false, "
                   "got %s", k, luaL_typename(L, -1));
      }
      lua_pop(L, 1);
    }
  }
  char **envp = lua_newuserdatauv(L, (host + extra + 1) * sizeof *envp, 0);
  for (size_t i = 0; i < host; i++) {
    const char *e = environ[i];
    const char *eq = strchr(e, '=');
    if (env && eq) {
      lua_pushlstring(L, e, (size_t)(eq - e));
      int overridden = lua_rawget(L, env) != LUA_TNIL;
      lua_pop(L, 1);
      if (overridden) continue;
    }
    envp[n++] = (char *)e;
  }
  if (env) {
    lua_pushnil(L);
    while (lua_next(L, env)) {
      if (lua_type(L, -1) == LUA_TSTRING) {
        lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
        envp[n++] = (char *)lua_tostring(L, -1);
        lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
      }
      lua_pop(L, 1);
    }
  }
  envp[n] = NULL;
  return envp;
}

static const char *env_path(char *const *envp) {
  for (char *const *e = envp; *e; e++)
    if (strncmp(*e, "PATH=", 5) == 0) return *e + 5;
  return NULL;
}

static const char *const spawn_keys[] = {
    "command", "argv", "cwd", "env", "clear_env", "stdin", "pty", "ring",
    "pipe_size", "merge", NULL,
};

/* { command = "sh string" | argv = {...}, cwd, env, clear_env,
 *   stdin = "null"|"pipe", pty = bool|{rows, cols}, ring, pipe_size,
 *   merge } */
void bg_opt_spawn(lua_State *L, int t, size_t ring, int pipe_size,
                  bg_spawn_opts *o) {
  static char *sh_argv[4] = {"sh", "-c", NULL, NULL};
  t = lua_absindex(L, t);
  bg_opt_keys(L, t, spawn_keys, "spawn");
  lua_newtable(L); /* anchor for strings built here */
  int anchor = lua_gettop(L);
  bg_spawn_req *req = &o->req;
  memset(o, 0, sizeof *o);
  char **argv;
  int has_cmd = get_opt(L, t, "command", LUA_TSTRING, "a string", "spawn");
  int has_argv = get_opt(L, t, "argv", LUA_TTABLE, "a list of strings", "spawn");
  if (has_cmd == has_argv)
    luaL_error(L, has_cmd ? "spawn: options 'command' and 'argv' "
                            "exclude each other"
                          : "spawn: option 'command' (a string) or "
                            "'argv' (a list) is required");
  if (has_cmd) {
    const char *cmd = checked_cstring(L, -1, "option 'command'");
    argv = lua_newuserdatauv(L, sizeof sh_argv, 0);
    memcpy(argv, sh_argv, sizeof sh_argv);
    argv[2] = (char *)cmd;
    req->file = "/bin/sh";
  } else {
    argv = build_argv(L, lua_gettop(L));
    req->file = argv[0];
    if (*req->file == '\0') luaL_error(L, "spawn: argv[1] is empty");
  }
  req->argv = argv;

  if (get_opt(L, t, "cwd", LUA_TSTRING, "a string", "spawn"))
    req->cwd = checked_cstring(L, -1, "option 'cwd'");
  int clear = bg_opt_bool(L, t, "clear_env", 0, "spawn");
  int env = 0;
  if (get_opt(L, t, "env", LUA_TTABLE, "a table of strings", "spawn"))
    env = lua_gettop(L);
  req->envp = build_env(L, env, clear, anchor);
  req->path = env_path(req->envp);

  req->stdin_kind = BG_STDIN_NULL;
  if (get_opt(L, t, "stdin", LUA_TSTRING, "\"null\" or \"pipe\"", "spawn")) {
    const char *s = lua_tostring(L, -1);
    if (strcmp(s, "pipe") == 0) req->stdin_kind = BG_STDIN_PIPE;
    else if (strcmp(s, "null") != 0)
      luaL_error(L, "spawn: option 'stdin' must be \"null\" or "
                 "\"pipe\", got \"%s\"", s);
  }
  req->merge = bg_opt_bool(L, t, "merge", 0, "spawn");
  int pt = lua_getfield(L, t, "pty");
  if (pt == LUA_TBOOLEAN) {
    if (lua_toboolean(L, -1)) req->stdin_kind = BG_STDIN_PTY;
  } else if (pt == LUA_TTABLE) {
    int pty = lua_gettop(L);
    static const char *const pty_keys[] = {"rows", "cols", NULL};
    bg_opt_keys(L, pty, pty_keys, "spawn: pty");
    req->stdin_kind = BG_STDIN_PTY;
    req->rows = (unsigned short)bg_opt_int(L, pty, "rows", 24, 1, 65535, "spawn: pty");
    req->cols = (unsigned short)bg_opt_int(L, pty, "cols", 80, 1, 65535, "spawn: pty");
  } else if (pt != LUA_TNIL) {
    luaL_error(L, "spawn: option 'pty' must be a boolean or "
               "{rows=, cols=}, got %s", luaL_typename(L, -1));
  }
  o->ring = (size_t)bg_opt_int(L, t, "ring", (lua_Integer)ring, BG_MIN_RING,
                               (lua_Integer)BG_MAX_RING, "spawn");
  o->pipe_size = (int)bg_opt_int(L, t, "pipe_size", pipe_size, 0, BG_MAX_PIPE,
                                 "spawn");
  req->null_fd = -1;
  req->cgroup_fd = -1;
}
