/*
 * l_output.c: the bgproc.core.Output userdata: a finished job's output,
 * kept in a file, loaded back into a ring of its own and read exactly like
 * the job's ring was (the reads are l_ring.c's): the same offsets, the
 * same streams.
 *
 *   local out = assert(core.output_load(path, tail, stderr_runs))
 *   out:read(since, max, stream); out:tail(lines, stream, max)
 *   out:runs(from, to); out:offsets(); out:close()
 *
 * The ring's capacity is the file's size, so nothing wraps: the file's
 * first byte is at offset `start`, its last at start + size - 1. Misuse
 * (wrong types, a closed output) raises; a file that cannot be read
 * returns nil, "ENAME: ...", "ENAME".
 */
#define _GNU_SOURCE
#include "l_output.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <lauxlib.h>

#include "errors.h"
#include "fds.h"
#include "l_ring.h"
#include "ring.h"

#define OUTPUT_MT "bgproc.core.Output"

typedef struct bg_output {
  bg_ring ring;
  int open; /* the ring is allocated (loaded, not closed) */
} bg_output;

/* ---- loading ------------------------------------------------------------- */

/* Read the whole regular file fd into o's new ring, its first byte at
 * offset start: 0 or an errno value (then o has no ring). A file that
 * shrinks while read gives what it had; one that grows, its first size
 * bytes. */
static int load(bg_output *o, int fd, uint64_t start) {
  struct stat st;
  if (fstat(fd, &st) < 0) return errno;
  if (S_ISDIR(st.st_mode)) return EISDIR;
  if (!S_ISREG(st.st_mode)) return EINVAL; /* its size says nothing */
  if ((uintmax_t)st.st_size > SIZE_MAX) return EFBIG;
  size_t size = (size_t)st.st_size;
  if (size > (uint64_t)LUA_MAXINTEGER - start) return EOVERFLOW;
  if (bg_ring_init_at(&o->ring, size ? size : 1, start) != 0) return ENOMEM;
  o->open = 1;
  size_t got = 0;
  while (got < size) {
    /* Straight into the ring: the spans where the next write lands,
     * trimmed to what is left (it never reaches a byte already held). */
    struct iovec iov[2];
    size_t want = size - got;
    bg_ring_write_iov(&o->ring, iov);
    if (iov[0].iov_len >= want) {
      iov[0].iov_len = want;
      iov[1].iov_len = 0;
    } else {
      iov[1].iov_len = want - iov[0].iov_len;
    }
    ssize_t n = readv(fd, iov, 2);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      bg_ring_free(&o->ring);
      o->open = 0;
      return err;
    }
    if (n == 0) break;
    bg_ring_commit(&o->ring, (size_t)n, BG_STDOUT);
    got += (size_t)n;
  }
  return 0;
}

/* The list of stderr runs at idx: { {from, to [, "stderr"|"stdout"]}, ...
 * } with absolute offsets, half-open, any order, overlaps allowed (a later
 * run wins), clipped to what the ring holds. With r NULL it is only
 * checked (misuse raises); then its runs are marked in r, where nothing
 * can raise any more. */
static void stream_runs(lua_State *L, int idx, bg_ring *r) {
  static const char *const names[] = {"stdout", "stderr", NULL};
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    int ok_from = 0, ok_to = 0, stream = BG_STDERR;
    lua_Integer from = 0, to = 0;
    if (lua_rawgeti(L, idx, i) == LUA_TTABLE) {
      lua_rawgeti(L, -1, 1);
      from = lua_tointegerx(L, -1, &ok_from);
      lua_rawgeti(L, -2, 2);
      to = lua_tointegerx(L, -1, &ok_to);
      if (lua_rawgeti(L, -3, 3) != LUA_TNIL) {
        const char *s = lua_tostring(L, -1);
        stream = -1;
        for (int k = 0; s && names[k]; k++)
          if (strcmp(s, names[k]) == 0) stream = k;
      }
      lua_pop(L, 3);
    }
    int valid = ok_from && ok_to && from >= 0 && to >= 0 && stream >= 0;
    if (!valid && r == NULL)
      luaL_argerror(L, idx, lua_pushfstring(L, "item %d must be {from, to [, "
                    "\"stderr\"|\"stdout\"]} with integer offsets >= 0", (int)i));
    lua_pop(L, 1);
    if (valid && r != NULL && from < to) /* from >= to: empty */
      bg_ring_mark(r, (uint64_t)from, (uint64_t)to, stream);
  }
}

