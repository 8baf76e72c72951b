/*
 * l_output.h: the bgproc.core.Output userdata (one metatable, its
 * methods) and core.output_load.
 */
#ifndef BGPROC_L_OUTPUT_H
#define BGPROC_L_OUTPUT_H

#include <lua.h>

/* Register the Output metatable; add output_load to the module table on
 * top. */
void bg_open_output(lua_State *L);

#endif
