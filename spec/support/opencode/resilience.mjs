// The plugin outside OpenCode, with OpenCode's side faked (a client whose
// session.get says "no parent"): what it does when the daemon is missing,
// restarts mid-session, the socket answers -32001, or the connection drops
// after a request reached the daemon. Prints one JSON object with what it
// saw; spec/integrations/opencode_spec.lua checks it.
// Usage: node resilience.mjs <integrations/opencode/index.js> <case>
// env: BGPROC_SOCKET, BGPROC_BIN as for the plugin.
import net from "node:net";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [pluginPath, which] = process.argv.slice(2);
const { BgprocPlugin } = await import(pluginPath);
const notices = [];
const client = {
  session: {
    get: async ({ path }) => ({ data: { id: path.id, parentID: path.id === "ses_child" ? "ses_root" : undefined } }),
    prompt: async ({ path, body }) => { notices.push({ id: path.id, text: body.parts[0].text }); return { data: {} }; },
  },
  tui: { showToast: async () => ({ data: true }) },
  app: { log: async () => ({ data: true }) },
};
const ctx = (sessionID) => ({ sessionID, messageID: "m", agent: "build", directory: "/tmp", worktree: "/tmp",
                               abort: new AbortController().signal, metadata() {}, ask: async () => {} });
const report = {};
const settle = async (p) => {
  const t0 = Date.now();
  try { return { ok: true, value: await p, ms: Date.now() - t0 }; }
  catch (e) { return { ok: false, error: e instanceof Error ? e.message : String(e), isError: e instanceof Error, ms: Date.now() - t0 }; }
};
process.on("unhandledRejection", (e) => { report.unhandled = String(e?.message ?? e); });

