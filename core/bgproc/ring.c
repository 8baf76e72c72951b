/*
 * ring.c: the output ring of a job, or of its output loaded back (see
 * ring.h).
 *
 * The capacity is a multiple of 64 so that a physical position wraps on a
 * byte boundary of the stream bitmap and runs can be scanned a byte of
 * bits (8 data bytes) at a time.
 */
#define _GNU_SOURCE
#include "ring.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define BITS_ALL(s) ((s) ? 0xFFu : 0x00u)

/* Job rings from this size up are mapped: pages cost nothing until output
 * touches them, the bitmap needs no clearing, and memory goes back to the
 * system when the job is closed. Smaller ones come from the heap, so that
 * thousands of shrunk finished jobs do not use thousands of mappings.
 * Rings filled whole at once (bg_ring_init_at) come from the heap: a fresh
 * mapping would fault in every page while it is filled. */
#define MAP_FROM (64 * 1024)

/* cap bytes of data and cap/8 of stream bits (all stdout), mapped or
 * from the heap. */
static int ring_alloc(bg_ring *r, size_t cap, uint64_t head, int map) {
  r->data = NULL;
  r->bits = NULL;
  r->head = head;
  r->base = head;
  r->cap = 0;
  r->mapped = 0;
  if (cap > SIZE_MAX / 9 * 8 - 64) return ENOMEM; /* cap + cap / 8 overflows */
  cap = (cap + 63) & ~(size_t)63;
  if (cap < 64) cap = 64;
  if (map) {
    void *p = mmap(NULL, cap + cap / 8, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return ENOMEM;
    r->data = p;
    r->mapped = 1;
  } else {
    r->data = malloc(cap + cap / 8);
    if (r->data == NULL) return ENOMEM;
    memset(r->data + cap, 0, cap / 8);
  }
  r->bits = r->data + cap;
  r->cap = cap;
  return 0;
}

int bg_ring_init(bg_ring *r, size_t cap) {
  return ring_alloc(r, cap, 0, cap >= MAP_FROM);
}

int bg_ring_init_at(bg_ring *r, size_t cap, uint64_t head) {
  return ring_alloc(r, cap, head, 0);
}

void bg_ring_free(bg_ring *r) {
  if (r->data != NULL) {
    if (r->mapped) munmap(r->data, r->cap + r->cap / 8);
    else free(r->data);
  }
  r->data = NULL;
  r->bits = NULL;
  r->cap = 0;
  r->mapped = 0;
}

static inline size_t phys(const bg_ring *r, uint64_t off) {
  return (size_t)(off % r->cap);
}

static inline int bit_at(const bg_ring *r, size_t p) {
  return (r->bits[p >> 3] >> (p & 7)) & 1;
}

static inline void set_bit(bg_ring *r, size_t p, int stream) {
  unsigned char mask = (unsigned char)(1u << (p & 7));
  if (stream) r->bits[p >> 3] |= mask;
  else r->bits[p >> 3] &= (unsigned char)~mask;
}

/* Set the stream bits of physical positions [p, p + n), no wrap: bit by
 * bit up to a byte boundary, whole bytes, then the rest bit by bit. */
static void bits_fill(bg_ring *r, size_t p, size_t n, int stream) {
  size_t end = p + n;
  for (; p < end && (p & 7); p++) set_bit(r, p, stream);
  if (end - p >= 8) {
    size_t nbytes = (end - p) >> 3;
    memset(r->bits + (p >> 3), (int)BITS_ALL(stream), nbytes);
    p += nbytes << 3;
  }
  for (; p < end; p++) set_bit(r, p, stream);
}

void bg_ring_write_iov(const bg_ring *r, struct iovec iov[2]) {
  size_t p = phys(r, r->head);
  iov[0].iov_base = r->data + p;
  iov[0].iov_len = r->cap - p;
  iov[1].iov_base = r->data;
  iov[1].iov_len = p;
}

void bg_ring_commit(bg_ring *r, size_t n, int stream) {
  size_t p = phys(r, r->head);
  size_t first = r->cap - p;
  if (n > r->cap) n = r->cap; /* readv into write_iov never exceeds cap */
  if (n <= first) {
    bits_fill(r, p, n, stream);
  } else {
    bits_fill(r, p, first, stream);
    bits_fill(r, 0, n - first, stream);
  }
  r->head += n;
}

void bg_ring_write(bg_ring *r, const void *buf, size_t n, int stream) {
  const unsigned char *src = buf;
  if (n > r->cap) { /* only the last cap bytes can survive */
    r->head += n - r->cap;
    src += n - r->cap;
    n = r->cap;
  }
  struct iovec iov[2];
  bg_ring_write_iov(r, iov);
  size_t first = n < iov[0].iov_len ? n : iov[0].iov_len;
  memcpy(iov[0].iov_base, src, first);
  memcpy(iov[1].iov_base, src + first, n - first);
  bg_ring_commit(r, n, stream);
}

void bg_ring_mark(bg_ring *r, uint64_t from, uint64_t to, int stream) {
  uint64_t tail = bg_ring_tail(r);
  if (from < tail) from = tail;
  if (to > r->head) to = r->head;
  while (from < to) { /* at most up to the physical end at a time */
    size_t p = phys(r, from);
    size_t n = r->cap - p;
    if (n > to - from) n = (size_t)(to - from);
    bits_fill(r, p, n, stream);
    from += n;
  }
}

/* End (exclusive, <= limit) of the run of equal stream bits starting at off. */
static uint64_t run_end(const bg_ring *r, uint64_t off, uint64_t limit) {
  int s = bit_at(r, phys(r, off));
  unsigned char all = (unsigned char)BITS_ALL(s);
  while (off < limit) {
    size_t p = phys(r, off);
    if ((p & 7) == 0 && limit - off >= 8 && r->bits[p >> 3] == all) {
      off += 8;
      continue;
    }
    if (bit_at(r, p) != s) break;
    off++;
  }
  return off; /* never past limit: each step checks it */
}

/* Start (>= floor) of the run of equal stream bits that ends at off - 1. */
static uint64_t run_start(const bg_ring *r, uint64_t off, uint64_t floor) {
  int s = bit_at(r, phys(r, off - 1));
  unsigned char all = (unsigned char)BITS_ALL(s);
  while (off > floor) {
    size_t p = phys(r, off - 1);
    if ((p & 7) == 7 && off - floor >= 8 && r->bits[p >> 3] == all) {
      off -= 8;
      continue;
    }
    if (bit_at(r, p) != s) break;
    off--;
  }
  return off; /* never below floor: each step checks it */
}

/* memcpy of the logical range [from, from + n) out of the ring. */
static void copy_out(const bg_ring *r, uint64_t from, unsigned char *out,
                     size_t n) {
  size_t p = phys(r, from);
  size_t first = r->cap - p;
  if (n <= first) {
    memcpy(out, r->data + p, n);
  } else {
    memcpy(out, r->data + p, first);
    memcpy(out + first, r->data, n - first);
  }
}

size_t bg_ring_copy(const bg_ring *r, uint64_t from, int sel,
                    unsigned char *out, size_t max, uint64_t *next) {
  uint64_t tail = bg_ring_tail(r);
  if (from < tail) from = tail;
  if (from > r->head) from = r->head;
  if (sel == BG_SEL_BOTH) {
    uint64_t avail = r->head - from;
    size_t n = avail < max ? (size_t)avail : max;
    copy_out(r, from, out, n);
    *next = from + n;
    return n;
  }
  size_t copied = 0;
  uint64_t off = from;
  while (off < r->head && copied < max) {
    uint64_t end = run_end(r, off, r->head);
    if (bit_at(r, phys(r, off)) == sel) {
      size_t want = max - copied;
      uint64_t len = end - off;
      if (len > want) {
        len = want;
        end = off + len;
      }
      copy_out(r, off, out + copied, (size_t)len);
      copied += (size_t)len;
    }
    off = end;
  }
  *next = off;
  return copied;
}

/* Last newline in the logical range [from, to), or UINT64_MAX. */
static uint64_t last_newline(const bg_ring *r, uint64_t from, uint64_t to) {
  while (to > from) {
    size_t pend = phys(r, to - 1) + 1; /* physical end of this segment */
    uint64_t seglen = to - from;
    if (seglen > pend) seglen = pend;
    const unsigned char *base = r->data + (pend - seglen);
    const unsigned char *hit = memrchr(base, '\n', (size_t)seglen);
    if (hit) return to - seglen + (uint64_t)(hit - base);
    to -= seglen;
  }
  return UINT64_MAX;
}

uint64_t bg_ring_tail_start(const bg_ring *r, size_t lines, int sel,
                            size_t max_bytes) {
  uint64_t tail = bg_ring_tail(r);
  uint64_t off = r->head;
  size_t seen_bytes = 0;
  size_t found = 0;
  int skip_final_newline = 1; /* a trailing "\n" ends the last line */
  if (lines == 0) return r->head;
  while (off > tail) {
    uint64_t start = sel == BG_SEL_BOTH ? tail : run_start(r, off, tail);
    int mine = sel == BG_SEL_BOTH || bit_at(r, phys(r, off - 1)) == sel;
    if (mine) {
      uint64_t to = off;
      while (to > start) {
        uint64_t nl = last_newline(r, start, to);
        uint64_t cut = nl == UINT64_MAX ? start : nl + 1;
        size_t span = (size_t)(to - cut);
        if (seen_bytes + span >= max_bytes) /* byte cap reached first */
          return to - (max_bytes - seen_bytes);
        seen_bytes += span;
        if (nl == UINT64_MAX) break;
        if (skip_final_newline && nl + 1 == to && seen_bytes == 0) {
          skip_final_newline = 0;
          seen_bytes += 1;
          to = nl;
          continue;
        }
        skip_final_newline = 0;
        if (++found == lines) return nl + 1;
        seen_bytes += 1; /* the newline itself */
        to = nl;
      }
      if (seen_bytes > 0) skip_final_newline = 0;
    }
    off = start;
  }
  return tail;
}

void bg_ring_runs(const bg_ring *r, uint64_t from, uint64_t to,
                  int (*fn)(uint64_t, uint64_t, int, void *), void *ud) {
  uint64_t tail = bg_ring_tail(r);
  if (from < tail) from = tail;
  if (to > r->head) to = r->head;
  while (from < to) {
    uint64_t end = run_end(r, from, to);
    if (fn(from, end, bit_at(r, phys(r, from)), ud)) return;
    from = end;
  }
}

struct shrink_ctx {
  const bg_ring *from;
  bg_ring *to;
};

static int copy_run(uint64_t a, uint64_t b, int stream, void *ud) {
  struct shrink_ctx *c = ud;
  while (a < b) { /* at most up to the old ring's physical end at a time */
    size_t p = phys(c->from, a);
    size_t n = c->from->cap - p;
    if (n > b - a) n = (size_t)(b - a);
    bg_ring_write(c->to, c->from->data + p, n, stream);
    a += n;
  }
  return 0;
}

int bg_ring_shrink(bg_ring *r) {
  uint64_t tail = bg_ring_tail(r);
  size_t want = (size_t)(r->head - tail);
  bg_ring small;
  if (((want + 63) & ~(size_t)63) >= r->cap) return 0;
  if (bg_ring_init(&small, want) != 0) return ENOMEM;
  small.head = small.base = tail; /* the same offsets land on the new positions */
  struct shrink_ctx c = {r, &small};
  bg_ring_runs(r, tail, r->head, copy_run, &c);
  bg_ring_free(r);
  *r = small;
  return 0;
}