/* core.output_load(path, start [, stderr_runs]) -> Output
 * | nil, msg, errname */
static int core_output_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer start = luaL_checkinteger(L, 2);
  luaL_argcheck(L, start >= 0, 2, "offset must be >= 0");
  int runs = !lua_isnoneornil(L, 3);
  if (runs) stream_runs(L, 3, NULL);
  bg_output *o = lua_newuserdatauv(L, sizeof *o, 0);
  memset(o, 0, sizeof *o);
  luaL_setmetatable(L, OUTPUT_MT); /* from here __gc sees a sane object */
  /* O_NONBLOCK: a FIFO must not block the open (load refuses it) */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return bg_fail(L, errno, "open '%s'", path);
  int err = load(o, fd, (uint64_t)start);
  bg_close_fd(&fd);
  if (err == ENOMEM) return bg_fail(L, err, "allocate a ring for '%s'", path);
  if (err) return bg_fail(L, err, "load '%s'", path);
  if (runs) stream_runs(L, 3, &o->ring);
  return 1;
}

/* ---- methods --------------------------------------------------------------- */

static bg_output *checkoutput(lua_State *L) {
  return luaL_checkudata(L, 1, OUTPUT_MT);
}

static const bg_ring *checkring(lua_State *L) {
  bg_output *o = checkoutput(L);
  if (!o->open) luaL_error(L, "attempt to use a closed output");
  return &o->ring;
}

/* out:read([since [, max [, stream]]]) -> data, next, dropped */
static int output_read(lua_State *L) { return bg_lring_read(L, checkring(L), 2); }

/* out:tail([lines [, stream [, max_bytes]]]) -> data, from */
static int output_tail(lua_State *L) { return bg_lring_tail(L, checkring(L), 2); }

/* out:runs([from [, to]]) -> { {from, to, "stdout"|"stderr"}, ... } */
static int output_runs(lua_State *L) { return bg_lring_runs(L, checkring(L), 2); }

/* out:offsets() -> tail, head */
static int output_offsets(lua_State *L) { return bg_lring_offsets(L, checkring(L)); }

/* out:close(): free the ring now (also __gc, __close); twice is fine. */
static int output_close(lua_State *L) {
  bg_output *o = checkoutput(L);
  if (o->open) bg_ring_free(&o->ring);
  o->open = 0;
  return 0;
}

static int output_tostring(lua_State *L) {
  bg_output *o = checkoutput(L);
  if (!o->open) lua_pushliteral(L, "bgproc.core.Output (closed)");
  else
    lua_pushfstring(L, "bgproc.core.Output: [%I, %I)",
                    (lua_Integer)bg_ring_tail(&o->ring),
                    (lua_Integer)bg_ring_head(&o->ring));
  return 1;
}

static const luaL_Reg output_methods[] = {
    {"read", output_read},       {"tail", output_tail},
    {"runs", output_runs},       {"offsets", output_offsets},
    {"close", output_close},
    {NULL, NULL},
};

static const luaL_Reg output_meta[] = {
    {"__gc", output_close},
    {"__close", output_close},
    {"__tostring", output_tostring},
    {"__index", NULL},
    {NULL, NULL},
};

static const luaL_Reg funcs[] = {
    {"output_load", core_output_load},
    {NULL, NULL},
};

void bg_open_output(lua_State *L) {
  luaL_newmetatable(L, OUTPUT_MT);
  luaL_setfuncs(L, output_meta, 0);
  luaL_newlibtable(L, output_methods);
  luaL_setfuncs(L, output_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
