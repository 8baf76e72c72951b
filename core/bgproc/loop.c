/*
 * loop.c: the loop (see loop.h): one epoll set, the guardian, the cgroup
 * directory, the spawn stack, and the news its jobs queue for the host.
 */
#define _GNU_SOURCE
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "fds.h"
#include "guardian.h"

#define CHILD_STACK (128 * 1024)
#define MAX_EVENTS 64

struct bg_loop {
  int epfd;
  int closed;
  bg_loop_config cfg;
  bg_guardian guard;
  bg_watch guard_watch;
  int guard_watched;  /* the guardian's pidfd is in the epoll set */
  void *stack;
  size_t stack_size;
  int null_fd;
  bg_note *notes;     /* news for the host, the latest first */
  long count;         /* jobs the host still expects news from */
  bg_loop *next_loop; /* every open loop of the process */
  int cg_fd;          /* the loop's cgroup directory, or -1 */
  int cg_tried;       /* made (or found impossible, or disabled) */
  int cg_refused;     /* a child could not join: new jobs get no leaf */
  unsigned long cg_seq; /* leaf names: job-<seq> */
  char cg_path[PATH_MAX];
  char cg_why[256];   /* why there is no cgroup */
};

/* Every open loop of the process (a Lua state is single-threaded; several
 * states in several threads would each need their own core). */
static bg_loop *all_loops;

size_t bg_loop_size(void) { return sizeof(bg_loop); }

int bg_loop_closed(const bg_loop *lp) { return lp->closed; }

const bg_loop_config *bg_loop_config_of(const bg_loop *lp) { return &lp->cfg; }

int bg_loop_fd(const bg_loop *lp) { return lp->epfd; }

int bg_loop_subreaper(const bg_loop *lp) { return lp->cfg.subreaper; }

pid_t bg_loop_guardian_pid(const bg_loop *lp) {
  return bg_guardian_pid(&lp->guard);
}

int bg_loop_is_guardian(pid_t pid) {
  for (bg_loop *lp = all_loops; lp; lp = lp->next_loop)
    if (bg_guardian_pid(&lp->guard) == pid) return 1;
  return 0;
}

/* ---- the epoll set ------------------------------------------------------- */

int bg_loop_watch(bg_loop *lp, bg_watch *w, int fd, uint32_t events) {
  struct epoll_event e;
  memset(&e, 0, sizeof e);
  e.events = events;
  e.data.ptr = w;
  return epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? errno : 0;
}

void bg_loop_unwatch(bg_loop *lp, int fd) {
  if (lp->epfd >= 0 && fd >= 0) epoll_ctl(lp->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int bg_loop_poll(bg_loop *lp, int timeout_ms) {
  struct epoll_event ev[MAX_EVENTS];
  for (int round = 0; round < 16; round++) {
    int n = epoll_wait(lp->epfd, ev, MAX_EVENTS, round == 0 ? timeout_ms : 0);
    if (n < 0) return errno;
    for (int i = 0; i < n; i++) {
      bg_watch *w = ev[i].data.ptr;
      w->ready(w);
    }
    if (n < MAX_EVENTS) break;
  }
  return 0;
}

/* ---- news ---------------------------------------------------------------- */

void bg_loop_note(bg_loop *lp, bg_note *n, unsigned bits) {
  if (n->bits == 0) {
    n->next = lp->notes;
    lp->notes = n;
  }
  n->bits |= bits;
}

void bg_loop_unnote(bg_loop *lp, bg_note *n) {
  if (n->bits == 0) return;
  for (bg_note **p = &lp->notes; *p; p = &(*p)->next) {
    if (*p == n) {
      *p = n->next;
      break;
    }
  }
  n->bits = 0;
}

bg_note *bg_loop_take_note(bg_loop *lp, unsigned *bits) {
  bg_note *n = lp->notes;
  if (n == NULL) return NULL;
  lp->notes = n->next;
  *bits = n->bits;
  n->bits = 0;
  return n;
}

void bg_loop_count_add(bg_loop *lp, long delta) { lp->count += delta; }

long bg_loop_count(const bg_loop *lp) { return lp->count; }

/* ---- guardian ------------------------------------------------------------ */

static void guardian_ready(bg_watch *w);

/* Watch the guardian's pidfd, to restart it if it dies. If the epoll set
 * refuses (ENOSPC...), the guardian keeps running unwatched: stopping it
 * would be worse. The next spawn tries again. */
static void watch_guardian(bg_loop *lp) {
  int pidfd = bg_guardian_pidfd(&lp->guard);
  if (lp->guard_watched || pidfd < 0) return;
  lp->guard_watched = bg_loop_watch(lp, &lp->guard_watch, pidfd, EPOLLIN) == 0;
}

static void unwatch_guardian(bg_loop *lp) {
  if (lp->guard_watched) bg_loop_unwatch(lp, bg_guardian_pidfd(&lp->guard));
  lp->guard_watched = 0;
}

/* Start the guardian. The group table outlives any one guardian, so a
 * replacement knows every group at once. */
static int start_guardian(bg_loop *lp) {
  int err = bg_guardian_start(&lp->guard);
  if (err) return err;
  watch_guardian(lp);
  return 0;
}

static void guardian_ready(bg_watch *w) {
  bg_loop *lp = w->owner;
  int pidfd = bg_guardian_pidfd(&lp->guard);
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (pidfd < 0) return;
  if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) == 0 &&
      si.si_pid == 0)
    return; /* still running */
  unwatch_guardian(lp);
  bg_guardian_reap(&lp->guard);
  /* Someone killed it: the jobs must not go unguarded. If this fails the
   * next spawn tries again. */
  if (!lp->closed) start_guardian(lp);
}

