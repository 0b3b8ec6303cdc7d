/**
 * Real processes for tests: the one poller (`eventually`), running a command to
 * completion, and `NodeProcess`, a node that listens on port 0, says where in its
 * start-up log line, and is always killed (Symbol.asyncDispose, or the harness's
 * afterEach). Nothing here binds a port to guess a free one.
 */
import type { Subprocess } from "bun";
import { readFileSync, readdirSync, readlinkSync } from "node:fs";

/**
 * Polls `fn` until it returns a truthy value (returned) or `timeoutMs` passes (throws
 * the last error). The only poller of the tests: never a fixed sleep. It looks again
 * after 5 ms, then backs off to every `intervalMs`: what an in-process test waits for
 * usually holds within a few ms, what a process test waits for can take seconds.
 */
export async function eventually<T>(
  fn: () => T | Promise<T>,
  { timeoutMs = 10_000, intervalMs = 25, what = "condition" }: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  let pause = Math.min(5, intervalMs);
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = undefined;
    } catch (e) {
      last = e;
    }
    if (performance.now() > deadline) {
      throw new Error(`${what} not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ""}`);
    }
    await Bun.sleep(pause);
    pause = Math.min(pause * 2, intervalMs);
  }
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (bounded by `timeoutMs`) and collects its output. `env` is added to cleanEnv(). */
export async function run(
  cmd: string[],
  opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number; stdin?: ReturnType<typeof Bun.file> } = {},
): Promise<RunResult> {
  const proc = Bun.spawn(cmd, {
    cwd: opts.cwd,
    stdout: "pipe",
    stderr: "pipe",
    stdin: opts.stdin ?? "ignore",
    env: { ...cleanEnv(), ...opts.env },
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 20_000);
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** The environment without MAKHZEN_* variables, so a developer's shell cannot change a test. */
export function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("MAKHZEN_") && v !== undefined) env[k] = v;
  return env;
}

export interface SpawnOptions {
  /** The whole environment (default: cleanEnv()). */
  env?: Record<string, string>;
  cwd?: string;
  /**
   * Runs the command in a process group of its own, for a node started through a
   * wrapper (npm, a launcher): signals then go to every process of the group at once,
   * as a terminal's Ctrl-C does, and kill9 kills what a wrapper left behind too.
   */
  group?: boolean;
}

export interface ReadyOptions {
  /** /readyz (the first sync is done) or /healthz (listening; for a node that may never be ready). */
  probe?: "/readyz" | "/healthz";
  timeoutMs?: number;
  /** The CA to trust, for a node serving https. */
  ca?: string;
}

/**
 * A node process (`serve`, from source or the compiled binary). It is started on
 * port 0 (or a port it held before, for a restart) and reads where it listens from
 * its start-up line, `started` with `url` (JSON or text format); `started()` races that
 * against the process exiting first, and then shows its log.
 */
export class NodeProcess implements AsyncDisposable {
  readonly logs: string[] = [];
  readonly exited: Promise<number>;
  stopped = false;
  private startedUrl?: string;
  private starting?: Promise<string>;
  private partial = "";

  constructor(
    readonly name: string,
    readonly proc: Subprocess<"ignore", "pipe", "pipe">,
    /** Signals go to the process group `proc` leads (see SpawnOptions.group). */
    readonly group = false,
  ) {
    this.exited = proc.exited;
    void this.collect(proc.stdout);
    void this.collect(proc.stderr);
  }

  static spawn(name: string, cmd: string[], opts: SpawnOptions = {}): NodeProcess {
    const proc = Bun.spawn(cmd, { cwd: opts.cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: opts.env ?? cleanEnv(), detached: opts.group });
    return new NodeProcess(name, proc, opts.group);
  }

  /** The URL of its start-up line (https with TLS). Throws before the node has said it. */
  get url(): string {
    if (this.startedUrl === undefined) throw new Error(`node ${this.name} has not logged its start-up line (await started() first)`);
    return this.startedUrl;
  }

  get port(): number {
    return Number(new URL(this.url).port);
  }

