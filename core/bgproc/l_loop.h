/*
 * l_loop.h: the bgproc.core.Loop userdata (one metatable, its methods) and
 * core.new.
 */
#ifndef BGPROC_L_LOOP_H
#define BGPROC_L_LOOP_H

#include <lua.h>

/* Register the Loop metatable; add new to the module table on top. */
void bg_open_loop(lua_State *L);

#endif