static int ensure_guardian(bg_loop *lp) {
  if (!lp->cfg.guardian) return 0;
  if (bg_guardian_pidfd(&lp->guard) < 0)
    return start_guardian(lp); /* none, or it died */
  watch_guardian(lp);
  return 0;
}

int bg_loop_guard(bg_loop *lp, pid_t pgid, long *slot) {
  *slot = -1;
  if (lp->cfg.guardian && (*slot = bg_guardian_add(&lp->guard, pgid)) < 0)
    return -1;
  return 0;
}

void bg_loop_unguard(bg_loop *lp, long slot) {
  bg_guardian_del(&lp->guard, slot);
}

/* ---- cgroups ------------------------------------------------------------- */

/* Kill whatever is left in the loop's cgroup directory, remove it. */
static void drop_loop_cgroup(bg_loop *lp) {
  if (lp->cg_fd < 0) return;
  bg_cgroup_clear(lp->cg_fd);
  bg_close_fd(&lp->cg_fd);
  rmdir(lp->cg_path);
  bg_guardian_set_cgroup(&lp->guard, NULL);
}

/* A cgroup directory of our own, where the machine allows it: jobs that
 * leave their session are still found and killed there. Made when first
 * needed, before the guardian is forked (it must know the directory), so
 * a host that never spawns leaves nothing behind. */
static void open_loop_cgroup(bg_loop *lp) {
  if (lp->cg_tried) return;
  lp->cg_tried = 1;
  lp->cg_fd = bg_cgroup_open_loop_dir(lp->cg_path, sizeof lp->cg_path,
                                      lp->cg_why, sizeof lp->cg_why);
  if (lp->cg_fd >= 0) bg_guardian_set_cgroup(&lp->guard, lp->cg_path);
}

int bg_loop_new_leaf(bg_loop *lp, char *name, size_t cap) {
  if (lp->cg_fd < 0 || lp->cg_refused) return -1;
  snprintf(name, cap, "job-%lu", ++lp->cg_seq);
  if (bg_cgroup_mkleaf(lp->cg_fd, name) < 0) return -1;
  int fd = bg_cgroup_procs_fd(lp->cg_fd, name);
  if (fd < 0) {
    unlinkat(lp->cg_fd, name, AT_REMOVEDIR);
    return -1;
  }
  return fd;
}

void bg_loop_refuse_cgroup(bg_loop *lp, int err) {
  snprintf(lp->cg_why, sizeof lp->cg_why, "cannot join a cgroup under "
           "%.160s: %.60s", lp->cg_path, strerror(err));
  lp->cg_refused = 1;
}

