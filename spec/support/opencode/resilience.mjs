// The plugin outside OpenCode, with OpenCode's side faked (a client whose
// session.get says "no parent"): what it does when the daemon is missing,
// restarts mid-session, or the socket answers -32001. Prints one JSON
// object with what it saw; spec/integrations/opencode_spec.lua checks it.
// Usage: node resilience.mjs <integrations/opencode/index.js> <case>
// env: BGPROC_SOCKET, BGPROC_BIN as for the plugin.
import net from "node:net";
import fs from "node:fs";

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
}
report.notices = notices;
console.log(JSON.stringify(report));
process.exit(0);
