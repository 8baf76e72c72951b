/*
 * signals.h: signal names <-> numbers ("TERM", "SIGTERM", "term", 15).
 */
#ifndef BGPROC_SIGNALS_H
#define BGPROC_SIGNALS_H

#include <lua.h>

/* "TERM" for SIGTERM, "RTMIN+3", "SIG32"; NULL outside 1..NSIG-1. */
const char *bg_signame(int sig);

/* The signal at idx (a name in any of its spellings, or a number);
 * raises on an unknown one. */
int bg_checksignal(lua_State *L, int idx);

/* Add signum, signame and the signals table to the module table on top. */
void bg_open_signals(lua_State *L);

#endif
