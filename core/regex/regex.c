/*
 * regex.c: bgproc.regex, PCRE2 for the output filters agents write.
 *
 *   local regex = require "bgproc.regex"
 *   local re, err = regex.new("error|warn(ing)?", "i")   -- or "/error/i"
 *   re:test(line)                 --> true | false
 *   re:find(s [, init])           --> start, end (1-based, inclusive) | nil
 *   re:search(s [, opts])         --> lines, more, searched, timedout | nil, msg
 *   re:search_file(path [, opts]) --> lines, more, searched, timedout
 *                                     | nil, msg [, errname]
 *   regex.search_files(re | pattern, paths [, opts]) --> results | nil, msg
 *
 * Agents write JavaScript-style expressions, so "/.../flags" is accepted,
 * \uXXXX and \u{...} mean code points (PCRE2_ALT_BSUX), and subjects are
 * UTF-8 (invalid sequences never match instead of failing). A match limit
 * keeps a catastrophic pattern from hanging the host: hitting it is an
 * error value, not a hang. BGPROC_REGEX_JIT=0 in the environment turns
 * the JIT off (valgrind cannot follow JIT-compiled code).
 *
 * The searches find lines, as grep does: a line is the bytes between
 * "\n"s (a "\r" is part of it; the last may lack its "\n"), each matching
 * line is reported once as { start, stop, line }: 0-based offsets of its
 * first byte and just past its last, and its 1-based number. The subject
 * is searched as a whole (compile with "m" for ^ and $ per line); a match
 * that spans a "\n" counts for the line where it starts. A file is read
 * (pread, never mapped: a file truncated under us cannot raise SIGBUS) in
 * pieces of 4 MiB of whole lines, each piece one subject; a line longer
 * than that is read whole. See docs/core.md.
 *
 * PCRE2's match limit holds per start position, and one pcre2_match call
 * goes through start positions by itself, so a catastrophic pattern over a
 * large subject can run for minutes under the limit. So the searches call
 * pcre2_match once per window of whole lines (1 KiB, then four times as
 * large up to 256 KiB; a longer line is one window), the subject pointer
 * staying the whole buffer and the start offset the window's start:
 *  - JIT-compiled (every pattern is compiled with PCRE2_USE_OFFSET_LIMIT):
 *    the length is the whole buffer's and an offset limit keeps the match
 *    starting in the window, so results are those of one call over the
 *    whole buffer; and the JIT's look for a required character ahead
 *    (made only when less than 500,000 bytes are left) stays as rare as
 *    before: a length ending at the window would have it made all along,
 *    20% more instructions for a plain word;
 *  - interpreted (BGPROC_REGEX_JIT=0, or the JIT failed: its search for a
 *    first character would go to the buffer's end from every window): the
 *    length ends one byte past the window's last "\n" (so \Z does not
 *    match before it), with PCRE2_NOTEOL, so a match that runs past the
 *    window's end (across a line boundary) is not found there, as at a
 *    file's piece ends.
 * With opts.timeout_ms CLOCK_MONOTONIC is read between windows: the search
 * stops once the deadline has passed, and a window that took more than
 * 5 ms is followed not by a larger one but by one sized to take about
 * 5 ms (so the deadline is overshot by little more than that, or by one
 * line when a single line is that slow).
 */
#define _GNU_SOURCE /* memrchr, strerrorname_np */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <pcre2.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REGEX_MT "bgproc.regex.Regex"

static int use_jit = 1;
#define MATCH_LIMIT 1000000
#define DEPTH_LIMIT 10000

typedef struct regex {
  pcre2_code *code;
  int jit; /* JIT-compiled: searches bound windows with an offset limit */
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  struct hit *hits; /* re:search's list of lines (kept while small) */
  size_t hitcap;
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
                  PCRE2_NEVER_BACKSLASH_C | PCRE2_USE_OFFSET_LIMIT;
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
  re->jit = 0;
  re->md = NULL;
  re->mctx = NULL;
  re->hits = NULL;
  re->hitcap = 0;
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
  /* best effort: without it the interpreter runs */
  re->jit = use_jit && pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
  re->md = pcre2_match_data_create_from_pattern(re->code, NULL);
  re->mctx = pcre2_match_context_create(NULL);
  if (re->md == NULL || re->mctx == NULL) return luaL_error(L, "out of memory");
  pcre2_set_match_limit(re->mctx, MATCH_LIMIT);
  pcre2_set_depth_limit(re->mctx, DEPTH_LIMIT);
  return 1;
}