  get pid(): number {
    return this.proc.pid;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /**
   * Resolves with the node's URL once it has logged `started`, or rejects (with its
   * log) when it exits first or `timeoutMs` passes. `fromSocket` is for a node whose
   * --log-level hides that info line: the port is then read from the socket the
   * process listens on (Linux /proc). The first call's options hold for later calls.
   */
  started(opts: { timeoutMs?: number; fromSocket?: boolean } = {}): Promise<string> {
    return (this.starting ??= this.waitStarted(opts));
  }

  private async waitStarted({ timeoutMs = 15_000, fromSocket = false }: { timeoutMs?: number; fromSocket?: boolean }): Promise<string> {
    await this.until(
      () => {
        if (this.startedUrl === undefined && fromSocket) {
          const port = listeningPort(this.pid);
          if (port !== undefined) this.startedUrl = `http://127.0.0.1:${port}`;
        }
        return this.startedUrl !== undefined;
      },
      { timeoutMs, intervalMs: 10, what: `node ${this.name} logs where it listens` },
    );
    return this.url;
  }

  /** Waits until `probe` answers 200 (the start-up line first), racing the process's exit. */
  async ready({ probe = "/readyz", timeoutMs = 15_000, ca }: ReadyOptions = {}): Promise<void> {
    await this.started({ timeoutMs });
    await this.until(
      async () => {
        const res = await fetch(`${this.url}${probe}`, { signal: AbortSignal.timeout(1000), tls: ca ? { ca } : undefined }).catch(() => undefined);
        return res?.status === 200;
      },
      { timeoutMs, what: `node ${this.name} answers ${probe}` },
    );
  }

  signal(sig: "SIGSTOP" | "SIGCONT" | "SIGTERM" | "SIGKILL" | "SIGINT"): void {
    if (this.group) {
      // The group may outlive its leader (a node its wrapper left behind): signal it anyway.
      try {
        process.kill(-this.pid, sig);
      } catch {
        // ESRCH: no process of the group is left
      }
    } else {
      if (!this.running) return;
      this.proc.kill(sig);
    }
    if (sig === "SIGSTOP") this.stopped = true;
    if (sig === "SIGCONT") this.stopped = false;
  }

  /** Sends `signal` (SIGCONT first, so a stopped process can act on it), SIGKILL after 10 s; the exit code (-1 for a signal). */
  async stop(signal: "SIGTERM" | "SIGINT" | "SIGKILL" = "SIGTERM"): Promise<number> {
    if (this.running) {
      this.signal("SIGCONT");
      this.signal(signal);
      const timer = setTimeout(() => this.signal("SIGKILL"), 10_000);
      await this.exited;
      clearTimeout(timer);
    }
    return this.proc.exitCode ?? -1;
  }

  async kill9(): Promise<void> {
    await this.stop("SIGKILL");
    if (this.group) this.signal("SIGKILL");
  }

  log(): string {
    return this.logs.join("");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill9();
  }

  /** `eventually`, failing at once (with the log) if the process exits first. */
  private async until(fn: () => boolean | Promise<boolean>, opts: { timeoutMs: number; intervalMs?: number; what: string }): Promise<void> {
    let code: number | undefined;
    void this.exited.then((c) => (code = c));
    await eventually(async () => {
      if (code !== undefined) throw new Error(`node ${this.name} exited with ${code}`);
      return fn();
    }, opts).catch((e) => {
      throw new Error(`${(e as Error).message}\n--- log of ${this.name} ---\n${this.log()}`);
    });
  }

  private async collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true });
      this.logs.push(text);
      if (this.logs.length > 2000) this.logs.splice(0, 1000);
      if (this.startedUrl === undefined) this.findStartLine(text);
    }
  }

  /** Looks for the `started` line in what the node wrote so far (line by line, a line may span chunks). */
  private findStartLine(text: string): void {
    const lines = (this.partial + text).split("\n");
    this.partial = lines.pop()!;
    for (const line of lines) {
      const url = startLineUrl(line);
      if (url !== undefined) {
        this.startedUrl = url;
        this.partial = "";
        return;
      }
    }
  }
}

/** The `url` field of serve's start-up line, in JSON or text format; undefined for any other line. */
function startLineUrl(line: string): string | undefined {
  if (line.startsWith("{")) {
    try {
      const l = JSON.parse(line) as { msg?: unknown; url?: unknown };
      return l.msg === "started" && typeof l.url === "string" ? l.url : undefined;
    } catch {
      return undefined;
    }
  }
  return /^\S+ INFO +started .*?\burl=(\S+)/.exec(line)?.[1];
}

/** The TCP port `pid` listens on, from /proc (Linux); undefined while it listens on none. */
function listeningPort(pid: number): number | undefined {
  const sockets = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`, { encoding: "utf8" }) ?? "");
      if (m) sockets.add(m[1]!);
    }
  } catch {
    return undefined; // exited, or an fd closed while we read
  }
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const row of readFileSync(table, "utf8").split("\n").slice(1)) {
      const f = row.trim().split(/\s+/);
      // local_address is HEX_IP:HEX_PORT; state 0A is LISTEN; field 9 is the socket's inode.
      if (f[3] === "0A" && sockets.has(f[9]!)) return parseInt(f[1]!.split(":")[1]!, 16);
    }
  }
  return undefined;
}

export type StartOptions = { name?: string } & ReadyOptions & SpawnOptions;

/**
 * Starts `cmd` (a `serve` with `--port 0`), learns its URL from its start-up line and
 * waits until /healthz answers. Kills the process and throws with its log when it
 * exits first or never answers.
 * `await using node = await startNode(...)` kills it when the scope ends.
 */
export async function startNode(cmd: string[], opts: StartOptions = {}): Promise<NodeProcess> {
  const node = NodeProcess.spawn(opts.name ?? "node", cmd, opts);
  try {
    await node.ready({ probe: opts.probe ?? "/healthz", timeoutMs: opts.timeoutMs, ca: opts.ca });
  } catch (e) {
    await node.kill9();
    throw e;
  }
  return node;
}
