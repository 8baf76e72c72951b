// Runs one benchmark workload against the seed, @zenobius/opencode-background
// 0.1.0-alpha.2, under Bun, by calling its tools' execute functions the way
// OpenCode would (args, tool context). Our own code; the seed is fetched by
// bench/seed/setup.sh.
//
//   bun driver.mjs SEED_BUNDLE BENCH PARAMS_JSON
//
// Prints one JSON line: {"value":V,"rss_kib":K,"extra":{...}}.
// BENCH: spawn | capture | list | scale | list_call.
//
// PARAMS_JSON.mark goes into process.env.BGPROC_BENCH_MARK here, so every
// job the seed starts from now on carries it (execa extends process.env),
// while this process's own /proc environ and its siblings' do not: survivors
// are found by that marker in /proc/*/environ and nothing else is touched.
import { readFileSync, readdirSync } from "node:fs";

const [bundle, bench, paramsJson] = process.argv.slice(2);
const params = JSON.parse(paramsJson || "{}");
const MARK = params.mark;
if (!MARK) throw new Error("params.mark must be set (it marks the jobs for cleanup)");
process.env.BGPROC_BENCH_MARK = MARK;

const { BackgroundProcesssPlugin } = await import(bundle);
// The plugin takes OpenCode's plugin context; this version reads none of it.
const plugin = await BackgroundProcesssPlugin({
  client: {}, project: { id: "bench" }, directory: process.cwd(), worktree: process.cwd(), $: undefined,
});
const tools = plugin.tool;
const toolCtx = { sessionID: "bench", messageID: "bench", agent: "bench", abort: new AbortController().signal };
const call = (name, args) => tools[name].execute(args, toolCtx);

const now = () => Number(process.hrtime.bigint()) / 1e6; // ms
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// Poll k of one wait: the first few on the next turn of the event loop (a
// fast job is done within a millisecond), then every millisecond, so a busy
// machine's CPU goes to the jobs, not to the polling.
const tick = (k) => (k < 8 ? new Promise((resolve) => setImmediate(resolve)) : pause(1));

function statusKib(field) {
  const m = readFileSync("/proc/self/status", "utf8").match(new RegExp(`^${field}:\\s+(\\d+)`, "m"));
  return Number(m[1]);
}

function median(xs) {
  xs.sort((a, b) => a - b);
  return xs[(xs.length + 1 >> 1) - 1];
}

// The seed has no "wait" tool: poll its get tool until the job leaves
// "running" (execa's promise settled: the process exited and was reaped).
// A kill sets "cancelled" at once and "failed" once execa sees the exit.
async function settle(id) {
  for (let k = 0; ; k++) {
    const rec = JSON.parse(await call("getBackgroundProcess", { taskId: id }));
    if (rec.status !== "running") return rec;
    await tick(k);
  }
}

async function runToEnd(command) {
  return settle(await call("createBackgroundProcess", { command }));
}

