-- createBackgroundProcess: start a job and return its record at once.
local common = require "bgproc.tools.common"
local errors = require "bgproc.lib.errors"
local text = require "bgproc.lib.text"
local url = require "bgproc.lib.url"

local int, object = common.int, common.object

-- The name of the first field of v holding a NUL byte (in a key or a
-- value, at any depth), or nil. `path` names v itself.
local function nul_field(v, path)
  if type(v) == "string" then return v:find("\0", 1, true) and path or nil end
  if type(v) == "table" then
    for k, x in pairs(v) do
      local sub = type(k) == "number" and ("%s[%d]"):format(path, k) or (path == "" and k or path .. "." .. k)
      if type(k) == "string" and k:find("\0", 1, true) then return sub end
      local found = nul_field(x, sub)
      if found then return found end
    end
  end
end

local create = {
  name = "createBackgroundProcess",
  description = "Start a command in the background (a dev server, a build, a watcher, tests) "
    .. "and return at once with its process id. Give `command` (a shell string) or `argv` "
    .. "(program and arguments, no shell). Session jobs end when the session ends; "
    .. "`global: true` jobs keep running. Read output with getBackgroundProcess, wait for "
    .. "readiness or exit with waitForBackgroundProcess, stop with killProcesses.",
  inputSchema = object {
    command = { type = "string", minLength = 1, maxLength = 65536,
                description = "Shell command, run with /bin/sh -c." },
    argv = { type = "array", minItems = 1, maxItems = 4096,
             items = { type = "string", minLength = 1, maxLength = 65536 },
             description = "Program and arguments, run without a shell." },
    name = { type = "string", minLength = 1, maxLength = 200, description = "A descriptive name." },
    tags = { type = "array", maxItems = 64, items = { type = "string", maxLength = 200 },
             description = "Labels to filter by, e.g. [\"server\", \"frontend\"]." },
    global = { type = "boolean", description = "Outlive the session (default false)." },
    cwd = { type = "string", minLength = 1, maxLength = 4096, description = "Working directory." },
    env = { type = "object", additionalProperties = { type = "string", maxLength = 65536 },
            description = "Environment variables added to (or overriding) the inherited ones." },
    inheritEnv = { type = "boolean",
                   description = "false: the job's environment is exactly `env` (default true: env is added)." },
    baseEnv = { type = "object", additionalProperties = { type = "string", maxLength = 65536 },
                description = "The environment `env` is added to, in place of the manager's: clients that run "
                  .. "elsewhere send their own (bgproc's CLI and MCP server do). Used, never stored: history "
                  .. "keeps only `env`." },
    rerun = { type = "string", minLength = 1, maxLength = 200,
              description = "Id or name of an earlier job (also one from before the manager restarted): start "
                .. "its command again as a new job, with its name, tags, cwd, env (as it was given), global "
                .. "and options. Fields given here replace its." },
    stdin = { type = "string", enum = { "null", "pipe" },
              description = "\"null\" (default: a prompt sees end of input) or \"pipe\" (send input later)." },
    pty = { type = "boolean", description = "Run on a pseudo-terminal, for programs that need a TTY." },
    timeoutMs = { type = "integer", minimum = 1, maximum = 7 * 24 * 3600 * 1000,
                  description = "Stop the job and all it started (TERM, then KILL) after this long; it then "
                    .. "counts as failed (a job whose leader already exited keeps its status; what it left "
                    .. "running is stopped)." },
    outputBytes = { type = "integer", minimum = 1024, maximum = 1 << 30,
                    description = "Output kept in memory (a ring: the newest bytes win). Default 1 MiB." },
    readyPattern = { type = "string", minLength = 1, maxLength = 1000,
                     description = "Regular expression; the first output line matching it marks the job ready." },
    readyPort = { type = "integer", minimum = 0, maximum = 65535,
                  description = "The job is ready once a process of it listens on this TCP/UDP port (0: on "
                    .. "any port)." },
    readyUrl = { type = "string", minLength = 1, maxLength = 2048,
                 description = "The job is ready once an HTTP GET of this URL (http or https on a loopback "
                   .. "address: localhost, 127.x.x.x, [::1]) answers with a status below 500." },
    memoryMax = { type = "integer", minimum = 1 << 20, maximum = 1 << 50,
                  description = "Bytes of memory the job may use, all its processes together (at least "
                    .. "1 MiB): over it, it is stopped and fails with stopReason \"memory\". The job's "
                    .. "cgroup enforces it where the machine allows, else a watchdog checks every second." },
    unique = { type = "string", enum = { "reuse", "replace" },
               description = "With `name`: if a job of that name runs in the same cwd (in this session, or "
                 .. "global), \"reuse\" returns it as it is (reused: true) and \"replace\" stops it and starts "
                 .. "this one under its id." },
    notifyPattern = { type = "string", minLength = 1, maxLength = 1000,
                      description = "Regular expression; an output line matching it is told to the session's "
                        .. "owner as a notice (at most one a second), like the job's end and readiness." },
  },
  -- the `bgproc start` options: argument field, flag, help
  cli = {
    { "name", "--name", "A descriptive name." },
    { "tags", "--tag", "A tag (repeatable)." },
    { "global", "--global", "Outlive the owner's session (the terminal's shell, the agent): until killed." },
    { "cwd", "--cwd", "Working directory (default: the current one)." },
    { "env", "--env", "NAME=VALUE added to the environment (repeatable)." },
    { "pty", "--pty", "Run on a pseudo-terminal." },
    { "stdin", "--stdin", "Keep stdin open as a pipe (see `bgproc send`).", value = "pipe" },
    { "timeoutMs", "--timeout", "Stop it after MS milliseconds.", argname = "<ms>" },
    { "readyPattern", "--ready", "Regex: the first matching line marks it ready.", argname = "<re>" },
    { "readyPort", "--ready-port", "Ready once it listens on port N (0: any port).", argname = "<n>" },
    { "readyUrl", "--ready-url", "Ready once an HTTP GET of URL (loopback) answers below 500.", argname = "<url>" },
    { "memoryMax", "--memory-max", "Stop it when it uses more memory (bytes, or 512K, 256M, 2G).",
      argname = "<size>", parse = "bytes" },
    { "unique", "--unique", "If a job of this --name runs in this cwd: reuse it, or replace it." },
    { "notifyPattern", "--notify", "Regex: a matching line is told to the session's owner (an agent's notices).",
      argname = "<re>" },
    { "outputBytes", "--output-bytes", "Output kept in memory.", argname = "<n>" },
  },
}

