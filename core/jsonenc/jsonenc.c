/*
 * jsonenc.c: bgproc.jsonenc, JSON text from Lua values, for the hot path
 * of every daemon and MCP reply (bgproc.json decides what is an array).
 *
 *   local enc = require "bgproc.jsonenc"
 *   enc.encode(value, array_mt) -> string
 *   enc.utf8(s) -> s made valid UTF-8, the same way
 *
 * Tables whose metatable is array_mt, and non-empty sequences, are arrays;
 * other tables are objects (string and number keys). Strings come out as
 * valid UTF-8: an invalid byte becomes U+FFFD. Integral numbers are written
 * as integers; NaN and infinities as null, like nil, functions and userdata
 * (so cjson.null, a light userdata, is null too). Nesting deeper than 64
 * raises "json: nesting too deep".
 */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64
#define OUT_MT "bgproc.jsonenc.Out"

typedef struct out {
  char *p;
  size_t len, cap;
} out;

static int out_gc(lua_State *L) {
  out *o = luaL_checkudata(L, 1, OUT_MT);
  free(o->p);
  o->p = NULL;
  return 0;
}

static void reserve(lua_State *L, out *o, size_t n) {
  if (o->len + n <= o->cap) return;
  size_t cap = o->cap ? o->cap : 256;
  while (cap < o->len + n) cap *= 2;
  char *p = realloc(o->p, cap);
  if (p == NULL) luaL_error(L, "json: out of memory");
  o->p = p;
  o->cap = cap;
}

static void put(lua_State *L, out *o, const char *s, size_t n) {
  reserve(L, o, n);
  memcpy(o->p + o->len, s, n);
  o->len += n;
}

static void putc_(lua_State *L, out *o, char c) {
  reserve(L, o, 1);
  o->p[o->len++] = c;
}

/* Length of a valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned min;
  if (c < 0xC2) return 0; /* continuation byte, or overlong 2-byte lead */
  if (c < 0xE0) len = 2, min = 0x80;
  else if (c < 0xF0) len = 3, min = 0x800;
  else if (c < 0xF5) len = 4, min = 0x10000;
  else return 0;
  if (n < len) return 0;
  unsigned cp = c & (0xFF >> (len + 1));
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

static void put_string(lua_State *L, out *o, const char *str, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)str;
  reserve(L, o, n + 2);
  o->p[o->len++] = '"';
  size_t i = 0;
  while (i < n) {
    size_t run = i; /* copy plain ASCII in one go */
    while (run < n && s[run] >= 0x20 && s[run] < 0x7F && s[run] != '"' && s[run] != '\\') run++;
    if (run > i) {
      put(L, o, (const char *)s + i, run - i);
      i = run;
      if (i >= n) break;
    }
    unsigned c = s[i];
    if (c >= 0x80) {
      size_t len = utf8_seq(s + i, n - i);
      if (len) {
        put(L, o, (const char *)s + i, len);
        i += len;
      } else {
        put(L, o, "\xEF\xBF\xBD", 3); /* U+FFFD */
        i++;
      }
      continue;
    }
    char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
    size_t elen = 2;
    switch (c) {
      case '"': esc[1] = '"'; break;
      case '\\': esc[1] = '\\'; break;
      case '\b': esc[1] = 'b'; break;
      case '\f': esc[1] = 'f'; break;
      case '\n': esc[1] = 'n'; break;
      case '\r': esc[1] = 'r'; break;
      case '\t': esc[1] = 't'; break;
      default:
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        elen = 6;
    }
    put(L, o, esc, elen);
    i++;
  }
  putc_(L, o, '"');
}

static void put_number(lua_State *L, out *o, int idx) {
  char buf[64];
  int n;
  if (lua_isinteger(L, idx)) {
    n = snprintf(buf, sizeof buf, LUA_INTEGER_FMT, lua_tointeger(L, idx));
  } else {
    lua_Number v = lua_tonumber(L, idx);
    if (isnan(v) || isinf(v)) {
      put(L, o, "null", 4);
      return;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
      n = snprintf(buf, sizeof buf, "%lld", (long long)v);
    else
      n = snprintf(buf, sizeof buf, "%.17g", (double)v);
  }
  put(L, o, buf, (size_t)n);
}

/* Where the output goes and the stack index of the array metatable. */
typedef struct ctx {
  out *o;
  int array_mt;
} ctx;

static void put_value(lua_State *L, ctx *c, int idx, int depth);

static int is_array(lua_State *L, ctx *c, int idx, lua_Integer *len) {
  *len = (lua_Integer)lua_rawlen(L, idx);
  if (lua_getmetatable(L, idx)) {
    int marked = lua_rawequal(L, -1, c->array_mt);
    lua_pop(L, 1);
    if (marked) return 1;
  }
  if (*len == 0) return 0;
  lua_Integer count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (++count > *len) {
      lua_pop(L, 1);
      return 0;
    }
  }
  return count == *len;
}

