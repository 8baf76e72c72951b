// opencode-bgproc: bgproc's background-process tools in OpenCode, as a
// thin client of the bgproc daemon (docs/protocol.md). The daemon does the
// work, checks the arguments and writes the text the model reads; this
// plugin maps OpenCode chats to bgproc sessions and shows the daemon's
// notices (a job ended, became ready, printed a watched line) in the chat.
//
// Only the plugin is exported: OpenCode calls every export of a plugin
// module as a plugin.
import path from "node:path";
import fs from "node:fs";
import os from "node:os";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { BgprocClient, DaemonError } from "./lib/client.js";
import { shapeOf } from "./lib/schema.js";

// The tools as bgproc declares them (lib/tools.json, generated from
// lua/bgproc/tools/ by tools/opencode-catalog.lua): their names, and
// their schemas when the daemon cannot be asked at load.
const CATALOG = JSON.parse(fs.readFileSync(new URL("./lib/tools.json", import.meta.url), "utf8"));
const SHIPPED = new Map(CATALOG.tools.map((t) => [t.name, t]));
const TOOL_NAMES = [...SHIPPED.keys()];
const LOAD_TIMEOUT_MS = 10000; // the daemon's tools/list at load
const LOOKUP_TIMEOUT_MS = 5000; // OpenCode API calls (session parent, notices)
const CLOSE_TIMEOUT_MS = 3000; // session/close replies on exit
const { waitTimeoutMs: WAIT_DEFAULT_MS, graceMs: KILL_GRACE_DEFAULT_MS, maxGraceMs: KILL_GRACE_MAX_MS } =
  CATALOG.defaults;
const WAIT_SLACK_MS = 30000; // on top of a wait or a kill's grace: the daemon's own work

