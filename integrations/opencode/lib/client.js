// A client of the bgproc daemon: newline-delimited JSON-RPC 2.0 over its
// Unix socket (docs/protocol.md). It finds (and if need be starts) the
// daemon with `bgproc --json daemon start`, keeps one connection, bounds
// every wait, and on a lost connection (the daemon restarted) reconnects
// once, re-opens the sessions it had and retries the call when that is
// safe: the request never reached the daemon, or it only reads (see call).
import fs from "node:fs";
import net from "node:net";
import { execFile } from "node:child_process";

export const DEFAULTS = {
  startTimeoutMs: 15000, // `bgproc --json daemon start`
  connectTimeoutMs: 5000,
  requestTimeoutMs: 30000,
};

// An error the daemon answered: a JSON-RPC error. `code` is the JSON-RPC
// code, `data` its data (data.code: invalid_argument, not_found, ...).
export class DaemonError extends Error {
  constructor(error) {
    super(typeof error?.message === "string" ? error.message : "bgproc daemon error");
    this.name = "DaemonError";
    this.code = error?.code;
    this.data = error?.data;
  }
}

// The connection went before the answer came. `written`: the request was
// handed to the socket, so the daemon may have acted on it.
class ConnectionLost extends Error {
  constructor(message, written = false) {
    super(message);
    this.name = "ConnectionLost";
    this.written = written;
  }
}

// Calls that may be sent again after a lost connection although the daemon
// may have got them: they change nothing (or re-opening is what a
// reconnect does anyway). Any other call is retried only if it was never
// written to the socket.
const RETRY_SAFE_METHODS = new Set(["tools/list", "session/open"]);
// the tools that change nothing (readOnlyHint in bgproc's catalog, tools.json)
const CATALOG = JSON.parse(fs.readFileSync(new URL("./tools.json", import.meta.url), "utf8"));
const RETRY_SAFE_TOOLS = new Set(CATALOG.tools.filter((t) => t.annotations?.readOnlyHint).map((t) => t.name));

function retrySafe(method, params) {
  if (RETRY_SAFE_METHODS.has(method)) return true;
  return method === "tools/call" && RETRY_SAFE_TOOLS.has(params?.name);
}

function usable(sock) {
  return !!sock && !sock.destroyed && sock.writable;
}

function runStart(bin, env, timeoutMs) {
  return new Promise((resolve, reject) => {
    execFile(bin, ["--json", "daemon", "start"], { env, timeout: timeoutMs, maxBuffer: 1 << 20 },
      (err, stdout, stderr) => {
        if (err) {
          if (err.code === "ENOENT") {
            reject(new Error(`bgproc: cannot run '${bin}' (not found; install bgproc or set BGPROC_BIN)`));
          } else if (err.killed) {
            reject(new Error(`bgproc: '${bin} --json daemon start' did not answer within ${timeoutMs} ms`));
          } else {
            const why = String(stderr || stdout || err.message).trim().split("\n").slice(-3).join(" | ");
            reject(new Error(`bgproc: the daemon could not be started: ${why}`));
          }
          return;
        }
        const lines = String(stdout).trim().split("\n").reverse();
        for (const line of lines) {
          try {
            const info = JSON.parse(line);
            if (info && typeof info.socket === "string") return resolve(info);
          } catch {}
        }
        reject(new Error(`bgproc: '${bin} --json daemon start' printed no socket: ${String(stdout).slice(0, 200)}`));
      });
  });
}

export class BgprocClient {
  // opts: bin, env, onNotification(method, params), log(level, msg),
  // startTimeoutMs, connectTimeoutMs, requestTimeoutMs
  constructor(opts = {}) {
    this.opts = { ...DEFAULTS, ...opts };
    this.bin = opts.bin || process.env.BGPROC_BIN || "bgproc";
    this.env = opts.env || process.env;
    this.sock = null;
    this.connecting = null;
    this.pending = new Map();
    this.nextId = 1;
    this.sessions = new Map(); // sessionId -> session/open params, re-sent after a reconnect
    this.socketPath = null;
    this.closed = false;
  }

