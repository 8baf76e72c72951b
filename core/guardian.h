/*
 * guardian.h: a small process that outlives the host if the host dies.
 *
 * The core tells it about every job's process group (with a pidfd of the
 * leader) over a SOCK_SEQPACKET socket. When that socket reaches EOF, which
 * happens when the host exits or is killed, even by SIGKILL, the guardian
 * sends SIGTERM to every group it still knows, gives them a short grace
 * period, sends SIGKILL to what is left, and exits.
 */
#ifndef BGPROC_GUARDIAN_H
#define BGPROC_GUARDIAN_H

#include <sys/types.h>

/* Grace between SIGTERM and SIGKILL when the host has died. */
#define BG_GUARDIAN_GRACE_MS 400

typedef struct bg_guardian {
  pid_t pid;   /* -1 when not running */
  int pidfd;   /* readable when the guardian exits */
  int sock;    /* our end of the socket */
} bg_guardian;

void bg_guardian_init(bg_guardian *g);
/* Start the guardian: 0 or an errno value. */
int bg_guardian_start(bg_guardian *g);
/* Tell it about a group (pidfd may be -1). 0 or an errno value. */
int bg_guardian_add(bg_guardian *g, pid_t pgid, int leader_pidfd);
/* Forget a group whose processes are all gone. 0 or an errno value. */
int bg_guardian_del(bg_guardian *g, pid_t pgid);
/* Close the socket and reap the guardian (it kills what it still knows). */
void bg_guardian_stop(bg_guardian *g);
/* Reap a guardian whose pidfd became readable; 1 if it had exited. */
int bg_guardian_reap(bg_guardian *g);

#endif