if (which === "missing") {
  // no bgproc: the plugin still loads, the tools fail with a clear Error
  const t0 = Date.now();
  const hooks = await BgprocPlugin({ client, directory: "/tmp", worktree: "/tmp" });
  report.loadMs = Date.now() - t0;
  report.tools = Object.keys(hooks.tool);
  report.call = await settle(hooks.tool.listBackgroundProcesses.execute({}, ctx("ses_a")));
  await hooks.dispose();
} else if (which === "restart") {
  // a daemon restarted between two calls: reconnect, re-open, retry
  const hooks = await BgprocPlugin({ client, directory: "/tmp", worktree: "/tmp" });
  report.create = await settle(hooks.tool.createBackgroundProcess.execute({ command: "sleep 300", name: "before" }, ctx("ses_child")));
  report.stop = await settle(new Promise((resolve, reject) => {
    const s = net.createConnection(process.env.BGPROC_SOCKET);
    s.on("connect", () => s.write('{"jsonrpc":"2.0","id":1,"method":"daemon/stop"}\n'));
    s.on("data", () => {});
    s.on("close", resolve);
    s.on("error", reject);
  }));
  // the socket file goes when the old daemon is gone
  const deadline = Date.now() + 10000;
  while (fs.existsSync(process.env.BGPROC_SOCKET) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  report.after = await settle(hooks.tool.createBackgroundProcess.execute({ command: "sleep 300", name: "after" }, ctx("ses_child")));
  report.list = await settle(hooks.tool.listBackgroundProcesses.execute({ sessionId: "ses_root" }, ctx("ses_child")));
  // the session was opened again with notify: a job's end is told
  await settle(hooks.tool.createBackgroundProcess.execute({ command: "exit 3", name: "notice-after" }, ctx("ses_child")));
  const until = Date.now() + 3000;
  while (!notices.some((n) => n.text.includes("notice-after")) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  await hooks.dispose();
} else if (which === "refused") {
  // a socket that answers as a daemon of another user does
  const server = net.createServer((c) => {
    c.end('{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"permission denied: uid 1000 is not the daemon\'s"}}\n');
  });
  await new Promise((r) => server.listen(process.env.BGPROC_SOCKET, r));
  const hooks = await BgprocPlugin({ client, directory: "/tmp", worktree: "/tmp" });
  report.call = await settle(hooks.tool.listBackgroundProcesses.execute({}, ctx("ses_a")));
  await hooks.dispose();
  server.close();
} else if (which === "unsure") {
  // a proxy between the plugin and the real daemon drops the connection
  // when the daemon has answered chosen requests (the answer never comes
  // back), as a daemon that stops after doing the work would. The plugin
  // finds the proxy through a bin that starts the real daemon.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bgproc-oc-"));
  const proxyPath = path.join(tmp, "proxy.sock");
  const bin = path.join(tmp, "bgproc");
  const q = (v) => "'" + String(v).replace(/'/g, "'\\''") + "'";
  fs.writeFileSync(bin, `#!/bin/sh\n${q(process.env.BGPROC_BIN)} "$@" >/dev/null || exit $?\n`
    + `printf '%s\\n' ${q(JSON.stringify({ socket: proxyPath }))}\n`, { mode: 0o755 });
  const conns = []; // per plugin connection: [{ method, tool, fate }]
  const rules = []; // { match(msg), fate: "drop" | "refuse" }, each used once
  const lines = (sock, onLine) => {
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("data", (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) { const l = buf.slice(0, i); buf = buf.slice(i + 1); if (l) onLine(l); }
    });
  };
  const server = net.createServer((c) => {
    const seen = [];
    conns.push(seen);
    const up = net.createConnection(process.env.BGPROC_SOCKET);
    const dropOn = new Set(); // ids whose answer ends the connection instead
    const end = () => { c.destroy(); up.destroy(); };
    c.on("error", end); up.on("error", end); c.on("close", end); up.on("close", end);
    lines(c, (l) => {
      const msg = JSON.parse(l);
      const k = rules.findIndex((r) => r.match(msg));
      const fate = k >= 0 ? rules.splice(k, 1)[0].fate : "forward";
      if (msg.method) seen.push({ method: msg.method, tool: msg.params?.name, fate });
      if (fate === "refuse") {
        c.write(JSON.stringify({ jsonrpc: "2.0", id: msg.id,
          error: { code: -32000, message: "proxy refused this session/open", data: { code: "internal" } } }) + "\n");
        return;
      }
      if (fate === "drop") dropOn.add(msg.id);
      up.write(l + "\n");
    });
    lines(up, (l) => {
      const msg = JSON.parse(l);
      if (msg.id != null && dropOn.has(msg.id)) return end(); // the daemon did it; the plugin never hears
      c.write(l + "\n");
    });
  });
  await new Promise((r) => server.listen(proxyPath, r));
  const tool = (name) => (m) => m.method === "tools/call" && m.params?.name === name;
  const hooks = await BgprocPlugin({ client, directory: "/tmp", worktree: "/tmp" }, { bin });
  // a create the daemon did, its answer lost: a clear error, not a second job
  rules.push({ match: tool("createBackgroundProcess"), fate: "drop" });
  report.create = await settle(hooks.tool.createBackgroundProcess.execute({ command: "sleep 300", name: "unsure" }, ctx("ses_a")));
  // a kill likewise
  rules.push({ match: tool("killProcesses"), fate: "drop" });
  report.kill = await settle(hooks.tool.killProcesses.execute({ sessionId: "ses_a", graceMs: 100 }, ctx("ses_a")));
  // a read is sent again on a new connection
  rules.push({ match: tool("listBackgroundProcesses"), fate: "drop" });
  report.list = await settle(hooks.tool.listBackgroundProcesses.execute({}, ctx("ses_a")));
  // a reconnect whose session re-open fails: that call fails; the next one
  // connects again and re-opens the session before it is sent
  rules.push({ match: tool("getBackgroundProcess"), fate: "drop" });
  rules.push({ match: (m) => m.method === "session/open", fate: "refuse" });
  report.get = await settle(hooks.tool.getBackgroundProcess.execute({ processId: "nope" }, ctx("ses_a")));
  report.again = await settle(hooks.tool.createBackgroundProcess.execute({ command: "sleep 300", name: "again" }, ctx("ses_a")));
  report.conns = conns;
  await hooks.dispose();
  server.close();
  fs.rmSync(tmp, { recursive: true, force: true });
}
report.notices = notices;
console.log(JSON.stringify(report));
process.exit(0);
