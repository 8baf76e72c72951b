/*
 * baseline: the plain-C loops bgproc's benchmarks are measured against.
 *
 *   baseline spawn N                 posix_spawn + pidfd + waitid of /bin/true, N times
 *   baseline capture BYTES RING      spawn `baseline write BYTES`, read() its
 *                                    stdout straight into a RING-byte ring
 *   baseline write BYTES             write BYTES to stdout in 64 KiB writes
 *
 * spawn and capture print one line: "<value> <unit> <peak-rss-kib>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long peak_rss_kib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static void reap(pid_t pid) {
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    perror("pidfd_open");
    exit(1);
  }
  struct pollfd p = {pidfd, POLLIN, 0};
  while (poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
  siginfo_t si;
  waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED);
  close(pidfd);
}

static int bench_spawn(long n) {
  char *argv[] = {"/bin/true", NULL};
  double t0 = now();
  for (long i = 0; i < n; i++) {
    pid_t pid;
    if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0) {
      perror("posix_spawn");
      return 1;
    }
    reap(pid);
  }
  printf("%.1f jobs/s %ld\n", n / (now() - t0), peak_rss_kib());
  return 0;
}

static int bench_capture(const char *self, long long bytes, size_t cap) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return perror("pipe"), 1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  char nbuf[32];
  snprintf(nbuf, sizeof nbuf, "%lld", bytes);
  char *argv[] = {(char *)self, "write", nbuf, NULL};
  unsigned char *ring = malloc(cap);
  double t0 = now();
  pid_t pid;
  if (posix_spawn(&pid, self, &fa, NULL, argv, environ) != 0)
    return perror("posix_spawn"), 1;
  close(p[1]);
  unsigned long long head = 0;
  for (;;) {
    size_t pos = head % cap;
    ssize_t n = read(p[0], ring + pos, cap - pos);
    if (n > 0) {
      head += (unsigned long long)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  reap(pid);
  double dt = now() - t0;
  if ((long long)head != bytes) {
    fprintf(stderr, "captured %llu of %lld bytes\n", head, bytes);
    return 1;
  }
  printf("%.1f MiB/s %ld\n", bytes / 1048576.0 / dt, peak_rss_kib());
  free(ring);
  return 0;
}

static int bench_write(long long bytes) {
  static char buf[65536];
  memset(buf, 'x', sizeof buf);
  for (size_t i = 63; i < sizeof buf; i += 64) buf[i] = '\n';
  while (bytes > 0) {
    size_t n = bytes < (long long)sizeof buf ? (size_t)bytes : sizeof buf;
    ssize_t w = write(1, buf, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    bytes -= w;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "spawn") == 0)
    return bench_spawn(atol(argv[2]));
  if (argc >= 4 && strcmp(argv[1], "capture") == 0)
    return bench_capture(argv[0], atoll(argv[2]), (size_t)atol(argv[3]));
  if (argc >= 3 && strcmp(argv[1], "write") == 0)
    return bench_write(atoll(argv[2]));
  fprintf(stderr, "usage: baseline spawn N | capture BYTES RING | write BYTES\n");
  return 2;
}
