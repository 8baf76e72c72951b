/*
 * cgroup.h: per-job cgroup v2 leaves, so that processes that leave the
 * job's session on purpose (setsid, a daemon's double fork) are still
 * known and can be killed.
 *
 * Layout: <our own cgroup>/bgproc-<pid>-<n>/ per loop, job-<seq>/ per job
 * under it. The host stays where it is; only jobs are moved (each child
 * writes "0" to its leaf's cgroup.procs before exec, so the program never
 * runs outside it). Everything a guardian runs (kill, sweep) is
 * async-signal-safe: raw syscalls, no malloc.
 */
#ifndef BGPROC_CGROUP_H
#define BGPROC_CGROUP_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Find a writable cgroup v2 directory for this process (its own cgroup,
 * from /proc/self/cgroup, under the cgroup2 mount of /proc/self/mountinfo)
 * and create a fresh per-loop directory in it. Returns an O_DIRECTORY fd
 * (close-on-exec) and writes the directory's path to `path`, or returns
 * -1 and writes why to `why` (a sentence, for loop:cgroup()).
 */
int bg_cgroup_open_loop_dir(char *path, size_t path_cap, char *why,
                            size_t why_cap);

/* Create the leaf `name` under dirfd. 0 or -1 with errno. */
int bg_cgroup_mkleaf(int dirfd, const char *name);

/* Open <dirfd>/<name>/cgroup.procs for writing (close-on-exec). */
int bg_cgroup_procs_fd(int dirfd, const char *name);

/*
 * SIGKILL every process in <dirfd>/<name> (name NULL: dirfd itself) and
 * below: cgroup.kill, else (kernels before 5.14) each pid listed in
 * cgroup.procs, a few passes. Returns 0, or -1 with errno.
 */
int bg_cgroup_kill(int dirfd, const char *name);

/* 1 if <dirfd>/<name> (or dirfd itself) still holds processes, 0 if
 * not, -1 if unreadable (gone). */
int bg_cgroup_populated(int dirfd, const char *name);

/* Wait up to ms for <dirfd>/<name> to empty; 1 once empty. */
int bg_cgroup_wait_empty(int dirfd, const char *name, long ms);

/* Kill everything in dirfd and below (waiting up to a second for it to
 * empty), then remove its (empty) child directories. */
void bg_cgroup_clear(int dirfd);

/*
 * Up to `cap` pids listed in <dirfd>/<name>/cgroup.procs (that leaf only,
 * not its children). Returns how many were stored, or -1 with errno.
 */
long bg_cgroup_pids(int dirfd, const char *name, pid_t *out, size_t cap);

/*
 * For a process that must outlive the job that started it (the per-user
 * daemon, started on demand by a CLI that may itself be a job): if we are
 * in a job leaf (.../bgproc-<pid>-<n>/job-<n>), move to the cgroup of the
 * host that made it. 1 moved, 0 not in a leaf, -1 with errno.
 */
int bg_cgroup_leave_job(void);

#endif
