// A scripted stand-in for the Anthropic Messages API, for driving a real
// `claude -p` in specs (ANTHROPIC_BASE_URL=http://127.0.0.1:<port>).
//
// Usage: node mock-anthropic.mjs <script.json> <requests.jsonl>
// Listens on 127.0.0.1, a random port, printed alone on the first line of
// stdout. Ends on SIGTERM/SIGINT.
//
// The script: { "steps": [ step, ... ], "final": "text once steps run out" }
//   step: { "bash": "command", "description": "..." }   a Bash tool_use
//       | { "tool": "Name", "input": { ... } }          any tool_use
//       | { "text": "..." }                             a final answer
// Each POST /v1/messages of the agent's main loop (a request that offers the
// Bash tool) gets the next step; other requests (titles, topic checks and
// such side queries, which offer no Bash tool) get a short text and do not
// use a step. Answers stream (SSE) when the request asks for it.
//
// Every request is appended to the log as one JSON line:
//   { "n", "method", "path", "kind": "main"|"side"|"other", "step", "body" }
// written before the answer, so a spec that has seen the answer's effect
// can read the request.
import http from "node:http";
import { readFileSync, appendFileSync } from "node:fs";

const [scriptPath, logPath] = process.argv.slice(2);
if (!scriptPath || !logPath) {
  process.stderr.write("usage: mock-anthropic.mjs <script.json> <requests.jsonl>\n");
  process.exit(2);
}
const script = JSON.parse(readFileSync(scriptPath, "utf8"));
const steps = script.steps ?? [];
const finalText = script.final ?? "Done.";
let next = 0;
let n = 0;
let ids = 0;

const log = (entry) => appendFileSync(logPath, JSON.stringify(entry) + "\n");
const id = (prefix) => `${prefix}_mock${String(++ids).padStart(6, "0")}`;

// The content blocks and stop reason of a step.
function answer(step) {
  if (step.bash !== undefined) {
    return { stop: "tool_use", blocks: [{ type: "tool_use", id: id("toolu"), name: "Bash",
      input: { command: step.bash, description: step.description ?? "run a command",
               ...(step.timeout ? { timeout: step.timeout } : {}) } }] };
  }
  if (step.tool !== undefined) {
    return { stop: "tool_use", blocks: [{ type: "tool_use", id: id("toolu"), name: step.tool, input: step.input ?? {} }] };
  }
  return { stop: "end_turn", blocks: [{ type: "text", text: step.text ?? finalText }] };
}

const usage = (out) => ({ input_tokens: 10, output_tokens: out, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 });

function sendJson(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body),
                          "request-id": id("req") });
  res.end(body);
}

function sendMessage(res, model, { stop, blocks }, stream) {
  const message = { id: id("msg"), type: "message", role: "assistant", model: model ?? "claude-mock",
                    content: blocks, stop_reason: stop, stop_sequence: null, usage: usage(5) };
  if (!stream) return sendJson(res, 200, message);
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "request-id": id("req") });
  const ev = (type, data) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
  ev("message_start", { message: { ...message, content: [], stop_reason: null, usage: usage(1) } });
  blocks.forEach((b, index) => {
    if (b.type === "text") {
      ev("content_block_start", { index, content_block: { type: "text", text: "" } });
      ev("content_block_delta", { index, delta: { type: "text_delta", text: b.text } });
    } else {
      ev("content_block_start", { index, content_block: { ...b, input: {} } });
      ev("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: JSON.stringify(b.input) } });
    }
    ev("content_block_stop", { index });
  });
  ev("message_delta", { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: 5 } });
  ev("message_stop", {});
  res.end();
}

const offersBash = (body) => Array.isArray(body?.tools) && body.tools.some((t) => t?.name === "Bash");

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const raw = Buffer.concat(chunks).toString("utf8");
    let body = null;
    try { body = raw ? JSON.parse(raw) : null; } catch { body = raw; }
    const path = (req.url ?? "/").split("?")[0];
    const entry = { n: ++n, method: req.method, path, kind: "other", step: null, body };
    if (req.method === "POST" && path === "/v1/messages/count_tokens") {
      log(entry);
      return sendJson(res, 200, { input_tokens: 10 });
    }
    if (req.method === "POST" && path === "/v1/messages") {
      let reply;
      if (offersBash(body)) {
        entry.kind = "main";
        entry.step = next;
        reply = answer(next < steps.length ? steps[next] : { text: finalText });
        next += 1;
      } else {
        entry.kind = "side";
        reply = answer({ text: script.side ?? "ok" });
      }
      log(entry);
      return sendMessage(res, body?.model, reply, body?.stream === true);
    }
    // Anything else Claude Code may ask at start (a HEAD probe, settings,
    // metrics): an empty success, logged.
    log(entry);
    sendJson(res, 200, {});
  });
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${server.address().port}\n`);
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => { server.close(); process.exit(0); });
