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
}
external_dependencies = {
  PCRE2 = { header = "pcre2.h", library = "pcre2-8" },
}
build = {
  type = "builtin",
  modules = {
    ["bgproc.core"] = {
      sources = {
        "core/cgroup.c", "core/core.c", "core/errors.c", "core/escape.c", "core/fds.c",
        "core/group.c", "core/guardian.c", "core/job.c", "core/loop.c", "core/proc.c",
        "core/ring.c", "core/signals.c", "core/spawn.c",
      },
      incdirs = { "core" },
      defines = { "_GNU_SOURCE" },
    },
    ["bgproc.regex"] = {
      sources = { "core/regex.c" },
      libraries = { "pcre2-8" },
    },
    ["bgproc.jsonenc"] = {
      sources = { "core/jsonenc.c" },
      libraries = { "m" },
    },
    ["bgproc"] = "lua/bgproc/init.lua",
    ["bgproc.cli"] = "lua/bgproc/cli.lua",
    ["bgproc.client"] = "lua/bgproc/client.lua",
    ["bgproc.daemon"] = "lua/bgproc/daemon.lua",
    ["bgproc.mcp"] = "lua/bgproc/mcp.lua",
    ["bgproc.paths"] = "lua/bgproc/paths.lua",
    ["bgproc.hooks"] = "lua/bgproc/hooks.lua",
    ["bgproc.owner"] = "lua/bgproc/owner.lua",
    ["bgproc.notices"] = "lua/bgproc/notices.lua",
    ["bgproc.rpc"] = "lua/bgproc/rpc.lua",
    ["bgproc.config"] = "lua/bgproc/config.lua",
    ["bgproc.errors"] = "lua/bgproc/errors.lua",
    ["bgproc.filter"] = "lua/bgproc/filter.lua",
    ["bgproc.json"] = "lua/bgproc/json.lua",
    ["bgproc.manager"] = "lua/bgproc/manager.lua",
    ["bgproc.plugins"] = "lua/bgproc/plugins.lua",
    ["bgproc.sched"] = "lua/bgproc/sched.lua",
    ["bgproc.schema"] = "lua/bgproc/schema.lua",
    ["bgproc.tags"] = "lua/bgproc/tags.lua",
    ["bgproc.text"] = "lua/bgproc/text.lua",
    ["bgproc.tools"] = "lua/bgproc/tools.lua",
    ["bgproc.plugins.autotag"] = "plugins/autotag.lua",
    ["bgproc.plugins.logfile"] = "plugins/logfile.lua",
    ["bgproc.plugins.restart"] = "plugins/restart.lua",
    ["bgproc.plugins.stall"] = "plugins/stall.lua",
  },
  install = {
    bin = { bgproc = "bin/bgproc" },
  },
}
