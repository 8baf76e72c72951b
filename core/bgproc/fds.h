/*
 * fds.h: file-descriptor chores shared by spawn, the guardian and jobs.
 * bg_close_from() runs in children before exec, so it is async-signal-safe
 * and uninstrumented (see BG_CHILD_CODE).
 */
#ifndef BGPROC_FDS_H
#define BGPROC_FDS_H

/* Code that runs in a child on a foreign stack before exec: sanitizer
 * instrumentation there would misread that stack. */
#if defined(__GNUC__)
#define BG_CHILD_CODE __attribute__((no_sanitize("address", "undefined"), noinline))
#else
#define BG_CHILD_CODE
#endif

/* A record of getdents64(2), which glibc does not declare. */
struct bg_dirent64 {
  unsigned long long d_ino;
  long long d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

/* close(*fd) if open, then *fd = -1. */
void bg_close_fd(int *fd);

/* Move fd to a number >= 3 (closing the original) so that dup2 onto 0-2 in
 * a child never overlaps. Returns the new fd or -1. */
int bg_fd_above_stdio(int fd);

int bg_set_nonblock(int fd);

/* Close every fd in [first, last], or with `cloexec` mark it close-on-exec:
 * close_range(2), else (kernels before 5.9/5.11) what /proc/self/fd lists,
 * else every number up to 65535. No malloc. */
void bg_close_from(unsigned first, unsigned last, int cloexec);

#endif
