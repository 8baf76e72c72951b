/*
 * regex.c: bgproc.regex, PCRE2 for the output filters agents write.
 *
 *   local regex = require "bgproc.regex"
 *   local re, err = regex.new("error|warn(ing)?", "i")   -- or "/error/i"
 *   re:test(line)                 --> true | false
 *   re:find(s [, init])           --> start, end (1-based, inclusive) | nil
 *
 * Agents write JavaScript-style expressions, so "/.../flags" is accepted,
 * \uXXXX and \u{...} mean code points (PCRE2_ALT_BSUX), and subjects are
 * UTF-8 (invalid sequences never match instead of failing). A match limit
 * keeps a catastrophic pattern from hanging the host: hitting it is an
 * error value, not a hang. BGPROC_REGEX_JIT=0 in the environment turns
 * the JIT off (valgrind cannot follow JIT-compiled code).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <lauxlib.h>
#include <lua.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#define REGEX_MT "bgproc.regex.Regex"

static int use_jit = 1;
#define MATCH_LIMIT 1000000
#define DEPTH_LIMIT 10000

typedef struct regex {
  pcre2_code *code;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
} regex;

static regex *checkregex(lua_State *L) {
  regex *re = luaL_checkudata(L, 1, REGEX_MT);
  if (re->code == NULL) luaL_error(L, "attempt to use a freed regex");
  return re;
}

static int flag_bits(lua_State *L, const char *flags, size_t len,
                     uint32_t *opts) {
  for (size_t i = 0; i < len; i++) {
    switch (flags[i]) {
      case 'i': *opts |= PCRE2_CASELESS; break;
      case 'm': *opts |= PCRE2_MULTILINE; break;
      case 's': *opts |= PCRE2_DOTALL; break;
      case 'x': *opts |= PCRE2_EXTENDED; break;
      case 'u': case 'g': case 'y': case 'd': break; /* JS flags: no effect */
      default:
        lua_pushfstring(L, "unknown regex flag '%c' (expected i, m, s, x)",
                        flags[i]);
        return 0;
    }
  }
  return 1;
}

/* regex.new(pattern [, flags]) -> regex | nil, message */
static int regex_new(lua_State *L) {
  size_t plen, flen = 0;
  const char *pat = luaL_checklstring(L, 1, &plen);
  const char *flags = luaL_optlstring(L, 2, "", &flen);
  uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_ALT_BSUX |
                  PCRE2_NEVER_BACKSLASH_C;
  /* "/body/flags", as written in JavaScript */
  if (plen >= 2 && pat[0] == '/') {
    const char *end = pat + plen - 1;
    while (end > pat && *end != '/') end--;
    if (end > pat) {
      const char *jsflags = end + 1;
      size_t jslen = (size_t)(pat + plen - jsflags);
      if (strspn(jsflags, "gimsuyd") == jslen) {
        if (!flag_bits(L, jsflags, jslen, &opts)) {
          lua_pushnil(L);
          lua_insert(L, -2);
          return 2;
        }
        pat += 1;
        plen = (size_t)(end - pat);
      }
    }
  }
  if (!flag_bits(L, flags, flen, &opts)) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  regex *re = lua_newuserdatauv(L, sizeof *re, 0);
  re->code = NULL;
  re->md = NULL;
  re->mctx = NULL;
  luaL_setmetatable(L, REGEX_MT);

  pcre2_compile_context *cctx = pcre2_compile_context_create(NULL);
  if (cctx) pcre2_set_compile_extra_options(cctx, PCRE2_EXTRA_ALT_BSUX);
  int errcode;
  PCRE2_SIZE erroff;
  re->code = pcre2_compile((PCRE2_SPTR)pat, plen, opts, &errcode, &erroff,
                           cctx);
  pcre2_compile_context_free(cctx);
  if (re->code == NULL) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(errcode, buf, sizeof buf);
    lua_pushnil(L);
    lua_pushfstring(L, "%s at offset %d", (const char *)buf, (int)erroff);
    return 2;
  }
  if (use_jit) pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE); /* best effort */
  re->md = pcre2_match_data_create_from_pattern(re->code, NULL);
  re->mctx = pcre2_match_context_create(NULL);
  if (re->md == NULL || re->mctx == NULL) return luaL_error(L, "out of memory");
  pcre2_set_match_limit(re->mctx, MATCH_LIMIT);
  pcre2_set_depth_limit(re->mctx, DEPTH_LIMIT);
  return 1;
}

/* Run a match from byte offset start; returns the pcre2 result code. */
static int run(regex *re, const char *s, size_t len, size_t start) {
  return pcre2_match(re->code, (PCRE2_SPTR)s, len, start, 0, re->md,
                     re->mctx);
}

static int match_error(lua_State *L, int rc) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(rc, buf, sizeof buf);
  lua_pushnil(L);
  lua_pushstring(L, (const char *)buf);
  return 2;
}

/* re:test(s) -> boolean | nil, message (match limit hit) */
static int regex_test(lua_State *L) {
  regex *re = checkregex(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int rc = run(re, s, len, 0);
  if (rc >= 0 || rc == PCRE2_ERROR_NOMATCH) {
    lua_pushboolean(L, rc >= 0);
    return 1;
  }
  return match_error(L, rc);
}

/* re:find(s [, init]) -> start, end | nil | nil, message */
static int regex_find(lua_State *L) {
  regex *re = checkregex(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  lua_Integer init = luaL_optinteger(L, 3, 1);
  if (init < 1) init = 1;
  if ((size_t)init > len + 1) {
    lua_pushnil(L);
    return 1;
  }
  int rc = run(re, s, len, (size_t)init - 1);
  if (rc == PCRE2_ERROR_NOMATCH) {
    lua_pushnil(L);
    return 1;
  }
  if (rc < 0) return match_error(L, rc);
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
  lua_pushinteger(L, (lua_Integer)ov[0] + 1);
  lua_pushinteger(L, (lua_Integer)ov[1]);
  return 2;
}

static int regex_gc(lua_State *L) {
  regex *re = luaL_checkudata(L, 1, REGEX_MT);
  pcre2_match_data_free(re->md);
  pcre2_match_context_free(re->mctx);
  pcre2_code_free(re->code);
  re->md = NULL;
  re->mctx = NULL;
  re->code = NULL;
  return 0;
}

static const luaL_Reg regex_methods[] = {
    {"test", regex_test},
    {"find", regex_find},
    {NULL, NULL},
};

static const luaL_Reg regex_meta[] = {
    {"__gc", regex_gc},
    {"__close", regex_gc},
    {"__index", NULL},
    {NULL, NULL},
};

static const luaL_Reg funcs[] = {
    {"new", regex_new},
    {NULL, NULL},
};

int luaopen_bgproc_regex(lua_State *L) {
  const char *jit = getenv("BGPROC_REGEX_JIT");
  use_jit = !(jit && strcmp(jit, "0") == 0);
  luaL_newmetatable(L, REGEX_MT);
  luaL_setfuncs(L, regex_meta, 0);
  luaL_newlibtable(L, regex_methods);
  luaL_setfuncs(L, regex_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