static void put_table(lua_State *L, ctx *c, int idx, int depth) {
  if (depth > MAX_DEPTH) luaL_error(L, "json: nesting too deep");
  luaL_checkstack(L, 4, "json: nesting too deep");
  lua_Integer n;
  if (is_array(L, c, idx, &n)) {
    putc_(L, c->o, '[');
    for (lua_Integer i = 1; i <= n; i++) {
      if (i > 1) putc_(L, c->o, ',');
      lua_rawgeti(L, idx, i);
      put_value(L, c, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
    }
    putc_(L, c->o, ']');
    return;
  }
  putc_(L, c->o, '{');
  int first = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int kt = lua_type(L, -2);
    if (kt == LUA_TSTRING || kt == LUA_TNUMBER) {
      if (!first) putc_(L, c->o, ',');
      first = 0;
      size_t klen;
      if (kt == LUA_TNUMBER) {
        lua_pushvalue(L, -2); /* tostring on a copy: lua_next needs the key */
        const char *k = lua_tolstring(L, -1, &klen);
        put_string(L, c->o, k, klen);
        lua_pop(L, 1);
      } else {
        const char *k = lua_tolstring(L, -2, &klen);
        put_string(L, c->o, k, klen);
      }
      putc_(L, c->o, ':');
      put_value(L, c, lua_gettop(L), depth + 1);
    }
    lua_pop(L, 1);
  }
  putc_(L, c->o, '}');
}

static void put_value(lua_State *L, ctx *c, int idx, int depth) {
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      put_string(L, c->o, s, n);
      break;
    }
    case LUA_TNUMBER: put_number(L, c->o, idx); break;
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, idx)) put(L, c->o, "true", 4);
      else put(L, c->o, "false", 5);
      break;
    case LUA_TTABLE: put_table(L, c, idx, depth); break;
    default: put(L, c->o, "null", 4); /* nil, null, functions, userdata */
  }
}

/* Length of the valid UTF-8 (ASCII included) at the start of s. */
static size_t valid_prefix(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t len = s[i] < 0x80 ? 1 : utf8_seq(s + i, n - i);
    if (len == 0) break;
    i += len;
  }
  return i;
}

/* utf8(s) -> s itself when it is valid UTF-8, else a copy with each
 * invalid byte replaced by U+FFFD, as encode does to strings. Output
 * text is cleaned with it: the same bytes in C cost their size once,
 * where the Lua loop held a table entry per bad byte. */
static int utf8_valid(lua_State *L) {
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  size_t i = valid_prefix(s, n);
  if (i == n) {
    lua_settop(L, 1);
    return 1;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, (const char *)s, i);
  while (i < n) { /* here s[i] is an invalid byte */
    luaL_addlstring(&b, "\xEF\xBF\xBD", 3); /* U+FFFD */
    i++;
    size_t run = valid_prefix(s + i, n - i);
    luaL_addlstring(&b, (const char *)s + i, run);
    i += run;
  }
  luaL_pushresult(&b);
  return 1;
}

/* encode(value [, array_mt]) -> string */
static int encode(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 2);
  out *o = lua_newuserdatauv(L, sizeof *o, 0); /* 3: freed by __gc on error */
  o->p = NULL;
  o->len = o->cap = 0;
  luaL_setmetatable(L, OUT_MT);
  ctx c = {o, 2};
  put_value(L, &c, 1, 0);
  lua_pushlstring(L, o->p ? o->p : "", o->len);
  free(o->p);
  o->p = NULL;
  return 1;
}

int luaopen_bgproc_jsonenc(lua_State *L) {
  luaL_newmetatable(L, OUT_MT);
  lua_pushcfunction(L, out_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, encode);
  lua_setfield(L, -2, "encode");
  lua_pushcfunction(L, utf8_valid);
  lua_setfield(L, -2, "utf8");
  return 1;
}
