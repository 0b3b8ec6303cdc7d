/**
 * Real makhzen nodes as processes on free loopback ports, for the cluster tests.
 *
 * Every node runs `bun src/cli/main.ts serve --timings fast`, so failures are seen
 * within a second or two. `start` waits for /readyz with a deadline while racing
 * the process's early exit (and then shows its log). `cleanup` kills only the PIDs
 * this harness started, SIGCONT first so a stopped process can die, and always runs
 * from afterEach. Nothing here sleeps for a fixed time: everything polls with a
 * deadline (`eventually`).
 */
import type { Subprocess } from "bun";
import { resolve } from "node:path";
import { PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../src/cluster/protocol/messages.ts";
import type { StoredRecord } from "../../src/core/record.ts";
import { cleanEnv, eventually, freePort } from "./proc.ts";
import { TcpProxy } from "./proxy.ts";

const ROOT = resolve(import.meta.dir, "../..");
const MAIN = resolve(ROOT, "src/cli/main.ts");

// Shared with the other process tests; re-exported so cluster tests import one module.
export { eventually, freePort } from "./proc.ts";
export { TcpProxy } from "./proxy.ts";

export interface StartOptions {
  /** Seed URLs (--peers). */
  peers?: string[];
  /** URL to advertise (a proxy in front of the node). */
  advertise?: string;
  /** Reuse a port (a restart). */
  port?: number;
  extraArgs?: string[];
  /** Timing preset (default fast: the tests). */
  timings?: "fast" | "default";
  /** Wait for /readyz (default true). */
  waitReady?: boolean;
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

export class NodeProcess {
  readonly logs: string[] = [];
  readonly exited: Promise<number>;
  stopped = false;

  constructor(
    readonly name: string,
    readonly port: number,
    readonly proc: Subprocess<"ignore", "pipe", "pipe">,
  ) {
    this.exited = proc.exited;
    void this.collect(proc.stdout);
    void this.collect(proc.stderr);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    return this.proc.pid;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  signal(sig: "SIGSTOP" | "SIGCONT" | "SIGTERM" | "SIGKILL"): void {
    if (!this.running) return;
    this.proc.kill(sig);
    if (sig === "SIGSTOP") this.stopped = true;
    if (sig === "SIGCONT") this.stopped = false;
  }

  async kill9(): Promise<void> {
    if (this.stopped) this.signal("SIGCONT");
    this.signal("SIGKILL");
    await this.exited;
  }

  log(): string {
    return this.logs.join("");
  }

  private async collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      this.logs.push(decoder.decode(chunk, { stream: true }));
      if (this.logs.length > 2000) this.logs.splice(0, 1000);
    }
  }
}

export class Harness {
  readonly nodes: NodeProcess[] = [];
  readonly proxies: TcpProxy[] = [];

  /** Starts `serve` as a process and (by default) waits until /readyz answers 200. */
  async start(name: string, opts: StartOptions = {}): Promise<NodeProcess> {
    const port = opts.port ?? freePort();
    const args = [process.execPath, MAIN, "serve", "--port", String(port), "--name", name, "--timings", opts.timings ?? "fast"];
    if (opts.peers?.length) args.push("--peers", opts.peers.join(","));
    if (opts.advertise) args.push("--advertise", opts.advertise);
    args.push(...(opts.extraArgs ?? []));
    const proc = Bun.spawn(args, { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: nodeEnv(opts) });
    const node = new NodeProcess(name, port, proc);
    this.nodes.push(node);
    if (opts.waitReady !== false) await this.waitReady(node);
    return node;
  }

  /** Waits for `probe` (default /readyz; /healthz for a node that may never be ready) to answer 200. */
  async waitReady(node: NodeProcess, timeoutMs = 15_000, probe: "/readyz" | "/healthz" = "/readyz"): Promise<void> {
    let exited: number | undefined;
    void node.exited.then((c) => (exited = c));
    await eventually(
      async () => {
        if (exited !== undefined) throw new Error(`node ${node.name} exited with ${exited} before it was ready:\n${node.log()}`);
        const res = await fetch(`${node.url}${probe}`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined);
        return res?.status === 200;
      },
      { timeoutMs, what: `node ${node.name} answers ${probe}` },
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n--- log of ${node.name} ---\n${node.log()}`);
    });
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
      const port = freePort();
      let advertise: string | undefined;
      if (opts.proxied) {
        const proxy = new TcpProxy(port);
        this.proxies.push(proxy);
        advertise = proxy.url;
      }
      const peers = out.length ? [advertiseOf(out[0]!, this)] : [];
      const extraArgs = [...(opts.extraArgs ?? []), ...(opts.extraArgsFor?.(name) ?? [])];
      out.push(await this.start(name, { port, advertise, peers, extraArgs, timings: opts.timings, env: opts.env }));
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