function bounded(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// OpenCode's zod (tool.schema): from @opencode-ai/plugin (this package's
// dependency), else a zod next to the project or OpenCode's config.
async function loadZod(dirs) {
  try {
    const m = await import("@opencode-ai/plugin");
    if (m.tool?.schema) return m.tool.schema;
  } catch {}
  try {
    const m = await import("zod");
    const z = m.z ?? m.default ?? m;
    if (typeof z?.object === "function") return z;
  } catch {}
  for (const dir of dirs) {
    if (!dir) continue;
    try {
      const file = createRequire(path.join(dir, "index.js")).resolve("zod");
      const m = await import(pathToFileURL(file).href);
      const z = m.z ?? m.default?.z ?? m.default ?? m;
      if (typeof z?.object === "function") return z;
    } catch {}
  }
  return null;
}

// A tools/call reply: { text, result } when the daemon writes text, else
// the bare result.
function textOf(reply) {
  if (reply && typeof reply === "object" && typeof reply.text === "string") return reply.text;
  return JSON.stringify(reply && typeof reply === "object" && "result" in reply ? reply.result : reply);
}

export const BgprocPlugin = async (input, options = {}) => {
  const env = process.env;
  const tracePath = options.trace ?? env.BGPROC_OPENCODE_TRACE; // JSON lines: load, notices
  const trace = (entry) => {
    if (!tracePath) return;
    try { fs.appendFileSync(tracePath, JSON.stringify({ at: Date.now(), ...entry }) + "\n"); } catch {}
  };
  const log = (level, message) => {
    try {
      const r = input.client?.app?.log?.({ body: { service: "bgproc", level, message } });
      if (r && typeof r.catch === "function") r.catch(() => {});
    } catch {}
  };
  const projectDir = input.directory || input.worktree || process.cwd();

  const client = new BgprocClient({
    bin: options.bin ?? env.BGPROC_BIN ?? "bgproc",
    env,
    log,
    onNotification: (method, params) => {
      if (method === "notifications/jobs") return deliverNotice(params);
    },
  });

  // ---- chats -> bgproc sessions

  const roots = new Map(); // OpenCode session id -> Promise<root chat id>
  function rootOf(sessionID) {
    if (!sessionID) return Promise.resolve(undefined);
    let p = roots.get(sessionID);
    if (!p) {
      p = (async () => {
        let id = sessionID;
        for (let depth = 0; depth < 32; depth++) {
          const r = await bounded(input.client.session.get({ path: { id } }), LOOKUP_TIMEOUT_MS, "session lookup");
          const parent = r?.data?.parentID;
          if (!parent) return id;
          id = parent;
        }
        return id;
      })();
      roots.set(sessionID, p);
      p.catch(() => roots.delete(sessionID)); // ask again next time
    }
    return p.catch(() => sessionID); // OpenCode did not say: the chat itself
  }

  const opening = new Map(); // root id -> Promise of its session/open
  function ensureSession(root) {
    let p = opening.get(root);
    if (!p) {
      p = client.openSession({ sessionId: root, bind: "connection", notify: true, owner: `OpenCode chat ${root}` });
      opening.set(root, p);
      p.catch(() => opening.delete(root));
    }
    return p;
  }

  // ---- notices

  async function deliverNotice(params) {
    const sessionId = params?.sessionId;
    if (typeof sessionId !== "string") return;
    const events = Array.isArray(params.events) ? params.events : [];
    const text = typeof params.text === "string" && params.text !== "" ? params.text : JSON.stringify(events);
    const t0 = Date.now();
    let ok = false;
    let error;
    try {
      const r = await bounded(input.client.session.prompt({
        path: { id: sessionId },
        body: { noReply: true, parts: [{ type: "text", text }] },
      }), LOOKUP_TIMEOUT_MS, "posting a bgproc notice");
      ok = !r?.error;
      if (r?.error) error = JSON.stringify(r.error).slice(0, 300);
    } catch (e) {
      error = e?.message ?? String(e);
    }
    trace({ kind: "notice", sessionId, text, events: events.map((e) => ({ event: e.event, processId: e.processId })), ok, error, received: t0, ms: Date.now() - t0 });
    if (error) log("warn", `bgproc notice not posted to ${sessionId}: ${error}`);
    try {
      const bad = events.some((e) => e?.event === "ended" && e?.status !== "completed");
      const first = text.replace(/^\[bgproc\]\s*/, "").split("\n")[0];
      const r = input.client?.tui?.showToast?.({
        body: { title: "bgproc", message: first.length > 120 ? first.slice(0, 117) + "..." : first, variant: bad ? "warning" : "info" },
      });
      if (r && typeof r.catch === "function") r.catch(() => {});
    } catch {}
  }

  // ---- tools, from the daemon's tools/list

  let listed = null; // name -> { description, inputSchema }
  async function fetchTools(timeoutMs) {
    const r = await bounded(client.call("tools/list", {}), timeoutMs, "bgproc tools/list");
    const map = new Map();
    for (const t of r?.tools ?? []) map.set(t.name, t);
    listed = map;
    return map;
  }

  let mode = "zod";
  let loadError;
  try {
    await fetchTools(LOAD_TIMEOUT_MS);
  } catch (e) {
    loadError = e?.message ?? String(e);
    mode = "permissive";
    log("warn", `bgproc: tools/list at load failed (${loadError}); the daemon will check the arguments`);
  }
  const z = mode === "zod"
    ? await loadZod([path.join(projectDir, ".opencode"), projectDir, input.worktree,
                     path.join(env.XDG_CONFIG_HOME || path.join(os.homedir(), ".config"), "opencode")])
    : null;
  if (mode === "zod" && !z) mode = "json";
  trace({ kind: "load", mode, error: loadError, tools: listed ? [...listed.keys()] : [] });

  function resolveCwd(cwd, ctx) {
    const base = ctx?.directory || projectDir;
    if (typeof cwd !== "string" || cwd === "") return base;
    return path.resolve(base, cwd);
  }

  async function execute(name, args, ctx) {
    try {
      const root = (await rootOf(ctx?.sessionID)) ?? undefined;
      if (root) await ensureSession(root);
      const a = { ...(args ?? {}) };
      if (name === "createBackgroundProcess") a.cwd = resolveCwd(a.cwd, ctx);
      // the tools that wait get the time they may take, and slack: a
      // request cut short is cancelled, a kill's stop with it
      let timeoutMs;
      if (name === "waitForBackgroundProcess") {
        timeoutMs = (Number.isInteger(a.timeoutMs) && a.timeoutMs >= 0 ? a.timeoutMs : WAIT_DEFAULT_MS) + WAIT_SLACK_MS;
      } else if (name === "killProcesses") {
        const grace = Number.isInteger(a.graceMs) && a.graceMs >= 0 ? Math.min(a.graceMs, KILL_GRACE_MAX_MS)
          : KILL_GRACE_DEFAULT_MS;
        timeoutMs = grace + WAIT_SLACK_MS;
      }
      const reply = await client.call("tools/call", { name, arguments: a, sessionId: root, text: true },
        { timeoutMs, signal: ctx?.abort });
      return textOf(reply);
    } catch (e) {
      if (e instanceof DaemonError) throw new Error(e.message);
      throw e instanceof Error ? e : new Error(String(e));
    }
  }

  const tools = {};
  for (const name of TOOL_NAMES) {
    // the daemon's own definition; the shipped one if it could not be asked
    const def = listed?.get(name) ?? SHIPPED.get(name);
    tools[name] = {
      description: def.description,
      args: mode === "zod" ? shapeOf(z, def.inputSchema) : {},
      execute: (args, ctx) => execute(name, args, ctx),
    };
  }

  return {
    tool: tools,

    // Without zod, or without the daemon at load, the model still gets the
    // daemon's own schema (fetched now if it was not at load).
    "tool.definition": async (inp, out) => {
      if (mode === "zod" || !TOOL_NAMES.includes(inp?.toolID)) return;
      let map = listed;
      try {
        map ??= await fetchTools(LOOKUP_TIMEOUT_MS);
      } catch {
        map = SHIPPED; // the daemon still checks the arguments
      }
      const def = map.get(inp.toolID);
      if (!def) return;
      out.description = def.description;
      out.jsonSchema = def.inputSchema;
    },

    // The bash tool's commands join the chat's session: `bgproc start`
    // typed by the agent makes a job of this chat.
    "shell.env": async (inp, out) => {
      try {
        if (!inp?.sessionID) return;
        const root = await rootOf(inp.sessionID);
        await ensureSession(root);
        out.env.BGPROC_SESSION = root;
        if (client.socketPath) out.env.BGPROC_SOCKET = client.socketPath;
      } catch (e) {
        log("warn", `bgproc: shell.env: ${e?.message ?? e}`);
      }
    },

    // OpenCode does not wait on this hook's promise: it never rejects.
    event: async ({ event }) => {
      try {
        if (event?.type === "session.deleted") {
          const id = event.properties?.info?.id;
          if (!id) return;
          roots.delete(id);
          opening.delete(id);
          await client.closeSession(id, "OpenCode chat deleted", CLOSE_TIMEOUT_MS);
        }
      } catch (e) {
        log("warn", `bgproc: closing a deleted chat's session: ${e?.message ?? e}`);
      }
    },

    dispose: async () => {
      try {
        await client.shutdown("OpenCode exited", CLOSE_TIMEOUT_MS);
      } catch {}
      trace({ kind: "dispose" });
    },
  };
};

export default BgprocPlugin;
