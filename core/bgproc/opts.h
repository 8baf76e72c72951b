/*
 * opts.h: options tables (core.new{...}, loop:spawn{...}) read strictly:
 * an unknown name, a wrong type or a value out of range raises an error
 * naming the option and what was expected.
 */
#ifndef BGPROC_OPTS_H
#define BGPROC_OPTS_H

#include <stddef.h>

#include <lua.h>

#include "spawn.h"

#define BG_DEFAULT_RING (1024 * 1024)
#define BG_MIN_RING 64
#define BG_MAX_RING ((size_t)1 << 30)
#define BG_DEFAULT_PIPE (256 * 1024)
#define BG_MAX_PIPE (64 * 1024 * 1024) /* F_SETPIPE_SZ's usual ceiling */

/* Raise unless every key of the table at t is one of keys (NULL-ended);
 * `what` names the call in errors. */
void bg_opt_keys(lua_State *L, int t, const char *const *keys, const char *what);

/* t[k] as a boolean, dflt when absent. */
int bg_opt_bool(lua_State *L, int t, const char *k, int dflt, const char *what);

/* t[k] as an integer in [lo, hi], dflt when absent. */
lua_Integer bg_opt_int(lua_State *L, int t, const char *k, lua_Integer dflt,
                       lua_Integer lo, lua_Integer hi, const char *what);

typedef struct bg_spawn_opts {
  bg_spawn_req req;
  size_t ring;
  int pipe_size;
} bg_spawn_opts;

/* loop:spawn's table at t, with the loop's ring and pipe_size as defaults.
 * Pushes what keeps the request's strings alive: leave it on the stack
 * until the spawn is done. */
void bg_opt_spawn(lua_State *L, int t, size_t ring, int pipe_size,
                  bg_spawn_opts *o);

#endif