/* Run a match from byte offset start; returns the pcre2 result code. */
static int run(regex *re, const char *s, size_t len, size_t start) {
  pcre2_set_offset_limit(re->mctx, PCRE2_UNSET); /* a search may have set it */
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

/* ---- Lines that match: re:search, re:search_file ----------------------- */

#define SEARCH_MAX 1000              /* opts.max by default */
#define READ_CHUNK ((size_t)4 << 20) /* search_file reads this much at once */
#define WIN_FIRST ((size_t)1 << 10)  /* a search's first window */
#define WIN_MAX ((size_t)256 << 10)  /* its largest */
#define WIN_SLICE_NS 5000000u        /* with a deadline: a window's target */

/* Push "ENAME: what: strerror"; returns "ENAME". */
static const char *push_errmsg(lua_State *L, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static const char *push_errmsg(lua_State *L, int err, const char *fmt, ...) {
  char what[512];
  const char *name = strerrorname_np(err);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (name == NULL) name = "EIO";
  lua_pushfstring(L, "%s: %s: %s", name, what, strerror(err));
  return name;
}

/* The "\n"s in p[0, n), 16 bytes at a time: byte lanes count up to 255
 * blocks, then are summed. */
typedef unsigned char u8x16 __attribute__((vector_size(16)));

static size_t count_nl(const char *p, size_t n) {
  size_t count = 0;
  u8x16 nl;
  memset(&nl, '\n', sizeof nl);
  while (n >= 16) {
    size_t blocks = n / 16 < 255 ? n / 16 : 255;
    u8x16 acc = {0};
    for (size_t i = 0; i < blocks; i++, p += 16) {
      u8x16 v;
      memcpy(&v, p, sizeof v);
      acc -= (u8x16)(v == nl); /* a lane is 0xff where equal: +1 */
    }
    for (int i = 0; i < 16; i++) count += acc[i];
    n -= blocks * 16;
  }
  for (; n; n--, p++) count += *p == '\n';
  return count;
}

/* A matching line: its bytes [start, stop) ("\n" excluded), its number. */
typedef struct hit {
  uint64_t start, stop;
  lua_Integer line;
} hit;

/* One search: where the lines go and how far it has got. */
typedef struct scan {
  const pcre2_code *code;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  hit **hits; /* the list (grown as needed) and its capacity */
  size_t *hitcap;
  int jit;       /* windows by offset limit (else by length) */
  size_t n, max; /* lines found; how many to report */
  int more;      /* a line past max matches too */
  lua_Integer line; /* the number of the line at buffer position lpos */
  size_t lpos;
  uint64_t seen; /* with more: just past the line that showed it, or with
                    timedout the end of the last window searched */
  uint64_t deadline; /* CLOCK_MONOTONIC, ns; 0: none */
  size_t win;        /* the next window's size */
  int timedout;      /* (with more) the deadline stopped it */
} scan;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The deadline timeout_ms from now; 0 (none) for 0. */
static uint64_t deadline_in(lua_Integer timeout_ms) {
  if (timeout_ms <= 0) return 0;
  uint64_t now = now_ns();
  if ((uint64_t)timeout_ms > (UINT64_MAX - now) / 1000000u) return UINT64_MAX;
  return now + (uint64_t)timeout_ms * 1000000u;
}

/* Stop: the deadline has passed with everything before at searched. */
static void time_out(scan *sc, uint64_t searched) {
  sc->more = 1;
  sc->timedout = 1;
  sc->seen = searched;
}

/* The end of the window from pos (a line's start) of about win bytes: just
 * after the last "\n" in it, or the end of the line at pos when none is
 * (a longer line is one window), or len. */
static size_t window_end(const char *buf, size_t len, size_t pos,
                         size_t win) {
  if (len - pos <= win) return len;
  const char *nl = memrchr(buf + pos, '\n', win);
  if (nl == NULL) nl = memchr(buf + pos + win, '\n', len - pos - win);
  return nl ? (size_t)(nl - buf) + 1 : len;
}

/* A window of n bytes begun at t0 is done: size the next one. Returns the
 * time now (0 without a deadline, where windows only grow). */
static uint64_t window_done(scan *sc, size_t n, uint64_t t0) {
  uint64_t t = 0, took = 0;
  if (sc->deadline) {
    t = now_ns();
    took = t - t0;
  }
  if (took <= WIN_SLICE_NS) {
    sc->win = sc->win < WIN_MAX / 4 ? sc->win * 4 : WIN_MAX;
  } else { /* slow: the next one should take about WIN_SLICE_NS */
    double want = (double)n * WIN_SLICE_NS / (double)took;
    sc->win = want < 1 ? 1 : want < (double)WIN_MAX ? (size_t)want : WIN_MAX;
  }
  return t;
}

static int add_hit(scan *sc, uint64_t start, uint64_t stop) {
  if (sc->n == *sc->hitcap) {
    size_t cap = *sc->hitcap ? *sc->hitcap * 2 : 64;
    hit *v = realloc(*sc->hits, cap * sizeof *v);
    if (v == NULL) return -1;
    *sc->hits = v;
    *sc->hitcap = cap;
  }
  (*sc->hits)[sc->n++] = (hit){start, stop, sc->line};
  return 0;
}

/* Search buf[0, len), whole lines (the last may lack its "\n" at the end
 * of the subject) whose first byte is at offset base; at_end: the subject
 * ends there (else $ must not match at len). The buffer is one subject,
 * searched in windows of whole lines (see the top of this file): a match
 * is looked for from the start of a line, its line found around it and
 * reported, and the next looked for from the next line. With a deadline
 * the clock is read between windows. 0, or a PCRE2 error code (the match
 * limit, out of memory). */
static int scan_buf(scan *sc, const char *buf, size_t len, uint64_t base,
                    int at_end) {
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
  size_t pos = 0, wbeg = 0, wend = 0; /* the window: [wbeg, wend) */
  uint64_t t0 = 0;                    /* when it started (with a deadline) */
  if (sc->deadline && (t0 = now_ns()) >= sc->deadline) {
    time_out(sc, base);
    return 0;
  }
  while (pos < len) {
    if (pos >= wend) { /* the next window */
      if (wend > 0) {
        t0 = window_done(sc, wend - wbeg, t0);
        if (sc->deadline && t0 >= sc->deadline) {
          time_out(sc, base + pos);
          return 0;
        }
      }
      wbeg = pos;
      wend = window_end(buf, len, pos, sc->win);
    }
    int rc;
    if (sc->jit) { /* the whole subject, a match starting before wend */
      pcre2_set_offset_limit(sc->mctx, wend < len ? wend - 1 : len);
      rc = pcre2_match(sc->code, (PCRE2_SPTR)buf, len, pos,
                       at_end ? 0 : PCRE2_NOTEOL, sc->md, sc->mctx);
    } else { /* the subject up to wend and one byte more, so that \Z does
                not match before the "\n" at wend - 1 */
      rc = pcre2_match(sc->code, (PCRE2_SPTR)buf, wend < len ? wend + 1 : len,
                       pos, wend < len || !at_end ? PCRE2_NOTEOL : 0, sc->md,
                       sc->mctx);
    }
    if (rc == PCRE2_ERROR_NOMATCH) {
      pos = wend;
      continue;
    }
    if (rc < 0) return rc;
    size_t m = ov[0] < pos ? pos : ov[0];
    if (!sc->jit && m >= wend && wend < len) { /* the next window's */
      pos = wend;
      continue;
    }
    if (m >= len && buf[len - 1] == '\n') break; /* after the last line */
    const char *end = m < len ? memchr(buf + m, '\n', len - m) : NULL;
    size_t stop = end ? (size_t)(end - buf) : len;
    size_t next = end ? stop + 1 : len;
    if (sc->n >= sc->max) { /* one more: say so, and stop */
      sc->more = 1;
      sc->seen = base + next;
      return 0;
    }
    const char *nl = m > pos ? memrchr(buf + pos, '\n', m - pos) : NULL;
    size_t start = nl ? (size_t)(nl - buf) + 1 : pos;
    sc->line += (lua_Integer)count_nl(buf + sc->lpos, start - sc->lpos);
    sc->lpos = start;
    if (add_hit(sc, base + start, base + stop)) return PCRE2_ERROR_NOMEMORY;
    pos = next;
  }
  if (wend > 0) window_done(sc, wend - wbeg, t0); /* sizes the next piece's */
  return 0;
}

/* Make *buf hold at least need bytes; 0, or -1 (out of memory). */
static int reserve(char **buf, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t want = *cap ? *cap : need;
  while (want < need) want *= 2;
  char *b = realloc(*buf, want);
  if (b == NULL) {
    b = realloc(*buf, need);
    if (b == NULL) return -1;
    want = need;
  }
  *buf = b;
  *cap = want;
  return 0;
}

/* pread in full (short only at the end of the file); -1 with errno. */
static ssize_t read_at(int fd, char *p, size_t n, uint64_t at) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, p + got, n - got, (off_t)(at + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

/* Search the file open at fd, its first size bytes, from offset: read in
 * pieces of READ_CHUNK cut after their last "\n" (the partial line is
 * carried into the next piece). With count_lines the "\n"s before offset
 * are counted first. *read_bytes: how much was read from offset. 0, an
 * errno (> 0: a read failed) or a PCRE2 error code (< 0). */
static int scan_file(scan *sc, int fd, uint64_t size, uint64_t offset,
                     int count_lines, char **buf, size_t *cap,
                     uint64_t *read_bytes) {
  *read_bytes = 0;
  (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  for (uint64_t at = 0; count_lines && at < offset && at < size;) {
    if (sc->deadline && now_ns() >= sc->deadline) {
      time_out(sc, offset);
      return 0;
    }
    uint64_t left = (offset < size ? offset : size) - at;
    size_t want = left < READ_CHUNK ? (size_t)left : READ_CHUNK;
    if (reserve(buf, cap, want)) return ENOMEM;
    ssize_t n = read_at(fd, *buf, want, at);
    if (n < 0) return errno;
    if (n == 0) break;
    sc->line += (lua_Integer)count_nl(*buf, (size_t)n);
    at += (uint64_t)n;
  }
  if (offset >= size) return 0;
  uint64_t at = offset, base = offset;
  size_t have = 0; /* bytes in *buf: the carried partial line, then more */
  for (;;) {
    /* a piece fills READ_CHUNK; past half of it, a long line: grow */
    size_t want = have < READ_CHUNK / 2 ? READ_CHUNK - have : READ_CHUNK;
    if (size - at < want) want = (size_t)(size - at);
    if (reserve(buf, cap, have + want)) return ENOMEM;
    ssize_t n = want ? read_at(fd, *buf + have, want, at) : 0;
    if (n < 0) return errno;
    at += (uint64_t)n;
    have += (size_t)n;
    *read_bytes = at - offset;
    int last = n < (ssize_t)want || at >= size; /* the end (or it shrank) */
    size_t cut = have;
    if (!last) {
      /* a partial line has no "\n", so only the new bytes are looked at */
      const char *nl = memrchr(*buf + have - n, '\n', (size_t)n);
      if (nl == NULL) continue; /* one line longer than a piece: read on */
      cut = (size_t)(nl - *buf) + 1;
    }
    if (cut > 0) {
      int rc = scan_buf(sc, *buf, cut, base, last);
      if (rc) return rc;
    }
    if (sc->more || last) return 0;
    sc->line += (lua_Integer)count_nl(*buf + sc->lpos, cut - sc->lpos);
    sc->lpos = 0;
    memmove(*buf, *buf + cut, have - cut);
    have -= cut;
    base += cut;
  }
}

typedef struct search_opts {
  lua_Integer max, offset, line, timeout_ms;
  int has_line;
} search_opts;

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer dflt,
                           lua_Integer lo, const char *what) {
  int type = lua_getfield(L, t, k);
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    return dflt;
  }
  int ok = 0;
  lua_Integer v = type == LUA_TNUMBER ? lua_tointegerx(L, -1, &ok) : 0;
  if (!ok) luaL_error(L, "%s: option '%s' must be an integer", what, k);
  if (v < lo)
    luaL_error(L, "%s: option '%s' must be at least %I, got %I", what, k, lo, v);
  lua_pop(L, 1);
  return v;
}

/* The options table at index t (nil or absent: the defaults), strictly. */
static void search_options(lua_State *L, int t, search_opts *o,
                           const char *what) {
  o->max = SEARCH_MAX;
  o->offset = 0;
  o->line = 1;
  o->timeout_ms = 0;
  o->has_line = 0;
  if (lua_isnoneornil(L, t)) return;
  luaL_checktype(L, t, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (strcmp(k, "max") && strcmp(k, "offset") && strcmp(k, "line") &&
        strcmp(k, "timeout_ms"))
      luaL_error(L,
                 "%s: unknown option '%s' (expected max, offset, line, "
                 "timeout_ms)",
                 what, lua_type(L, -1) == LUA_TSTRING ? k : luaL_typename(L, -1));
  }
  o->max = opt_int(L, t, "max", SEARCH_MAX, 0, what);
  o->offset = opt_int(L, t, "offset", 0, 0, what);
  o->line = opt_int(L, t, "line", 1, 0, what);
  o->timeout_ms = opt_int(L, t, "timeout_ms", 0, 0, what);
  lua_getfield(L, t, "line");
  o->has_line = !lua_isnil(L, -1);
  lua_pop(L, 1);
}

static void scan_init(scan *sc, regex *re, const search_opts *o) {
  memset(sc, 0, sizeof *sc);
  sc->code = re->code;
  sc->md = re->md;
  sc->mctx = re->mctx;
  sc->hits = &re->hits;
  sc->hitcap = &re->hitcap;
  sc->jit = re->jit;
  sc->max = (uint64_t)o->max > SIZE_MAX ? SIZE_MAX : (size_t)o->max;
  sc->line = o->line;
  sc->win = WIN_FIRST;
  sc->deadline = deadline_in(o->timeout_ms);
}

/* Push the list of lines found. */
static void push_hits(lua_State *L, const hit *hits, size_t n) {
  lua_createtable(L, (int)(n < INT32_MAX ? n : INT32_MAX), 0);
  for (size_t i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)hits[i].start);
    lua_setfield(L, -2, "start");
    lua_pushinteger(L, (lua_Integer)hits[i].stop);
    lua_setfield(L, -2, "stop");
    lua_pushinteger(L, hits[i].line);
    lua_setfield(L, -2, "line");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* Let a long list of lines go once it is a Lua table. */
static void keep_small(regex *re) {
  if (re->hitcap > 1024) {
    free(re->hits);
    re->hits = NULL;
    re->hitcap = 0;
  }
}

/* The bytes searched from offset: all, or when it stopped at max, up to
 * the end of the line that showed there was more. */
static uint64_t searched_bytes(const scan *sc, uint64_t offset,
                               uint64_t all) {
  return sc->more ? sc->seen - offset : all;
}

/* re:search(subject [, opts]) -> lines, more, searched, timedout
 *   | nil, message */
static int regex_search(lua_State *L) {
  regex *re = checkregex(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  search_opts o;
  search_options(L, 3, &o, "search");
  scan sc;
  scan_init(&sc, re, &o);
  size_t off = (uint64_t)o.offset < len ? (size_t)o.offset : len;
  if (!o.has_line) sc.line += (lua_Integer)count_nl(s, off);
  if ((uint64_t)o.offset < len) {
    int rc = scan_buf(&sc, s + off, len - off, off, 1);
    if (rc) return match_error(L, rc);
  }
  push_hits(L, re->hits, sc.n);
  keep_small(re);
  lua_pushboolean(L, sc.more);
  lua_pushinteger(L, (lua_Integer)searched_bytes(&sc, off, len - off));
  lua_pushboolean(L, sc.timedout);
  return 4;
}

/* Open path and search it from offset (scan_file). 0, an errno (> 0;
 * *step says what failed) or a PCRE2 error code (< 0). */
static int search_path(scan *sc, const char *path, uint64_t offset,
                       int count_lines, char **buf, size_t *cap,
                       uint64_t *searched, const char **step) {
  *searched = 0;
  *step = "open";
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return errno;
  struct stat st;
  int err = fstat(fd, &st) ? errno : 0;
  *step = "search";
  if (!err && S_ISDIR(st.st_mode)) err = EISDIR;
  else if (!err && !S_ISREG(st.st_mode)) err = EINVAL; /* no FIFO or device */
  if (err) {
    close(fd);
    return err;
  }
  *step = "read";
  int rc = scan_file(sc, fd, (uint64_t)st.st_size, offset, count_lines, buf,
                     cap, searched);
  close(fd);
  *searched = searched_bytes(sc, offset, *searched);
  return rc;
}

/* re:search_file(path [, opts]) -> lines, more, searched, timedout
 *   | nil, message (the match limit) | nil, "ENAME: ...", "ENAME" */
static int regex_search_file(lua_State *L) {
  regex *re = checkregex(L);
  const char *path = luaL_checkstring(L, 2);
  search_opts o;
  search_options(L, 3, &o, "search_file");
  scan sc;
  scan_init(&sc, re, &o);
  uint64_t searched;
  const char *step;
  char *buf = NULL; /* not kept: Lua's collector would not see it */
  size_t cap = 0;
  int rc = search_path(&sc, path, (uint64_t)o.offset,
                       !o.has_line && o.offset > 0, &buf, &cap, &searched,
                       &step);
  free(buf);
  if (rc > 0) {
    lua_pushnil(L);
    lua_pushstring(L, push_errmsg(L, rc, "%s '%s'", step, path));
    return 3;
  }
  if (rc < 0) return match_error(L, rc);
  push_hits(L, re->hits, sc.n);
  keep_small(re);
  lua_pushboolean(L, sc.more);
  lua_pushinteger(L, (lua_Integer)searched);
  lua_pushboolean(L, sc.timedout);
  return 4;
}

/* ---- regex.search_files: many files on several threads ------------------ */

#define BATCH_MT "bgproc.regex.Batch"
#define MAX_THREADS 64

/* One file of a batch: what a worker found in it. */
typedef struct file_result {
  const char *path;
  hit *hits;
  size_t hitcap, n;
  int more, rc; /* rc: 0, an errno (step failed) or a PCRE2 error code */
  int done;     /* a worker searched it (else the deadline came first) */
  int timedout; /* the deadline cut its search short */
  const char *step;
  uint64_t searched;
} file_result;

/* The work of one call, a userdata (its __gc frees the lists): the
 * compiled pattern is shared read-only, each worker has its own match
 * data, match context, JIT stack (PCRE2's default, on the worker's own
 * machine stack) and read buffer, and takes the next file until none is
 * left or the deadline (the same for all, read-only) has passed. Each
 * file's result is written by the one worker that took it, and read by
 * the calling thread after joining them all. */
typedef struct batch {
  const pcre2_code *code;
  pcre2_match_context *mctx;
  size_t max, nfiles;
  int jit;
  uint64_t deadline; /* 0: none */
  atomic_size_t next;
  file_result files[];
} batch;

static void *batch_worker(void *arg) {
  batch *b = arg;
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(b->code, NULL);
  pcre2_match_context *mctx = pcre2_match_context_copy(b->mctx);
  char *buf = NULL;
  size_t cap = 0;
  for (;;) {
    size_t i = atomic_fetch_add(&b->next, 1);
    if (i >= b->nfiles) break;
    if (b->deadline && now_ns() >= b->deadline) break; /* i on: not started */
    file_result *f = &b->files[i];
    f->done = 1;
    if (md == NULL || mctx == NULL) {
      f->rc = ENOMEM;
      f->step = "search";
      continue;
    }
    scan sc;
    memset(&sc, 0, sizeof sc);
    sc.code = b->code;
    sc.md = md;
    sc.mctx = mctx;
    sc.hits = &f->hits;
    sc.hitcap = &f->hitcap;
    sc.jit = b->jit;
    sc.max = b->max;
    sc.line = 1;
    sc.win = WIN_FIRST;
    sc.deadline = b->deadline;
    f->rc = search_path(&sc, f->path, 0, 0, &buf, &cap, &f->searched,
                        &f->step);
    f->n = sc.n;
    f->more = sc.more;
    f->timedout = sc.timedout;
  }
  free(buf);
  pcre2_match_data_free(md);
  pcre2_match_context_free(mctx);
  return NULL;
}

static int batch_gc(lua_State *L) {
  batch *b = luaL_checkudata(L, 1, BATCH_MT);
  for (size_t i = 0; i < b->nfiles; i++) {
    free(b->files[i].hits);
    b->files[i].hits = NULL;
  }
  return 0;
}

/* The CPUs this process may run on. */
static long cpu_count(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? n : 1;
}

/* regex.search_files(re | pattern, paths [, opts]) -> results
 *   | nil, message (a pattern that does not compile)
 * results[i] = { lines = {...}, more = bool, searched = n [, timedOut = true] }
 *   for paths[i], or { error = "ENAME: ...", errname = "ENAME" }
 *   | { error = message }.
 * opts: max (per file, 1000), threads (default: the CPUs we may use),
 *   timeout_ms (0: none; for the whole call: a file cut short has timedOut,
 *   and one not started { lines = {}, more = true, searched = 0,
 *   timedOut = true }). */
static int regex_search_files(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING) { /* compiled with "m", as regex.new */
    lua_pushcfunction(L, regex_new);
    lua_pushvalue(L, 1);
    lua_pushliteral(L, "m");
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2)) return 2;
    lua_pop(L, 1);
    lua_replace(L, 1);
  }
  regex *re = checkregex(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer max = SEARCH_MAX, threads = cpu_count(), timeout_ms = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pop(L, 1);
      const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
      if (strcmp(k, "max") && strcmp(k, "threads") && strcmp(k, "timeout_ms"))
        luaL_error(L,
                   "search_files: unknown option '%s' (expected max, threads, "
                   "timeout_ms)",
                   lua_type(L, -1) == LUA_TSTRING ? k : luaL_typename(L, -1));
    }
    max = opt_int(L, 3, "max", SEARCH_MAX, 0, "search_files");
    threads = opt_int(L, 3, "threads", threads, 1, "search_files");
    timeout_ms = opt_int(L, 3, "timeout_ms", 0, 0, "search_files");
  }
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  size_t n = (size_t)lua_rawlen(L, 2);
  if (n > (SIZE_MAX - sizeof(batch)) / sizeof(file_result))
    return luaL_error(L, "search_files: too many paths");
  batch *b = lua_newuserdatauv(L, sizeof *b + n * sizeof(file_result), 0);
  memset(b, 0, sizeof *b + n * sizeof(file_result));
  luaL_setmetatable(L, BATCH_MT);
  for (size_t i = 0; i < n; i++) {
    /* strings only: the table holds them while the workers read them */
    if (lua_rawgeti(L, 2, (lua_Integer)i + 1) != LUA_TSTRING)
      return luaL_error(L, "search_files: paths[%d] must be a string, got %s",
                        (int)i + 1, luaL_typename(L, -1));
    b->files[i].path = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  b->code = re->code;
  b->jit = re->jit;
  b->mctx = re->mctx;
  b->max = (uint64_t)max > SIZE_MAX ? SIZE_MAX : (size_t)max;
  b->nfiles = n;
  b->deadline = deadline_in(timeout_ms); /* after the paths are checked */
  atomic_init(&b->next, 0);
  if ((size_t)threads > n) threads = n > 0 ? (lua_Integer)n : 1;
  pthread_t tids[MAX_THREADS];
  int started = 0;
  for (lua_Integer t = 1; t < threads; t++) { /* this thread is one more */
    if (pthread_create(&tids[started], NULL, batch_worker, b) != 0) break;
    started++;
  }
  batch_worker(b);
  for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);

  lua_createtable(L, (int)(n < INT32_MAX ? n : INT32_MAX), 0);
  for (size_t i = 0; i < n; i++) {
    file_result *f = &b->files[i];
    lua_createtable(L, 0, 4);
    if (!f->done) { /* the deadline passed before a worker took it */
      f->n = 0;
      f->more = 1;
      f->searched = 0;
      f->timedout = 1;
    }
    if (f->rc > 0) {
      const char *name = push_errmsg(L, f->rc, "%s '%s'", f->step, f->path);
      lua_setfield(L, -2, "error");
      lua_pushstring(L, name);
      lua_setfield(L, -2, "errname");
    } else if (f->rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(f->rc, msg, sizeof msg);
      lua_pushstring(L, (const char *)msg);
      lua_setfield(L, -2, "error");
    } else {
      push_hits(L, f->hits, f->n);
      lua_setfield(L, -2, "lines");
      lua_pushboolean(L, f->more);
      lua_setfield(L, -2, "more");
      lua_pushinteger(L, (lua_Integer)f->searched);
      lua_setfield(L, -2, "searched");
      if (f->timedout) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "timedOut");
      }
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
    free(f->hits); /* as soon as it is a Lua table */
    f->hits = NULL;
  }
  return 1;
}

static int regex_gc(lua_State *L) {
  regex *re = luaL_checkudata(L, 1, REGEX_MT);
  pcre2_match_data_free(re->md);
  pcre2_match_context_free(re->mctx);
  pcre2_code_free(re->code);
  free(re->hits);
  re->hits = NULL;
  re->hitcap = 0;
  re->md = NULL;
  re->mctx = NULL;
  re->code = NULL;
  return 0;
}

static const luaL_Reg regex_methods[] = {
    {"test", regex_test},
    {"find", regex_find},
    {"search", regex_search},
    {"search_file", regex_search_file},
    {"search_files", regex_search_files},
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
    {"search_files", regex_search_files},
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
  luaL_newmetatable(L, BATCH_MT);
  lua_pushcfunction(L, batch_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