int bg_loop_cgroup_fd(const bg_loop *lp) { return lp->cg_fd; }

const char *bg_loop_cgroup_path(const bg_loop *lp) { return lp->cg_path; }

const char *bg_loop_cgroup(bg_loop *lp, const char **why) {
  open_loop_cgroup(lp);
  if (lp->cg_fd >= 0 && !lp->cg_refused) return lp->cg_path;
  *why = lp->cg_why;
  return NULL;
}

/* ---- spawning ------------------------------------------------------------ */

int bg_loop_prepare(bg_loop *lp) {
  open_loop_cgroup(lp);
  return ensure_guardian(lp);
}

int bg_loop_spawn(bg_loop *lp, bg_spawn_req *req, bg_spawn_res *res,
                  bg_stage *stage) {
  req->null_fd = lp->null_fd;
  return bg_spawn(req, res, lp->stack, lp->stack_size, stage);
}

/* ---- life ---------------------------------------------------------------- */

void bg_loop_init(bg_loop *lp) {
  memset(lp, 0, sizeof *lp);
  lp->epfd = -1;
  lp->null_fd = -1;
  lp->cg_fd = -1;
  lp->closed = 1; /* until open */
  bg_guardian_init(&lp->guard);
  lp->guard_watch.ready = guardian_ready;
  lp->guard_watch.owner = lp;
}

/* What a loop owns besides its guardian; safe on a half-open loop. */
static void free_parts(bg_loop *lp) {
  bg_close_fd(&lp->epfd);
  bg_close_fd(&lp->null_fd);
  if (lp->stack) munmap(lp->stack, lp->stack_size);
  lp->stack = NULL;
  drop_loop_cgroup(lp);
}

int bg_loop_open(bg_loop *lp, const bg_loop_config *cfg, const char **step) {
  lp->cfg = *cfg;
  lp->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (lp->epfd < 0) {
    *step = "epoll_create1";
    return errno;
  }
  lp->stack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (lp->stack == MAP_FAILED) {
    int err = errno;
    lp->stack = NULL;
    free_parts(lp);
    *step = "allocate the spawn stack";
    return err;
  }
  lp->stack_size = CHILD_STACK;
  /* Process-wide: orphans of the jobs become ours, and each dispatch reaps
   * those of our groups. For hosts that own their process (the daemon). */
  if (cfg->subreaper && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
    int err = errno;
    free_parts(lp);
    *step = "prctl(PR_SET_CHILD_SUBREAPER)";
    return err;
  }
  lp->cg_tried = !cfg->cgroup; /* made at the first spawn */
  if (!cfg->cgroup)
    snprintf(lp->cg_why, sizeof lp->cg_why, "disabled (cgroup = false)");
  /* stdin of every job that has none; failing that, each spawn opens one */
  lp->null_fd = bg_fd_above_stdio(open("/dev/null", O_RDONLY | O_CLOEXEC));
  lp->next_loop = all_loops;
  all_loops = lp;
  lp->closed = 0;
  return 0;
}

static void unregister_loop(bg_loop *lp) {
  for (bg_loop **p = &all_loops; *p; p = &(*p)->next_loop) {
    if (*p == lp) {
      *p = lp->next_loop;
      break;
    }
  }
  lp->next_loop = NULL;
}

void bg_loop_close(bg_loop *lp) {
  if (lp->closed) return;
  lp->closed = 1;
  drop_loop_cgroup(lp); /* escapees too */
  while (lp->notes) {
    unsigned bits;
    bg_loop_take_note(lp, &bits);
  }
  lp->count = 0;
  unwatch_guardian(lp);
  bg_guardian_stop(&lp->guard);
  unregister_loop(lp);
  if (lp->cfg.subreaper) {
    int others = 0;
    for (bg_loop *o = all_loops; o; o = o->next_loop) others |= o->cfg.subreaper;
    if (!others) prctl(PR_SET_CHILD_SUBREAPER, 0); /* we set it; we clear it */
  }
  free_parts(lp);
}
