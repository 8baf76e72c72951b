/*
 * ring.h: a byte ring with 64-bit monotonic offsets and a stream bit per
 * byte (stdout or stderr), so one ring keeps arrival order across both
 * streams and a reader can still tell them apart.
 *
 * Offsets count every byte ever written. The ring holds the window
 * [tail, head) where tail = max(base, head - cap): base is the offset of
 * its first byte (0 for a job's ring; a ring can start anywhere, e.g. one
 * loaded back from a file). Pure C, no Lua.
 */
#ifndef BGPROC_RING_H
#define BGPROC_RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum { BG_STDOUT = 0, BG_STDERR = 1 };

/* Stream selectors for reads. */
enum { BG_SEL_BOTH = -1, BG_SEL_STDOUT = BG_STDOUT, BG_SEL_STDERR = BG_STDERR };

typedef struct bg_ring {
  unsigned char *data;  /* cap bytes */
  unsigned char *bits;  /* cap/8 rounded up: bit set = byte came from stderr */
  size_t cap;
  uint64_t head;        /* offset of the next byte to be written */
  uint64_t base;        /* offset of the first byte it ever held */
  int mapped;           /* data is an mmap (else the heap's) */
} bg_ring;

/* 0 on success, ENOMEM on failure (the ring is left empty and freeable).
 * The capacity is rounded up to a multiple of 64 (at least 64). A large
 * ring is mapped: its pages are taken as output reaches them. */
int bg_ring_init(bg_ring *r, size_t cap);
/* The same for a ring about to be filled whole, whose first byte will be
 * at offset `head` (tail = head until it is written), e.g. a job's output
 * loaded back from a file: from the heap at any size, since every page is
 * written at once and memory the heap reuses is already faulted in. */
int bg_ring_init_at(bg_ring *r, size_t cap, uint64_t head);
void bg_ring_free(bg_ring *r);

static inline uint64_t bg_ring_tail(const bg_ring *r) {
  return r->head - r->base > r->cap ? r->head - r->cap : r->base;
}

static inline uint64_t bg_ring_head(const bg_ring *r) { return r->head; }

static inline size_t bg_ring_cap(const bg_ring *r) { return r->cap; }

/* The two spans where the next write lands, together exactly cap bytes,
 * for readv() straight into the ring. */
void bg_ring_write_iov(const bg_ring *r, struct iovec iov[2]);
/* Account n bytes just placed by readv() as coming from `stream`. */
void bg_ring_commit(bg_ring *r, size_t n, int stream);
/* Copy-in write (used for tests and small writes). */
void bg_ring_write(bg_ring *r, const void *buf, size_t n, int stream);

/* Say that the bytes held in [from, to) (clipped to [tail, head)) came
 * from `stream`; their content is left as it is. */
void bg_ring_mark(bg_ring *r, uint64_t from, uint64_t to, int stream);

/*
 * Copy bytes of the selected stream from offset `from` (clamped into the
 * window) into out, at most max bytes of output. Returns the number of
 * bytes copied; *next is the offset after the last byte examined.
 */
size_t bg_ring_copy(const bg_ring *r, uint64_t from, int sel,
                    unsigned char *out, size_t max, uint64_t *next);

/*
 * Offset where the last `lines` lines of the selected stream begin, looking
 * no further back than max_bytes of that stream's bytes. A final line
 * without a newline counts as a line.
 */
uint64_t bg_ring_tail_start(const bg_ring *r, size_t lines, int sel,
                            size_t max_bytes);

/*
 * Runs of one stream inside [from, to): calls fn(start, end, stream, ud) for
 * each maximal run, in order. Stops early when fn returns non-zero.
 */
void bg_ring_runs(const bg_ring *r, uint64_t from, uint64_t to,
                  int (*fn)(uint64_t, uint64_t, int, void *), void *ud);

/* Reallocate to just hold [tail, head) (offsets, content and streams are
 * kept). 0, or ENOMEM with the ring unchanged. */
int bg_ring_shrink(bg_ring *r);

#endif
