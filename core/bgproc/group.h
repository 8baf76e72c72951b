/*
 * group.h: signal process groups without ever hitting a recycled pid.
 *
 * While a job's leader is unreaped its pid, which is also the group and
 * session id, cannot be reused, so kill(-pgid) is exact. After the leader
 * is reaped the group lives on only through its members; those are found
 * in /proc, each opened as a pidfd, checked again, and signalled through
 * the pidfd. Everything here is async-signal-safe (no malloc, no stdio):
 * the guardian runs it in a forked child of a possibly threaded host.
 */
#ifndef BGPROC_GROUP_H
#define BGPROC_GROUP_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Send sig to every member of the groups in sorted_pgids, each through a
 * pidfd after checking that it is still a member. Returns the number of
 * processes signalled, or -1 with errno set when /proc is unreadable or a
 * member could not be reached (EMFILE: fewer fds than members).
 */
long bg_group_signal_verified(const pid_t *sorted_pgids, size_t n, int sig);

/* Number of live members of one group (via /proc), or -1 with errno. */
long bg_group_count(pid_t pgid);

/* Fields of /proc/<name>/stat read through procfd (an open /proc): 0; -1
 * when gone; -2 with errno when out of fds or memory. */
int bg_proc_stat(int procfd, const char *name, char *state, pid_t *ppid,
                 pid_t *pgrp, pid_t *sid);

int bg_pidfd_open(pid_t pid);
int bg_pidfd_signal(int pidfd, int sig);

#endif
