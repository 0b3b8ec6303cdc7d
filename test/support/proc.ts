/**
 * Helpers for tests that run real processes: free ports, polling with a deadline,
 * and a node process that is always cleaned up.
 */
import type { Subprocess } from "bun";

/** A port that was free a moment ago: the OS picks it, we close it, the node takes it. */
export function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** Polls `fn` until it returns a truthy value (returned) or `timeoutMs` passes (throws the last error). */
export async function eventually<T>(
  fn: () => T | Promise<T>,
  { timeoutMs = 10_000, intervalMs = 25, what = "condition" }: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
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
    await Bun.sleep(intervalMs);
  }
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (bounded by `timeoutMs`) and collects its output. */
export async function run(
  cmd: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number; stdin?: ReturnType<typeof Bun.file> } = {},
): Promise<RunResult> {
  const proc = Bun.spawn(cmd, {
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

export interface NodeProcess extends AsyncDisposable {
  url: string;
  port: number;
  proc: Subprocess;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number>;
}

/**
 * Starts `cmd` (which must make a node listen on `port`), waits until /healthz
 * answers, and fails fast with the process's output if it exits first.
 */
export async function startNode(cmd: string[], port: number, opts: { readyTimeoutMs?: number } = {}): Promise<NodeProcess> {
  let out = "";
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore", env: cleanEnv() });
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) out += new TextDecoder().decode(chunk);
  };
  void collect(proc.stdout);
  void collect(proc.stderr);
  const url = `http://127.0.0.1:${port}`;
  const node: NodeProcess = {
    url,
    port,
    proc,
    output: () => out,
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGCONT");
        proc.kill(signal);
        const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        await proc.exited;
        clearTimeout(timer);
      }
      return proc.exitCode ?? -1;
    },
    async [Symbol.asyncDispose]() {
      await node.stop("SIGKILL");
    },
  };
  try {
    const healthy = eventually(
      async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok,
      { timeoutMs: opts.readyTimeoutMs ?? 15_000, what: `node on port ${port} healthy` },
    );
    // Race the early exit: a node that cannot start should fail the test now, not at the deadline.
    const exited = proc.exited.then((code) => {
      throw new Error(`node exited with ${code} before it was healthy`);
    });
    await Promise.race([healthy, exited]);
    exited.catch(() => {});
  } catch (e) {
    await node.stop("SIGKILL");
    throw new Error(`${(e as Error).message}\n--- output ---\n${out}`);
  }
  return node;
}
