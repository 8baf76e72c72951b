// End-to-end: the official MCP SDK client drives `bgproc mcp`.
// Usage: node mcp-e2e.mjs <bgproc> [mcp args...]; env: NODE_PATH-less, the
// SDK is imported from $BGPROC_SDK_DIR/node_modules. Prints one JSON object
// with what it saw; the busted spec checks it.
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const sdk = (p) => pathToFileURL(join(process.env.BGPROC_SDK_DIR, "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href;
const { Client } = await import(sdk("client/index.js"));
const { StdioClientTransport } = await import(sdk("client/stdio.js"));

const [bgproc, ...mcpArgs] = process.argv.slice(2);
const report = { calls: {} };
const transport = new StdioClientTransport({
  command: "lua5.4",
  args: [bgproc, "mcp", ...mcpArgs],
  env: process.env,
  stderr: "pipe",
});
let stderr = "";
transport.stderr?.on("data", (d) => { stderr += d; });
const client = new Client({ name: "bgproc-e2e", version: "1.0.0" });
await client.connect(transport);
report.serverVersion = client.getServerVersion();
report.protocolVersion = transport._protocolVersion ?? null;
report.capabilities = client.getServerCapabilities();

const { tools } = await client.listTools();
report.tools = tools.map((t) => t.name);

const call = async (label, name, args, opts) => {
  const res = await client.callTool({ name, arguments: args }, undefined, opts);
  report.calls[label] = { isError: res.isError ?? false, text: res.content?.[0]?.text, data: res.structuredContent };
  return res.structuredContent;
};

const session = await call("create_session", "createBackgroundProcess",
  { command: "echo booting; sleep 0.2; echo 'ready on port 4321'; sleep 1000", name: "session-web", tags: ["server"], readyPattern: "ready on port" });
const global = await call("create_global", "createBackgroundProcess",
  { argv: ["sleep", "1000"], name: "global-db", global: true, tags: ["db"] });
let progress = 0;
await call("wait_output", "waitForBackgroundProcess",
  { processId: session.id, until: "output", pattern: "ready on port (\\d+)", timeoutMs: 5000 });
await call("wait_progress", "waitForBackgroundProcess",
  { processId: global.id, timeoutMs: 700 },
  { onprogress: () => { progress += 1; }, resetTimeoutOnProgress: true });
report.progressNotifications = progress;
await call("get", "getBackgroundProcess", { processId: session.id, lines: 5 });
await call("list", "listBackgroundProcesses", { tags: ["server", "db"] });
const piped = await call("create_piped", "createBackgroundProcess", { argv: ["cat"], stdin: "pipe" });
await call("send", "sendBackgroundProcessInput", { processId: piped.id, input: "hello via stdin\n", eof: true });
await call("wait_piped", "waitForBackgroundProcess", { processId: piped.id, timeoutMs: 5000 });
await call("get_piped", "getBackgroundProcess", { processId: piped.id });
const doomed = await call("create_doomed", "createBackgroundProcess", { command: "sleep 1000 & sleep 1000 & wait" });
await call("kill", "killProcesses", { processId: doomed.id, graceMs: 1000 });
await call("error_unknown", "getBackgroundProcess", { processId: "no-such-id" });
await call("error_args", "createBackgroundProcess", { command: 42 });

report.sessionJob = session.id;
report.sessionPid = session.pid;
report.globalJob = global.id;
report.globalPid = global.pid;
await client.close();
report.stderr = stderr;
process.stdout.write(JSON.stringify(report) + "\n");
