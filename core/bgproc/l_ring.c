/*
 * l_ring.c: a ring's reads as Lua sees them (see l_ring.h), for Job and
 * Output alike.
 */
#include "l_ring.h"

#include <lauxlib.h>

static int checkstream(lua_State *L, int idx) {
  static const char *const opts[] = {"both", "stdout", "stderr", NULL};
  static const int vals[] = {BG_SEL_BOTH, BG_SEL_STDOUT, BG_SEL_STDERR};
  return vals[luaL_checkoption(L, idx, "both", opts)];
}

static lua_Integer opt_offset(lua_State *L, int idx) {
  lua_Integer v = luaL_optinteger(L, idx, 0);
  luaL_argcheck(L, v >= 0, idx, "offset must be >= 0");
  return v;
}

static size_t opt_size(lua_State *L, int idx, size_t dflt) {
  lua_Integer v = luaL_optinteger(L, idx, (lua_Integer)dflt);
  luaL_argcheck(L, v >= 0, idx, "size must be >= 0");
  return (size_t)v;
}

int bg_lring_read(lua_State *L, const bg_ring *r, int arg) {
  uint64_t since = (uint64_t)opt_offset(L, arg);
  size_t max = opt_size(L, arg + 1, bg_ring_cap(r));
  int sel = checkstream(L, arg + 2);
  uint64_t tail = bg_ring_tail(r), head = bg_ring_head(r);
  uint64_t from = since < tail ? tail : since;
  uint64_t held = from < head ? head - from : 0;
  if (max > held) max = (size_t)held; /* never a ring-sized buffer for a few bytes */
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, max);
  uint64_t next;
  size_t n = bg_ring_copy(r, from, sel, out, max, &next);
  luaL_pushresultsize(&b, n);
  lua_pushinteger(L, (lua_Integer)next);
  lua_pushinteger(L, (lua_Integer)(since < tail ? tail - since : 0));
  return 3;
}

int bg_lring_tail(lua_State *L, const bg_ring *r, int arg) {
  size_t lines = opt_size(L, arg, 10);
  int sel = checkstream(L, arg + 1);
  size_t max = opt_size(L, arg + 2, bg_ring_cap(r));
  if (max > bg_ring_cap(r)) max = bg_ring_cap(r);
  uint64_t from = bg_ring_tail_start(r, lines, sel, max);
  if (max > bg_ring_head(r) - from) max = (size_t)(bg_ring_head(r) - from);
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, max);
  uint64_t next;
  size_t n = bg_ring_copy(r, from, sel, out, max, &next);
  luaL_pushresultsize(&b, n);
  lua_pushinteger(L, (lua_Integer)from);
  return 2;
}

struct runs_ctx {
  lua_State *L;
  lua_Integer n;
};

static int push_run(uint64_t from, uint64_t to, int stream, void *ud) {
  struct runs_ctx *c = ud;
  lua_State *L = c->L;
  lua_createtable(L, 3, 0);
  lua_pushinteger(L, (lua_Integer)from);
  lua_rawseti(L, -2, 1);
  lua_pushinteger(L, (lua_Integer)to);
  lua_rawseti(L, -2, 2);
  lua_pushstring(L, stream == BG_STDERR ? "stderr" : "stdout");
  lua_rawseti(L, -2, 3);
  lua_rawseti(L, -2, ++c->n);
  return 0;
}

int bg_lring_runs(lua_State *L, const bg_ring *r, int arg) {
  uint64_t from = (uint64_t)opt_offset(L, arg);
  lua_Integer to = luaL_optinteger(L, arg + 1, (lua_Integer)bg_ring_head(r));
  luaL_argcheck(L, to >= 0, arg + 1, "offset must be >= 0");
  lua_newtable(L);
  struct runs_ctx c = {L, 0};
  luaL_checkstack(L, 4, NULL);
  bg_ring_runs(r, from, (uint64_t)to, push_run, &c);
  return 1;
}

int bg_lring_offsets(lua_State *L, const bg_ring *r) {
  lua_pushinteger(L, (lua_Integer)bg_ring_tail(r));
  lua_pushinteger(L, (lua_Integer)bg_ring_head(r));
  return 2;
}
