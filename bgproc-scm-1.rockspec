rockspec_format = "3.0"
package = "bgproc"
version = "scm-1"
source = {
  url = "git+file:///bgproc",
}
description = {
  summary = "Background-process manager for people and AI coding agents",
  detailed = [[
    Start dev servers, builds and watchers in the background, read their
    output, and stop them with nothing left behind. A C core spawns,
    reaps and captures output into bounded rings; Lua implements tools,
    sessions, tags and plugins; a per-user daemon, a CLI and an MCP
    server expose them.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
  "luv",
  "lua-cjson",
  "argparse",
  "luasql-sqlite3", -- bgproc.store.db, the job records
}
external_dependencies = {
  PCRE2 = { header = "pcre2.h", library = "pcre2-8" },
}
-- The Makefile builds and installs (build type "make"), so this file lists
-- no module: `make modules` compiles core/<folder>/*.c into one .so per
-- folder, `make install-rock` copies every lua/bgproc/**/*.lua, the shipped
-- plugins/*.lua (as bgproc.plugins.NAME) and the .so files into the rock.
build = {
  type = "make",
  build_target = "modules",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    PCRE_CFLAGS = "-I$(PCRE2_INCDIR)",
    PCRE_LIBS = "-L$(PCRE2_LIBDIR) -lpcre2-8",
    WARN = "-std=c11 -Wall -Wextra", -- no -Werror where the compiler is yours
  },
  install_target = "install-rock",
  install_variables = {
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
  },
  install = {
    bin = { bgproc = "bin/bgproc" },
  },
}
