/*
 * signals.c: signal names <-> numbers ("TERM", "SIGTERM", "term", 15).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>

#include "signals.h"

typedef struct sig_name {
  const char *name;
  int num;
} sig_name;

static const sig_name names[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},       {"QUIT", SIGQUIT},
    {"ILL", SIGILL},       {"TRAP", SIGTRAP},     {"ABRT", SIGABRT},
    {"BUS", SIGBUS},       {"FPE", SIGFPE},       {"KILL", SIGKILL},
    {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},     {"USR2", SIGUSR2},
    {"PIPE", SIGPIPE},     {"ALRM", SIGALRM},     {"TERM", SIGTERM},
    {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD},     {"CONT", SIGCONT},
    {"STOP", SIGSTOP},     {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU},     {"URG", SIGURG},       {"XCPU", SIGXCPU},
    {"XFSZ", SIGXFSZ},     {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
    {"WINCH", SIGWINCH},   {"IO", SIGIO},         {"PWR", SIGPWR},
    {"SYS", SIGSYS},       {"IOT", SIGABRT},      {"POLL", SIGIO},
    {"CLD", SIGCHLD},
};

#define NNAMES (sizeof names / sizeof *names)

const char *bg_signame(int sig) {
  static char rt[NSIG][12];
  for (size_t i = 0; i < NNAMES; i++)
    if (names[i].num == sig) return names[i].name;
  if (sig >= SIGRTMIN && sig <= SIGRTMAX) { /* SIGRTMAX < NSIG */
    if (rt[sig][0] == '\0') {
      int off = sig - SIGRTMIN;
      snprintf(rt[sig], sizeof rt[sig], off ? "RTMIN+%d" : "RTMIN", off);
    }
    return rt[sig];
  }
  if (sig > 0 && sig < NSIG) { /* 32, 33: kept by libc, still a number */
    static char other[NSIG][8];
    if (other[sig][0] == '\0') snprintf(other[sig], sizeof other[sig], "SIG%d", sig);
    return other[sig];
  }
  return NULL;
}

/* Number of the signal named s, or -1. */
static int parse_name(const char *s) {
  if (strncasecmp(s, "SIG", 3) == 0) s += 3;
  for (size_t i = 0; i < NNAMES; i++)
    if (strcasecmp(s, names[i].name) == 0) return names[i].num;
  if (strncasecmp(s, "RTMIN", 5) == 0) {
    const char *p = s + 5;
    long off = 0;
    if (*p == '+') {
      char *end;
      off = strtol(p + 1, &end, 10);
      if (end == p + 1 || *end != '\0') return -1;
    } else if (*p != '\0') {
      return -1;
    }
    if (off < 0 || SIGRTMIN + off > SIGRTMAX) return -1;
    return (int)(SIGRTMIN + off);
  }
  /* a number given as a string */
  if (isdigit((unsigned char)*s)) {
    char *end;
    long n = strtol(s, &end, 10);
    if (*end == '\0' && n >= 0 && n < NSIG) return (int)n;
  }
  return -1;
}

int bg_checksignal(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n;
    if (!lua_isinteger(L, idx) || (n = lua_tointeger(L, idx)) < 0 ||
        n >= NSIG)
      return luaL_argerror(L, idx, lua_pushfstring(
          L, "signal number must be an integer 0-%d", NSIG - 1));
    return (int)n;
  }
  if (lua_type(L, idx) == LUA_TSTRING) {
    int n = parse_name(lua_tostring(L, idx));
    if (n < 0)
      return luaL_argerror(L, idx, lua_pushfstring(
          L, "unknown signal '%s' (expected a name like TERM or a number)",
          lua_tostring(L, idx)));
    return n;
  }
  return luaL_typeerror(L, idx, "signal name or number");
}

/* core.signum(name|number) -> number; raises on an unknown signal */
static int core_signum(lua_State *L) {
  lua_pushinteger(L, bg_checksignal(L, 1));
  return 1;
}

/* core.signame(number) -> "TERM" | nil */
static int core_signame(lua_State *L) {
  lua_Integer sig = luaL_checkinteger(L, 1);
  const char *name = sig > 0 && sig < NSIG ? bg_signame((int)sig) : NULL;
  if (name == NULL) return 0;
  lua_pushstring(L, name);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"signum", core_signum},
    {"signame", core_signame},
    {NULL, NULL},
};

void bg_open_signals(lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
  lua_createtable(L, 0, (int)NNAMES); /* signals = { TERM = 15, ... } */
  for (size_t i = 0; i < NNAMES; i++) {
    lua_pushinteger(L, names[i].num);
    lua_setfield(L, -2, names[i].name);
  }
  lua_setfield(L, -2, "signals");
}
