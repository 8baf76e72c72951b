/*
 * l_ring.h: the Lua face of a ring's reads, shared by bgproc.core.Job (a
 * job's live ring) and bgproc.core.Output (a finished job's output loaded
 * back from a file): one implementation, the same arguments and results.
 *
 * Each takes the ring and `arg`, the stack index of its first argument (2
 * for a method called as obj:name(...)), raises on misuse and returns the
 * number of results pushed.
 */
#ifndef BGPROC_L_RING_H
#define BGPROC_L_RING_H

#include <lua.h>

#include "ring.h"

/* read([since [, max [, stream]]]) -> data, next, dropped */
int bg_lring_read(lua_State *L, const bg_ring *r, int arg);

/* tail([lines [, stream [, max_bytes]]]) -> data, from */
int bg_lring_tail(lua_State *L, const bg_ring *r, int arg);

/* runs([from [, to]]) -> { {from, to, "stdout"|"stderr"}, ... } */
int bg_lring_runs(lua_State *L, const bg_ring *r, int arg);

/* offsets() -> tail, head */
int bg_lring_offsets(lua_State *L, const bg_ring *r);

#endif
