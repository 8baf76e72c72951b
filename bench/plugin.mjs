// The OpenCode plugin's overhead: a tool call through the plugin's code
// path (integrations/opencode/index.js: session mapping, session/open,
// tools/call with text, the reply's text) against the same call sent
// straight to the daemon over its socket, in one run; and the latency of a
// notice (a job's end -> the plugin posting it to the chat).
//
// Usage: node bench/plugin.mjs [--calls N] [--notices N] [--json]
// Uses a private daemon (its own socket in a temporary directory, stopped
// at the end) unless BGPROC_SOCKET is set. Targets: p50 overhead <= 5 ms,
// notice latency <= 1 s.
import net from "node:net";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const CALLS = opt("--calls", 2000);
const NOTICES = opt("--notices", 5);
const JSON_OUT = argv.includes("--json");

let tmp = null;
if (!process.env.BGPROC_SOCKET) {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bgproc-plugin-bench-"));
  process.env.BGPROC_SOCKET = path.join(tmp, "daemon.sock");
  process.env.XDG_STATE_HOME = path.join(tmp, "state");
  fs.writeFileSync(path.join(tmp, "config.lua"), "return { plugins = {} }\n");
  process.env.BGPROC_CONFIG = path.join(tmp, "config.lua");
}
process.env.BGPROC_BIN ||= path.join(root, "bin", "bgproc");
delete process.env.BGPROC_SESSION;

const { BgprocPlugin } = await import(path.join(root, "integrations/opencode/index.js"));

// OpenCode's side, as the plugin sees it: a client whose session.get says
// "no parent" and whose session.prompt records when a notice came.
const noticeAt = new Map(); // processId -> ms
const fakeClient = {
  session: {
    get: async ({ path: p }) => ({ data: { id: p.id } }),
    prompt: async ({ body }) => {
      const t = Date.now();
      for (const m of body.parts[0].text.matchAll(/job (\S+)/g)) if (!noticeAt.has(m[1])) noticeAt.set(m[1], t);
      return { data: {} };
    },
  },
  tui: { showToast: async () => ({ data: true }) },
  app: { log: async () => ({ data: true }) },
};
const hooks = await BgprocPlugin({ client: fakeClient, directory: root, worktree: root });
const ctx = (sessionID) => ({ sessionID, messageID: "msg_bench", agent: "build", directory: root, worktree: root,
                               abort: new AbortController().signal, metadata() {}, ask: async () => {} });
const tool = (name, args, sid = "ses_bench") => hooks.tool[name].execute(args, ctx(sid));

// The direct path: one socket, one line out, one line back.
function direct() {
  const sock = net.createConnection(process.env.BGPROC_SOCKET);
  let buf = "";
  const waiting = new Map();
  let id = 0;
  sock.setEncoding("utf8");
  sock.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const msg = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      waiting.get(msg.id)?.(msg);
      waiting.delete(msg.id);
    }
  });
  return {
    ready: new Promise((r) => sock.once("connect", r)),
    call(method, params) {
      return new Promise((resolve) => {
        const n = ++id;
        waiting.set(n, resolve);
        sock.write(JSON.stringify({ jsonrpc: "2.0", id: n, method, params }) + "\n");
      });
    },
    close: () => sock.destroy(),
  };
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

// some jobs to list
for (let i = 0; i < 10; i++) await tool("createBackgroundProcess", { argv: ["sleep", "300"], name: `bench-${i}` });

const d = direct();
await d.ready;
const args = { name: "listBackgroundProcesses", arguments: {}, sessionId: "ses_bench", text: true };
for (let i = 0; i < 200; i++) { await tool("listBackgroundProcesses", {}); await d.call("tools/call", args); } // warm up
const viaPlugin = [];
const viaSocket = [];
for (let i = 0; i < CALLS; i++) { // interleaved, so both see the same machine
  let t0 = process.hrtime.bigint();
  await tool("listBackgroundProcesses", {});
  viaPlugin.push(ms(t0));
  t0 = process.hrtime.bigint();
  await d.call("tools/call", args);
  viaSocket.push(ms(t0));
}

// notices: a job that ends at once, in a chat of its own each time (the
// daemon sends at most one notice a second per session)
const latencies = [];
for (let i = 0; i < NOTICES; i++) {
  const sid = `ses_bench_notice_${i}`;
  await tool("createBackgroundProcess", { command: "exit 3", name: `notice-${i}` }, sid);
  const list = await d.call("tools/call", { name: "listBackgroundProcesses", arguments: { sessionId: sid } });
  const id = list.result.processes[0].id;
  const deadline = Date.now() + 5000;
  while (!noticeAt.has(id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  const rec = (await d.call("tools/call", { name: "getBackgroundProcess", arguments: { processId: id } })).result;
  latencies.push(noticeAt.has(id) ? noticeAt.get(id) - Date.parse(rec.endedAt ?? rec.process?.endedAt) : NaN);
}

d.close();
await hooks.dispose();
const daemonPid = (() => {
  try {
    return JSON.parse(execFileSync(process.env.BGPROC_BIN, ["--json", "daemon", "start"]).toString()).pid;
  } catch { return null; }
})();
const daemonHwm = (() => {
  try {
    return Number(fs.readFileSync(`/proc/${daemonPid}/status`, "utf8").match(/VmHWM:\s+(\d+)/)[1]);
  } catch { return null; }
})();
if (tmp) {
  try { execFileSync(process.env.BGPROC_BIN, ["daemon", "stop"], { stdio: "ignore" }); } catch {}
  fs.rmSync(tmp, { recursive: true, force: true });
}

const r = {
  calls: CALLS,
  pluginP50Ms: pct(viaPlugin, 50),
  socketP50Ms: pct(viaSocket, 50),
  pluginP99Ms: pct(viaPlugin, 99),
  socketP99Ms: pct(viaSocket, 99),
  noticeMs: latencies,
  benchPeakRssKiB: process.resourceUsage().maxRSS,
  daemonPeakRssKiB: daemonHwm,
};
r.overheadP50Ms = r.pluginP50Ms - r.socketP50Ms;
r.ratioP50 = r.pluginP50Ms / r.socketP50Ms;
r.noticeMaxMs = Math.max(...latencies);
r.ok = r.overheadP50Ms <= 5 && r.noticeMaxMs <= 1000;
if (JSON_OUT) {
  console.log(JSON.stringify(r));
} else {
  const f = (x) => x.toFixed(3);
  console.log(`listBackgroundProcesses x${CALLS} (10 jobs), interleaved:`);
  console.log(`  through the plugin  p50 ${f(r.pluginP50Ms)} ms  p99 ${f(r.pluginP99Ms)} ms`);
  console.log(`  straight to socket  p50 ${f(r.socketP50Ms)} ms  p99 ${f(r.socketP99Ms)} ms`);
  console.log(`  overhead p50 ${f(r.overheadP50Ms)} ms (x${r.ratioP50.toFixed(2)})  target <= 5 ms`);
  console.log(`notice latency (job end -> posted): ${latencies.map((x) => x.toFixed(0)).join(", ")} ms  target <= 1000 ms`);
  console.log(`peak RSS: bench (node + plugin) ${r.benchPeakRssKiB} KiB, daemon ${r.daemonPeakRssKiB ?? "?"} KiB`);
  console.log(r.ok ? "OK" : "OVER TARGET");
}
process.exit(r.ok ? 0 : 1);
