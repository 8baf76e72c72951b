/*
 * escape.h: processes that belong to a job but left its process group
 * (setsid, a daemon's double fork).
 */
#ifndef BGPROC_ESCAPE_H
#define BGPROC_ESCAPE_H

#include <lua.h>

#include "job.h"

/* Push { list, ... }, for each of the n jobs (open ones) the list
 * { {pid=, command=}, ... } of its live processes outside its group; or
 * nil, msg, errname. One /proc scan serves every job without a leaf.
 * Returns the number of values pushed. */
int bg_escaped_push(lua_State *L, bg_job *const *jobs, int n);

/* Send sig to the job's processes outside its group that its leaf holds
 * (none without a leaf), each checked through a pidfd: processes hit, or
 * -1 with errno. */
long bg_escaped_signal(bg_job *j, int sig);

#endif