// Processes carrying our marker, other than this one: [{pid, state}].
function marked() {
  const found = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (!readFileSync(`/proc/${name}/environ`, "latin1").split("\0").includes(`BGPROC_BENCH_MARK=${MARK}`)) continue;
      const stat = readFileSync(`/proc/${name}/stat`, "latin1");
      found.push({ pid: Number(name), state: stat.slice(stat.lastIndexOf(")") + 2)[0] });
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

function killMarked() {
  for (const p of marked()) {
    try { process.kill(p.pid, "SIGKILL"); } catch {}
  }
}

// Kill every job through the seed's kill tool. The tool only signals each
// job's `sh -c` and returns; the job's own process may live on (dash forks
// the command). So: the ms the tool took, then a wait of up to graceMs for
// every marked process to be gone, and what is left alive or a zombie.
async function killAll(graceMs) {
  const t0 = now();
  await call("killTasks", {});
  const callMs = now() - t0;
  let left = marked();
  while (left.length > 0 && now() - t0 < graceMs) {
    await pause(20);
    left = marked();
  }
  return {
    callMs,
    goneMs: left.length === 0 ? now() - t0 : undefined,
    survivors: left.filter((p) => p.state !== "Z").length,
    zombies: left.filter((p) => p.state === "Z").length,
  };
}

const benches = {
  // createBackgroundProcess `/bin/true`, polled to completion, n times.
  async spawn(p) {
    for (let i = 0; i < 20; i++) await runToEnd("/bin/true");
    const t0 = now();
    for (let i = 0; i < p.n; i++) {
      const rec = await runToEnd("/bin/true");
      if (rec.status !== "completed") throw new Error(`job ${rec.id}: ${rec.status} ${rec.error}`);
    }
    return { value: p.n / ((now() - t0) / 1000) };
  },

  // One job printing p.bytes (the C baseline's writer); MiB/s and memory.
  async capture(p) {
    const before = statusKib("VmRSS");
    const t0 = now();
    const rec = await runToEnd(`${p.writer} write ${p.bytes}`);
    const dt = (now() - t0) / 1000;
    const peak = statusKib("VmHWM");
    return {
      value: p.bytes / 1048576 / dt,
      extra: { status: rec.status, error: rec.error || undefined, grown_kib: peak - before, bytes: p.bytes },
    };
  },

  // The list tool with a tag filter over p.records finished records.
  async list(p) {
    const tagsets = ["server", "test", "build", "watch", "db", "frontend", "backend", "lint", "docs", "misc"];
    let batch = [];
    for (let i = 1; i <= p.records; i++) {
      batch.push(await call("createBackgroundProcess", { command: "/bin/true", tags: [tagsets[i % 10]] }));
      if (batch.length === 200 || i === p.records) {
        for (const id of batch) await settle(id);
        batch = [];
      }
    }
    let out;
    const times = [];
    for (let i = 0; i < p.calls; i++) {
      const t0 = now();
      out = await call("listBackgroundProcesss", { tags: ["server"] });
      times.push(now() - t0);
    }
    const count = JSON.parse(out).length;
    if (count !== p.records / 10) throw new Error(`list: expected ${p.records / 10} records, got ${count}`);
    return { value: median(times) };
  },

  // p.n concurrent `sleep 1000` jobs, then the kill tool over all of them.
  async scale(p) {
    const before = statusKib("VmRSS");
    for (let i = 0; i < p.n; i++) await call("createBackgroundProcess", { command: "sleep 1000" });
    const grown = statusKib("VmRSS") - before;
    const k = await killAll(p.grace_ms);
    return {
      value: k.callMs,
      extra: {
        grown_kib: grown, gone_ms: k.goneMs, survivors: k.survivors, zombies: k.zombies, n: p.n, grace_ms: p.grace_ms,
      },
    };
  },

  // The nearest thing the seed has to an MCP call: its list tool's execute,
  // in-process, with p.jobs running jobs.
  async list_call(p) {
    for (let i = 0; i < p.jobs; i++) await call("createBackgroundProcess", { command: "sleep 1000", name: `j${i}` });
    for (let i = 0; i < 20; i++) await call("listBackgroundProcesss", {});
    const times = [];
    let out;
    for (let i = 0; i < p.calls; i++) {
      const t0 = now();
      out = await call("listBackgroundProcesss", {});
      times.push(now() - t0);
    }
    if (JSON.parse(out).length !== p.jobs) throw new Error("list_call: wrong count");
    await call("killTasks", {});
    return { value: median(times) };
  },
};

let result;
try {
  if (!benches[bench]) throw new Error(`no bench ${bench}`);
  result = await benches[bench](params);
} finally {
  killMarked(); // whatever the seed left behind, this run's jobs only
}
process.stdout.write(JSON.stringify({ value: result.value, rss_kib: statusKib("VmHWM"), extra: result.extra || {} }) + "\n");
process.exit(0);