-- What may mark a job ready: one of these.
local READINESS = { "readyPattern", "readyPort", "readyUrl" }

-- What the schema cannot say. Runs on the caller's arguments and again
-- on what a plugin's on_create returns.
function create.check(args, engine)
  local nul = nul_field(args, "")
  if nul then return errors.fail("invalid_argument", "'%s' must not contain NUL bytes", text.utf8(nul)) end
  if (args.command == nil) == (args.argv == nil) and not (args.rerun and args.command == nil) then
    return errors.fail("invalid_argument", "give exactly one of 'command' (a shell string) or 'argv' (a list)"
      .. (args.rerun and "" or ", or 'rerun'"))
  end
  for k in pairs(args.env or {}) do
    if k == "" or k:find("=", 1, true) then
      return errors.fail("invalid_argument", "'env': variable name '%s' must be non-empty without '='", k)
    end
  end
  if args.pty and args.stdin then
    return errors.fail("invalid_argument", "'stdin' and 'pty' exclude each other (a pty is also stdin)")
  end
  local _, err = engine:tag_list(args.tags)
  if err then return errors.fail("invalid_argument", "'tags': %s", err) end
  local max_ring = engine:settings().maxRingBytes
  if args.outputBytes and args.outputBytes > max_ring then
    return errors.fail("invalid_argument", "'outputBytes' must be <= %d (maxRingBytes), got %d", max_ring,
      args.outputBytes)
  end
  if args.unique and not args.name and not args.rerun then
    return errors.fail("invalid_argument", "'unique' needs 'name' (the name a running job is found by)")
  end
  local ready_by = {}
  for _, field in ipairs(READINESS) do if args[field] ~= nil then ready_by[#ready_by + 1] = field end end
  if #ready_by > 1 then
    return errors.fail("invalid_argument", "give one of %s, not %s", common.either(READINESS),
      table.concat(ready_by, " and "))
  end
  if args.readyUrl then
    local _, uerr = url.parse_loopback(args.readyUrl)
    if uerr then return errors.fail("invalid_argument", "'readyUrl': %s", uerr) end
  end
  for _, field in ipairs { "readyPattern", "notifyPattern" } do
    if args[field] then
      local re, rerr = common.regex(field, args[field])
      if not re then return nil, rerr end
    end
  end
  return true
end

-- Only a unique start waits (for a replace to stop the old job, or for
-- another unique start of the same name to be done).
function create.waits(args) return args.unique ~= nil end

-- The arguments of a rerun: the earlier job's, with those given over them.
local function rerun_args(engine, args, ctx)
  local rec, err = engine:resolve(args.rerun, ctx and ctx.sessionId, "rerun")
  if not rec then return nil, err end
  local merged = engine:spec_of(rec)
  for k, v in pairs(args) do merged[k] = v end
  merged.rerun = nil
  if args.command then merged.argv = nil elseif args.argv then merged.command = nil end
  return common.validate(create, merged, engine)
end

function create.handler(engine, args, ctx)
  if args.rerun then
    local err
    args, err = rerun_args(engine, args, ctx)
    if not args then return nil, err end
  end
  local r, err = engine:create(args, ctx, function(a) return common.validate(create, a, engine) end)
  local failure = r and engine:store_failure()
  if failure then r.warning = "history is not being saved (" .. failure .. ")" end
  return r, err
end

function create.text(r)
  local line = ("%s %s (pid %s): %s"):format(r.reused and "reusing" or "started", r.id, int(r.pid), r.name)
  return r.warning and (line .. "\nwarning: " .. r.warning) or line
end

return create