  log(level, msg) {
    try { this.opts.log?.(level, msg); } catch {}
  }

  // Connected (starting the daemon if need be); shared by concurrent calls.
  connect() {
    if (this.closed) return Promise.reject(new Error("bgproc: client closed"));
    // (a socket the daemon has ended is not writable: connect anew)
    if (usable(this.sock)) return Promise.resolve();
    if (!this.connecting) {
      this.connecting = this._connect().finally(() => { this.connecting = null; });
    }
    return this.connecting;
  }

  async _connect() {
    const info = await runStart(this.bin, this.env, this.opts.startTimeoutMs);
    const socketPath = info.socket;
    this.socketPath = socketPath;
    const sock = await new Promise((resolve, reject) => {
      const s = net.createConnection(socketPath);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`bgproc: connecting to ${socketPath} timed out after ${this.opts.connectTimeoutMs} ms`));
      }, this.opts.connectTimeoutMs);
      s.once("connect", () => { clearTimeout(timer); resolve(s); });
      s.once("error", (e) => {
        clearTimeout(timer);
        reject(new Error(`bgproc: cannot connect to the daemon at ${socketPath}: ${e.message}`));
      });
    });
    sock.setNoDelay?.(true);
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("data", (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim() !== "") this._onLine(sock, line);
      }
    });
    sock.on("error", () => {}); // "close" follows
    sock.on("close", () => this._onClose(sock));
    // a new connection after a lost one: the daemon (maybe a new one) must
    // know this client's sessions again, bound to this connection. The
    // connection is used only once they are: if one fails it is dropped, and
    // the next call connects (and re-opens) again.
    try {
      for (const params of this.sessions.values()) {
        try {
          await this._request(sock, "session/open", params, {});
        } catch (e) {
          if (e instanceof DaemonError) {
            e.message = `bgproc: re-opening session ${params.sessionId} after a reconnect failed: ${e.message}`;
          }
          throw e;
        }
      }
      if (this.closed) throw new Error("bgproc: client closed");
    } catch (e) {
      sock.destroy();
      throw e;
    }
    this.sock = sock;
  }

  _onLine(sock, line) {
    let msg;
    try { msg = JSON.parse(line); } catch { return this.log("warn", "bgproc: unreadable line from the daemon"); }
    if (msg.id !== undefined && msg.id !== null) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      p.abortOff?.();
      if (msg.error) p.reject(new DaemonError(msg.error));
      else p.resolve(msg.result);
      return;
    }
    if (msg.error) {
      // id null: the daemon refused us (-32001: another user's socket)
      const err = new DaemonError(msg.error);
      err.message = `bgproc: the daemon refused the connection: ${err.message}`;
      err.fatal = true;
      this._failAll(sock, err);
      sock.destroy();
      return;
    }
    if (typeof msg.method === "string") {
      try {
        const r = this.opts.onNotification?.(msg.method, msg.params ?? {});
        if (r && typeof r.catch === "function") r.catch((e) => this.log("warn", `bgproc: notice handler: ${e?.message}`));
      } catch (e) {
        this.log("warn", `bgproc: notice handler: ${e?.message}`);
      }
    }
  }

  // err: an Error, or a function of the pending request giving one
  _failAll(sock, err) {
    for (const [id, p] of this.pending) {
      if (p.sock !== sock) continue;
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.abortOff?.();
      p.reject(typeof err === "function" ? err(p) : err);
    }
  }

  _onClose(sock) {
    if (this.sock === sock) this.sock = null;
    this._failAll(sock, (p) => new ConnectionLost("bgproc: the connection to the daemon was lost", p.written));
  }

  // One request on the current connection. opts: timeoutMs, signal
  // (an AbortSignal: the daemon is told notifications/cancelled).
  async request(method, params, opts = {}) {
    try {
      await this.connect();
    } catch (e) {
      // lost while re-opening the sessions: this request was not sent
      if (e instanceof ConnectionLost) throw new ConnectionLost(e.message, false);
      throw e;
    }
    const sock = this.sock;
    if (!sock) throw new ConnectionLost("bgproc: not connected");
    return this._request(sock, method, params, opts);
  }

  _request(sock, method, params, opts) {
    const id = this.nextId++;
    const timeoutMs = opts.timeoutMs ?? this.opts.requestTimeoutMs;
    return new Promise((resolve, reject) => {
      const p = { resolve, reject, sock };
      p.timer = setTimeout(() => {
        this.pending.delete(id);
        p.abortOff?.();
        this._send(sock, { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: id } });
        reject(new Error(`bgproc: ${method} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const signal = opts.signal;
      if (signal) {
        const onAbort = () => {
          if (!this.pending.has(id)) return;
          this.pending.delete(id);
          clearTimeout(p.timer);
          this._send(sock, { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: id } });
          reject(new Error(`bgproc: ${method} aborted`));
        };
        if (signal.aborted) { queueMicrotask(onAbort); }
        else {
          signal.addEventListener("abort", onAbort, { once: true });
          p.abortOff = () => signal.removeEventListener("abort", onAbort);
        }
      }
      this.pending.set(id, p);
      // written: the daemon may have it (a write the socket refuses, at once
      // or in its callback, never reached it)
      p.written = this._send(sock, { jsonrpc: "2.0", id, method, params }, (err) => {
        if (err) p.written = false;
      });
      if (!p.written && this.pending.get(id) === p) {
        // the socket is ended or gone: the daemon never saw this request
        this.pending.delete(id);
        clearTimeout(p.timer);
        p.abortOff?.();
        reject(new ConnectionLost("bgproc: the connection to the daemon was lost", false));
      }
    });
  }

  // true if the message was handed to the socket
  _send(sock, msg, cb) {
    try {
      if (!usable(sock)) return false;
      sock.write(JSON.stringify(msg) + "\n", cb);
      return true;
    } catch {
      return false;
    }
  }

  // A request that survives one daemon restart: on a lost connection it
  // reconnects, re-opens this client's sessions and retries once, if that
  // cannot do the work twice: the request was never written to the socket,
  // or the call only reads (retrySafe). A call the daemon may have done
  // (createBackgroundProcess, killProcesses, sendBackgroundProcessInput)
  // fails instead, saying its outcome is unknown.
  async call(method, params, opts = {}) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.request(method, params, opts);
      } catch (e) {
        if (!(e instanceof ConnectionLost) || this.closed) throw e;
        if (e.written && !retrySafe(method, params)) {
          const what = method === "tools/call" && typeof params?.name === "string" ? params.name : method;
          const err = new Error(`bgproc: the connection to the daemon was lost after ${what} was sent, `
            + "before its answer: its outcome is unknown (the daemon may or may not have done it). "
            + "Check with listBackgroundProcesses before trying again.");
          err.code = "outcome_unknown";
          throw err;
        }
        if (attempt >= 2) throw new Error(`${e.message} (again after a reconnect)`);
        this.log("info", "bgproc: connection lost; reconnecting");
      }
    }
  }

  // session/open once per session id (remembered for reconnects).
  async openSession(params) {
    const result = await this.call("session/open", params);
    this.sessions.set(params.sessionId, params);
    return result;
  }

  async closeSession(sessionId, reason, timeoutMs) {
    if (!this.sessions.has(sessionId)) return null;
    this.sessions.delete(sessionId);
    if (!this.sock) return null; // the daemon ended it with the connection
    return this.request("session/close", { sessionId, reason }, { timeoutMs });
  }

  // Close every session (bounded), then the connection.
  async shutdown(reason, timeoutMs = 3000) {
    const ids = [...this.sessions.keys()];
    if (this.sock && ids.length > 0) {
      const all = Promise.allSettled(ids.map((id) => this.closeSession(id, reason, timeoutMs)));
      let timer;
      await Promise.race([all, new Promise((r) => { timer = setTimeout(r, timeoutMs); })]);
      clearTimeout(timer);
    }
    this.close();
  }

  close() {
    this.closed = true;
    const sock = this.sock;
    this.sock = null;
    if (sock) {
      this._failAll(sock, new Error("bgproc: client closed"));
      sock.end();
      sock.destroy();
    }
  }
}
