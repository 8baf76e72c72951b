// A scripted OpenAI-compatible chat server for driving `opencode run`
// without a model. Loopback only, random port.
//
// Usage: node mock-openai.mjs <script.json> <log.jsonl>
// Prints {"port":N} on stdout once listening; exits on SIGTERM/SIGINT or
// when its stdin closes (so it never outlives the spec that started it).
//
// The script is a JSON array of steps; each request of the agent (one with
// `tools` in its body) gets the next step:
//   { "tool": { "name": "createBackgroundProcess", "arguments": {...} } }
//   { "text": "final answer" }
//   { "awaitFile": "/path", "contains": "...", "timeoutMs": 5000, ...step }
//       hold the answer until the file exists (and holds `contains`), at
//       most timeoutMs, then answer with the rest of the step
// After the script ends every request gets the text "done". Requests
// without tools (titles, summaries) get a short text and use no step.
// Every request's body is appended to the log, one JSON line each, with
// the step it got and the time it came in.
import http from "node:http";
import fs from "node:fs";

const [scriptPath, logPath] = process.argv.slice(2);
const script = JSON.parse(fs.readFileSync(scriptPath, "utf8"));
let next = 0;
let callSeq = 0;

const log = (entry) => fs.appendFileSync(logPath, JSON.stringify(entry) + "\n");

async function awaitFile(step) {
  const deadline = Date.now() + (step.timeoutMs ?? 5000);
  for (;;) {
    let body = null;
    try { body = fs.readFileSync(step.awaitFile, "utf8"); } catch {}
    if (body !== null && (!step.contains || body.includes(step.contains))) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

function chunk(id, model, delta, finish) {
  return "data: " + JSON.stringify({
    id, object: "chat.completion.chunk", created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, delta, finish_reason: finish ?? null }],
  }) + "\n\n";
}

function answer(res, body, step) {
  const id = "chatcmpl-mock-" + (++callSeq);
  const model = body.model || "mock";
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  if (step.tool) {
    const call = {
      index: 0, id: "call_mock_" + callSeq, type: "function",
      function: { name: step.tool.name, arguments: JSON.stringify(step.tool.arguments ?? {}) },
    };
    res.write(chunk(id, model, { role: "assistant", content: null, tool_calls: [call] }));
    res.write(chunk(id, model, {}, "tool_calls"));
  } else {
    res.write(chunk(id, model, { role: "assistant", content: step.text ?? "done" }));
    res.write(chunk(id, model, {}, "stop"));
  }
  res.write("data: " + JSON.stringify({
    id, object: "chat.completion.chunk", created: Math.floor(Date.now() / 1000), model, choices: [],
    usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
  }) + "\n\n");
  res.end("data: [DONE]\n\n");
}

const server = http.createServer((req, res) => {
  let raw = "";
  req.on("data", (d) => { raw += d; });
  req.on("end", async () => {
    const at = Date.now();
    if (req.method === "GET" && req.url.endsWith("/models")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ object: "list", data: [{ id: "mock-model", object: "model" }] }));
      return;
    }
    if (req.method !== "POST" || !req.url.endsWith("/chat/completions")) {
      log({ at, url: req.url, method: req.method, unexpected: true });
      res.writeHead(404).end();
      return;
    }
    let body = {};
    try { body = JSON.parse(raw); } catch {}
    const agent = Array.isArray(body.tools) && body.tools.length > 0;
    let step = { text: agent ? "done" : "Mock title" };
    let index = null;
    if (agent && next < script.length) { index = next; step = script[next++]; }
    let awaited;
    if (step.awaitFile) awaited = await awaitFile(step);
    log({ at, step: index, agent, awaited, stream: body.stream, messages: body.messages,
          tools: agent ? body.tools.map((t) => t.function?.name) : undefined,
          toolSchemas: agent ? Object.fromEntries(body.tools.map((t) => [t.function?.name, t.function?.parameters])) : undefined });
    if (body.stream === false) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({
        id: "chatcmpl-mock", object: "chat.completion", created: Math.floor(at / 1000), model: body.model,
        choices: [{ index: 0, message: { role: "assistant", content: step.text ?? "done" }, finish_reason: "stop" }],
        usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
      }));
      return;
    }
    answer(res, body, step);
  });
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
const bye = () => { server.close(); server.closeAllConnections?.(); process.exit(0); };
process.on("SIGTERM", bye);
process.on("SIGINT", bye);
process.stdin.on("end", bye);
process.stdin.on("error", bye);
process.stdin.resume();
