/*
 * fds.c: file-descriptor chores (see fds.h).
 */
#define _GNU_SOURCE
#include "fds.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

void bg_close_fd(int *fd) {
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

int bg_fd_above_stdio(int fd) {
  if (fd < 0 || fd > 2) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int saved = errno;
  close(fd);
  errno = saved;
  return moved;
}

int bg_set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

BG_CHILD_CODE static void close_one(int fd, int cloexec) {
  if (cloexec) fcntl(fd, F_SETFD, FD_CLOEXEC);
  else close(fd);
}

BG_CHILD_CODE void bg_close_from(unsigned first, unsigned last, int cloexec) {
  if (first > last) return;
  if (syscall(SYS_close_range, first, last, cloexec ? CLOSE_RANGE_CLOEXEC : 0U) == 0)
    return;
  int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    for (unsigned fd = first; fd <= last && fd < 65536; fd++) close_one((int)fd, cloexec);
    return;
  }
  char buf[4096] __attribute__((aligned(8)));
  long n;
  while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
    for (long off = 0; off < n;) {
      const struct bg_dirent64 *d = (const struct bg_dirent64 *)(buf + off);
      off += d->d_reclen;
      unsigned fd = 0;
      const char *name = d->d_name;
      int digits = 0;
      for (; *name >= '0' && *name <= '9'; name++, digits++) fd = fd * 10 + (unsigned)(*name - '0');
      if (digits && *name == '\0' && fd >= first && fd <= last && (int)fd != dir)
        close_one((int)fd, cloexec);
    }
  }
  close(dir);
}
