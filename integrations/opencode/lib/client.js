// A client of the bgproc daemon: newline-delimited JSON-RPC 2.0 over its
// Unix socket (docs/protocol.md). It finds (and if need be starts) the
// daemon with `bgproc --json daemon start`, keeps one connection, bounds
// every wait, and on a lost connection (the daemon restarted) reconnects
// once, re-opens the sessions it had and retries the call.
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

class ConnectionLost extends Error {
  constructor(message) {
    super(message);
    this.name = "ConnectionLost";
  }
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
    if (this.sock && !this.sock.destroyed) return Promise.resolve();
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
    this.sock = sock;
    // a new connection after a lost one: the daemon (maybe a new one) must
    // know this client's sessions again, bound to this connection
    for (const params of this.sessions.values()) {
      await this._request(sock, "session/open", params, {});
    }
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

  _failAll(sock, err) {
    for (const [id, p] of this.pending) {
      if (p.sock !== sock) continue;
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.abortOff?.();
      p.reject(err);
    }
  }

  _onClose(sock) {
    if (this.sock === sock) this.sock = null;
    this._failAll(sock, new ConnectionLost("bgproc: the connection to the daemon was lost"));
  }

  // One request on the current connection. opts: timeoutMs, signal
  // (an AbortSignal: the daemon is told notifications/cancelled).
  async request(method, params, opts = {}) {
    await this.connect();
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
      this._send(sock, { jsonrpc: "2.0", id, method, params });
    });
  }

  _send(sock, msg) {
    try { if (!sock.destroyed) sock.write(JSON.stringify(msg) + "\n"); } catch {}
  }

  // A request that survives one daemon restart: on a lost connection it
  // reconnects, re-opens this client's sessions and retries once.
  async call(method, params, opts = {}) {
    try {
      return await this.request(method, params, opts);
    } catch (e) {
      if (!(e instanceof ConnectionLost) || this.closed) throw e;
      this.log("info", "bgproc: connection lost; reconnecting");
      try {
        return await this.request(method, params, opts);
      } catch (e2) {
        if (e2 instanceof ConnectionLost) throw new Error(`${e2.message} (again after a reconnect)`);
        throw e2;
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
