/*
 * suite-runner: run the test suite as a child subreaper, like a proper
 * init would, and fail the run if the tests left a process behind.
 *
 *   suite-runner [--timeout SECONDS] COMMAND ARGS...
 *
 * Every orphan of the suite is re-parented here (PR_SET_CHILD_SUBREAPER)
 * and reaped, so a machine whose pid 1 does not reap still ends with no
 * zombies. When COMMAND exits, any descendant still alive after a grace
 * period is a stray: it is listed, killed, and the exit status is 1.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t child_pid;

static void forward(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Children of ours still alive (not zombies); prints them when verbose. */
static int live_children(int verbose, int kill_them) {
  DIR *d = opendir("/proc");
  if (d == NULL) return 0;
  int n = 0;
  pid_t self = getpid();
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char path[300], buf[4096];
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    char *p = strrchr(buf, ')');
    char state;
    int ppid;
    if (p == NULL || sscanf(p + 2, "%c %d", &state, &ppid) != 2) continue;
    if (ppid != self || state == 'Z') continue;
    n++;
    if (verbose) {
      char cmd[512] = "";
      snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
      f = fopen(path, "r");
      if (f) {
        size_t m = fread(cmd, 1, sizeof cmd - 1, f);
        fclose(f);
        for (size_t i = 0; i < m; i++)
          if (cmd[i] == '\0') cmd[i] = ' ';
        cmd[m] = '\0';
      }
      fprintf(stderr, "suite-runner: stray process %s: %s\n", e->d_name, cmd);
    }
    if (kill_them) {
      pid_t pid = (pid_t)atoi(e->d_name);
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
    }
  }
  closedir(d);
  return n;
}

static void reap_all(void) {
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  double timeout = 1800;
  int argi = 1;
  if (argc > 2 && strcmp(argv[1], "--timeout") == 0) {
    timeout = atof(argv[2]);
    argi = 3;
  }
  if (argi >= argc) {
    fprintf(stderr, "usage: suite-runner [--timeout SECONDS] COMMAND...\n");
    return 2;
  }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) perror("suite-runner: subreaper");
  char self[32];
  snprintf(self, sizeof self, "%d", (int)getpid());
  setenv("BGPROC_SUITE_RUNNER", self, 1);
  signal(SIGINT, forward);
  signal(SIGTERM, forward);

  child_pid = fork();
  if (child_pid < 0) {
    perror("suite-runner: fork");
    return 1;
  }
  if (child_pid == 0) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    /* A session of its own, with no controlling terminal: the CLI's owner
       rules (a terminal's jobs belong to its shell) then see the same
       tree whether the suite runs in a terminal or in CI. */
    if (setsid() < 0) perror("suite-runner: setsid");
    execvp(argv[argi], argv + argi);
    perror("suite-runner: exec");
    _exit(127);
  }

  int status = 0;
  double deadline = now() + timeout;
  for (;;) {
    int st;
    pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid == child_pid) {
      status = st;
      break;
    }
    if (pid > 0) continue; /* an orphan of the suite: reaped */
    if (now() > deadline) {
      fprintf(stderr, "suite-runner: timed out after %.0f s\n", timeout);
      kill(-child_pid, SIGKILL);
      kill(child_pid, SIGKILL);
      waitpid(child_pid, &status, 0);
      status = 1 << 8;
      break;
    }
    usleep(2000);
  }

  /* Processes the suite started and did not end have until now + 3 s. */
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  double grace = now() + 3;
  while (live_children(0, 0) > 0 && now() < grace) {
    reap_all();
    usleep(20000);
  }
  reap_all();
  int strays = live_children(1, 1);
  if (strays > 0) {
    fprintf(stderr, "suite-runner: the tests left %d stray process(es)\n",
            strays);
    usleep(100000);
    reap_all();
    if (code == 0) code = 1;
  }
  return code;
}
