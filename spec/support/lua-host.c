/*
 * lua-host: a minimal C program that embeds liblua5.4, the way an editor or
 * any other application would, and runs a Lua script in it.
 *
 *   lua-host SCRIPT [ARGS...]     like `lua5.4 SCRIPT ARGS...`
 *   lua-host -e CODE [ARGS...]
 *
 * The specs use it twice: to prove bgproc works inside an embedding host,
 * and (built with -fsanitize=address,undefined as build/asan/lua-host) to
 * run the core's specs with the sanitizer runtime linked in first, so no
 * LD_PRELOAD leaks into the processes the tests start.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)",
                                         luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* arg = { [0] = script, ... } as the standalone interpreter sets it */
static void set_args(lua_State *L, int argc, char **argv, int script) {
  lua_createtable(L, argc - script - 1, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

int main(int argc, char **argv) {
  if (argc < 2 || (strcmp(argv[1], "-e") == 0 && argc < 3)) {
    fprintf(stderr, "usage: lua-host SCRIPT [ARGS...] | -e CODE [ARGS...]\n");
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (L == NULL) return 1;
  luaL_openlibs(L);
  int inline_code = strcmp(argv[1], "-e") == 0;
  int script = inline_code ? 2 : 1;
  set_args(L, argc, argv, script);
  lua_pushcfunction(L, traceback);
  int status = inline_code ? luaL_loadbuffer(L, argv[2], strlen(argv[2]), "=(-e)")
                           : luaL_loadfile(L, argv[1]);
  if (status == LUA_OK) {
    int nargs = argc - script - 1;
    luaL_checkstack(L, nargs, "too many arguments");
    for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
    status = lua_pcall(L, nargs, 0, 1);
  }
  if (status != LUA_OK) {
    fprintf(stderr, "lua-host: %s\n", lua_tostring(L, -1));
  }
  lua_close(L); /* runs every __gc: bgproc ends its jobs here */
  return status == LUA_OK ? 0 : 1;
}
