/*
 * l_job.h: the bgproc.core.Job userdata (one metatable, its methods) and
 * core.escaped.
 */
#ifndef BGPROC_L_JOB_H
#define BGPROC_L_JOB_H

#include <lua.h>

#include "job.h"

/* Register the Job metatable; add escaped to the module table on top. */
void bg_open_job(lua_State *L);

/* Push a new Job of loop lp (the Loop userdata at loop_idx, which it keeps
 * alive): not started, but safe to collect. */
bg_job *bg_push_job(lua_State *L, int loop_idx, bg_loop *lp);

#endif
