/**
 * Real makhzen nodes as processes on loopback, for the cluster tests.
 *
 * Every node runs `bun src/cli/main.ts serve --port 0 --timings fast`, so failures
 * are seen within a second or two, and no port is guessed: the node picks one and
 * says where in its start-up line (NodeProcess, in proc.ts). `start` waits for
 * /readyz with a deadline while racing the process's early exit (and then shows its
 * log). `cleanup` kills only the PIDs this harness started, SIGCONT first so a
 * stopped process can die; run it from afterEach, or `await using h = new Harness()`.
 * Nothing here sleeps for a fixed time: everything polls with a deadline (`eventually`).
 */
import { resolve } from "node:path";
import { PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../src/cluster/protocol/messages.ts";
import type { StoredRecord } from "../../src/core/record.ts";
import { NodeProcess, cleanEnv, eventually } from "./proc.ts";
import { TcpProxy } from "./proxy.ts";
import { settledAndSure } from "./settled.ts";

const ROOT = resolve(import.meta.dir, "../..");
const MAIN = resolve(ROOT, "src/cli/main.ts");

// Shared with the other process tests; re-exported so cluster tests import one module.
export { NodeProcess, eventually } from "./proc.ts";
export { TcpProxy } from "./proxy.ts";

export interface StartOptions {
  /** Seed URLs (--peers). */
  peers?: string[];
  /** URL to advertise (a proxy in front of the node). */
  advertise?: string;
  /** A proxy (from `h.proxy()`) to put in front of the node: advertised, and pointed at the node's port once it has one. */
  proxy?: TcpProxy;
  /**
   * The port this node had before: a restart (kill -9, then the same data dir) on
   * the URL its peers know it by. Default 0: the node picks a free one.
   */
  port?: number;
  extraArgs?: string[];
  /** Timing preset (default fast: the tests). */
  timings?: "fast" | "default";
  /** Wait for /readyz (default true). Without it, `start` returns at once: wait with `node.ready()`. */
  waitReady?: boolean;
  /** The node's --log-level hides its start-up line: read its port from its listening socket. */
  quietStart?: boolean;
  /** The CA to trust when probing a node that serves https. */
  ca?: string;
  /**
   * Run the node's wall clock this far off real time, under libfaketime (FAKETIME
   * syntax: "+90s", "-20s", "+1.5"). Bun's Date.now() follows it; the test process's
   * clock does not.
   */
  clockOffset?: string;
  /** Extra environment (e.g. MAKHZEN_* settings, which the clean environment drops). */
  env?: Record<string, string>;
}

/** Where Debian (multiarch), and a build from source, put libfaketime. */
const FAKETIME_PATHS = ["/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1", "/usr/local/lib/faketime/libfaketime.so.1"];

/**
 * The libfaketime shared object from Debian's `faketime` package (installed by
 * .ci/run). A missing library fails the test that asked for a clock offset: a
 * skipped clock test would read as a passing one.
 */
export function faketimeLibrary(candidates = FAKETIME_PATHS): string {
  for (const pattern of candidates) {
    for (const path of new Bun.Glob(pattern.slice(1)).scanSync({ cwd: "/", absolute: true })) return path;
  }
  throw new Error(
    `libfaketime.so.1 not found (looked for ${candidates.join(", ")}): install Debian's \`faketime\` package ` +
      "(apt-get install faketime; .ci/run does it) to run the clock-skew tests",
  );
}

/** The environment for a node: MAKHZEN_* from the developer's shell dropped, then the test's own, then the fake clock. */
function nodeEnv(opts: StartOptions): Record<string, string> {
  const env = { ...cleanEnv(), ...opts.env };
  if (opts.clockOffset !== undefined) {
    env.LD_PRELOAD = faketimeLibrary();
    env.FAKETIME = opts.clockOffset;
    // A skewed host has a wrong wall clock (CLOCK_REALTIME) but a sound monotonic one,
    // which timers and performance.now() use: fake only the wall clock.
    env.FAKETIME_DONT_FAKE_MONOTONIC = "1";
  }
  return env;
}

export class Harness implements AsyncDisposable {
  readonly nodes: NodeProcess[] = [];
  readonly proxies: TcpProxy[] = [];

  /** Starts `serve` as a process and (by default) waits until /readyz answers 200. */
  async start(name: string, opts: StartOptions = {}): Promise<NodeProcess> {
    const args = [process.execPath, MAIN, "serve", "--port", String(opts.port ?? 0), "--name", name, "--timings", opts.timings ?? "fast"];
    if (opts.peers?.length) args.push("--peers", opts.peers.join(","));
    const advertise = opts.proxy?.url ?? opts.advertise;
    if (advertise) args.push("--advertise", advertise);
    args.push(...(opts.extraArgs ?? []));
    const node = NodeProcess.spawn(name, args, { cwd: ROOT, env: nodeEnv(opts) });
    this.nodes.push(node);
    const started = node.started({ fromSocket: opts.quietStart }).then(() => opts.proxy?.connect(node.port));
    if (opts.waitReady === false) {
      started.catch(() => {}); // the caller waits (node.ready()) or expects an exit
      return node;
    }
    await started;
    await node.ready({ ca: opts.ca });
    return node;
  }

  /** A proxy on port 0, closed by cleanup; give it to `start` as `proxy`. */
  proxy(): TcpProxy {
    const proxy = new TcpProxy();
    this.proxies.push(proxy);
    return proxy;
  }

  /** Three (or n) nodes: the first alone, the others joining through it. */
  async cluster(
    n = 3,
    opts: {
      proxied?: boolean;
      extraArgs?: string[];
      extraArgsFor?: (name: string) => string[];
      timings?: "fast" | "default";
      env?: Record<string, string>;
    } = {},
  ): Promise<NodeProcess[]> {
    const names = Array.from({ length: n }, (_, i) => String.fromCharCode(97 + i));
    const out: NodeProcess[] = [];
    for (const name of names) {
      const proxy = opts.proxied ? this.proxy() : undefined;
      const peers = out.length ? [advertiseOf(out[0]!, this)] : [];
      const extraArgs = [...(opts.extraArgs ?? []), ...(opts.extraArgsFor?.(name) ?? [])];
      out.push(await this.start(name, { proxy, peers, extraArgs, timings: opts.timings, env: opts.env }));
    }
    await eventually(async () => (await Promise.all(out.map(aliveCount))).every((c) => c === n), {
      what: `all ${n} nodes see ${n} alive members`,
    });
    return out;
  }

  /** `await using h = new Harness()` cleans up when the scope ends, even on a throw. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.cleanup();
  }

  /** Kills every process this harness started (SIGCONT first for stopped ones) and closes the proxies. */
  async cleanup(): Promise<void> {
    // MAKHZEN_TEST_LOGS=1 prints every node's log, to see what a passing test really did.
    if (process.env.MAKHZEN_TEST_LOGS) for (const n of this.nodes) console.log(`--- ${n.name} (pid ${n.pid}) ---\n${n.log()}`);
    for (const p of this.proxies) p.close();
    this.proxies.length = 0;
    await Promise.all(this.nodes.map((n) => n.kill9()));
    this.nodes.length = 0;
  }
}

/** The URL peers reach a node at: its proxy when it has one. */
export const advertiseOf = (node: NodeProcess, h: Harness): string => {
  const proxy = h.proxies.find((p) => p.targetPort === node.port);
  return proxy ? proxy.url : node.url;
};


export interface ClusterView {
  self: string;
  members: { name: string; url: string; state: string; queue: number; lastSeenMs: number }[];
}

export async function clusterView(node: NodeProcess): Promise<ClusterView> {
  const res = await fetch(`${node.url}/cluster`, { signal: AbortSignal.timeout(2000) });
  return (await res.json()) as ClusterView;
}

async function aliveCount(node: NodeProcess): Promise<number> {
  const view = await clusterView(node);
  return view.members.filter((m) => m.state === "alive").length;
}

/**
 * Waits until every node says it is settled (GET /cluster `settled`: each partition
 * it owns filled, nothing left to hand off) and has heard every other member say it
 * fills nothing: a node routes reads and writes by what its peers last said, which
 * lags their own state by a heartbeat.
 */
export async function settledEverywhere(nodes: NodeProcess[], timeoutMs = 20_000): Promise<void> {
  await eventually(
    async () => {
      const views = await Promise.all(
        nodes.map(async (n) => (await (await fetch(`${n.url}/cluster`, { signal: AbortSignal.timeout(2000) })).json()) as { settled?: boolean; members: { state: string; filling?: number | null }[] }),
      );
      return views.every(settledAndSure);
    },
    { timeoutMs, what: `all ${nodes.length} nodes settled, and each sure of the others` },
  );
}

/** The node's Redis URL (`--resp-port`), from its start-up line (`respUrl`). */
export function respUrl(node: NodeProcess): string {
  const m = /"respUrl":"(redis:\/\/[^"]+)"/.exec(node.log());
  if (!m) throw new Error(`no respUrl in the start-up line of ${node.name}:\n${node.log().slice(0, 2000)}`);
  return m[1]!;
}

/** Every record a node holds, tombstones included, in (bucket, key) order: paged through /internal/scan. */
export async function dump(node: NodeProcess): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  let after: { bucket: string; key: string } | undefined;
  for (let page = 0; page < 10_000; page++) {
    const res = await fetch(`${node.url}/internal/scan`, {
      method: "POST",
      headers: { "content-type": "application/json", [PROTOCOL_HEADER]: PROTOCOL_VERSION },
      body: JSON.stringify(after ? { after, limit: 5000 } : { limit: 5000 }),
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok) throw new Error(`scan of ${node.name}: HTTP ${res.status} ${await res.text()}`);
    const body = (await res.json()) as { records: StoredRecord[]; next: { bucket: string; key: string } | null };
    out.push(...body.records);
    if (!body.next) return out;
    after = body.next;
  }
  throw new Error("scan did not end");
}

/** Sends one peer-protocol request (unsigned: the nodes have no cluster secret) as another node would. */
export async function peer(node: NodeProcess, op: string, body: unknown): Promise<Response> {
  return fetch(`${node.url}/internal/${op}`, {
    method: "POST",
    headers: { "content-type": "application/json", [PROTOCOL_HEADER]: PROTOCOL_VERSION },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
}

/** Resolves once every node's full dump is identical (and returns it); throws with a diff summary at the deadline. */
export async function converged(nodes: NodeProcess[], timeoutMs = 15_000): Promise<StoredRecord[]> {
  let last: StoredRecord[][] = [];
  try {
    return (await eventually(
      async () => {
        last = await Promise.all(nodes.map(dump));
        const first = JSON.stringify(last[0]);
        return last.every((d) => JSON.stringify(d) === first) ? last[0]! : undefined;
      },
      { timeoutMs, intervalMs: 50, what: "identical dumps" },
    )) as StoredRecord[];
  } catch (e) {
    const sizes = last.map((d, i) => `${nodes[i]!.name}: ${d.length} records`).join(", ");
    throw new Error(`${(e as Error).message} (${sizes})\n--- logs ---\n${nodes.map((n) => `[${n.name}]\n${n.log().slice(-3000)}`).join("\n")}`);
  }
}

export async function put(node: NodeProcess, key: string, value: string, query = "", extra: Record<string, unknown> = {}): Promise<Response> {
  return fetch(`${node.url}/items/${encodeURIComponent(key)}${query}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ value, ...extra }),
    signal: AbortSignal.timeout(10_000),
  });
}

export async function del(node: NodeProcess, key: string, query = ""): Promise<Response> {
  return fetch(`${node.url}/items/${encodeURIComponent(key)}${query}`, { method: "DELETE", signal: AbortSignal.timeout(10_000) });
}

export async function get(node: NodeProcess, key: string, query = ""): Promise<Response> {
  return fetch(`${node.url}/items/${encodeURIComponent(key)}${query}`, { signal: AbortSignal.timeout(10_000) });
}

/** Awaits a request and throws with its status and body unless it answered 2xx. */
export async function ok(res: Promise<Response>): Promise<Response> {
  const r = await res;
  if (!r.ok) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  return r;
}

/** Every record a node holds, tombstones included, from the public /dump (NDJSON): what an operator's backup sees. */
export async function publicDump(node: NodeProcess): Promise<StoredRecord[]> {
  const res = await fetch(`${node.url}/dump`, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`/dump of ${node.name}: HTTP ${res.status} ${await res.text()}`);
  return (await res.text())
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as StoredRecord);
}

/** The error code of a refusal's envelope, or a description of what came instead (for assertion messages). */
export async function errorCode(res: Response): Promise<string> {
  const text = await res.text();
  try {
    return (JSON.parse(text) as { error: { code: string } }).error.code;
  } catch {
    return `HTTP ${res.status} ${text.slice(0, 200)}`;
  }
}
