/**
 * The logs of `makhzen serve`, from real processes: JSON lines (stderr is a pipe
 * here, not a terminal), the start-up summary, --log-level filtering, text format,
 * nothing per request at info, and a rate-limited line per refused token.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serveLogOptions } from "../../src/cli/serve.ts";
import { createLogger } from "../../src/ops/log.ts";
import { Persistence } from "../../src/storage/persistence.ts";
import { VERSION } from "../../src/meta.ts";
import { Harness, eventually, type NodeProcess } from "../support/harness.ts";
import { logLines, parseMetrics, scrape, valueOf, type LogLine } from "../support/observe.ts";
import { run } from "../support/proc.ts";
import { deadListener } from "../support/raw-http.ts";

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
let h: Harness;
afterEach(async () => {
  await h?.cleanup();
});

/** Stops the node with SIGTERM and returns every line it wrote, once its last line ("stopped") is in. */
async function stopAndRead(node: NodeProcess): Promise<{ lines: LogLine[]; other: string[] }> {
  node.signal("SIGTERM");
  expect(await node.exited).toBe(0);
  await eventually(() => node.log().includes('"msg":"stopped"') || node.log().includes(" stopped "), { what: "the last line" });
  return logLines(node.log());
}

describe("serve logs", () => {
  test("JSON lines: a start-up summary, then nothing per request at info", async () => {
    h = new Harness();
    const node = await h.start("solo", { timings: "default" });
    for (let i = 0; i < 20; i++) {
      await fetch(`${node.url}/items/k${i}`, { method: "PUT", body: JSON.stringify({ value: "v" }) });
      await fetch(`${node.url}/items/k${i}`);
    }
    await fetch(`${node.url}/items/absent`); // 404
    await fetch(`${node.url}/items/bad`, { method: "PUT", body: "{not json" }); // 400
    await fetch(`${node.url}/no-such-route`);
    await scrape(node.url);
    const { lines, other } = await stopAndRead(node);
    expect(other).toEqual([]);
    expect(lines.map((l) => l.msg)).toEqual(["started", "stopping: answering the requests in flight, draining the queues and leaving the cluster", "stopped"]);
    for (const l of lines) {
      expect(l.level).toBe("info");
      expect(new Date(l.ts).toISOString()).toBe(l.ts);
    }
    expect(lines[0]).toMatchObject({
      name: "solo",
      url: node.url,
      version: VERSION,
      advertise: node.url,
      dataDir: null,
      fsync: null,
      peers: [],
      maxKeyBytes: 1024,
      maxValueBytes: 1024 * 1024,
      maxMemoryBytes: 0,
      eviction: "noeviction",
      queueMaxRecords: 1_000_000,
      logLevel: "info",
    });
  });

  test("--log-level warn drops info lines and keeps warnings", async () => {
    h = new Harness();
    using seed = deadListener();
    using second = deadListener();
    // At warn there is no start-up line to read the port from: it comes from the node's socket.
    const node = await h.start("lonely", { peers: [seed.url, second.url], quietStart: true, extraArgs: ["--log-level", "warn", "--token", "a-token-for-this-test"] });
    // A refused request is answered after start-up, so its line comes after where "started" would be.
    expect((await fetch(`${node.url}/items/k`)).status).toBe(401);
    await eventually(() => logLines(node.log()).lines.some((l) => l.msg === "auth refusal"), { what: "the refusal line" });
    const { lines, other } = logLines(node.log());
    expect(other).toEqual([]);
    for (const l of lines) expect(["warn", "error"]).toContain(l.level);
    expect(lines.find((l) => l.msg === "seed did not answer")).toMatchObject({ level: "warn", component: "membership", seed: seed.url });
    // Counted per seed: the second seed's first line said misses 2.
    for (const url of [seed.url, second.url]) expect(lines.find((l) => l.msg === "seed did not answer" && l.seed === url)).toMatchObject({ misses: 1 });
    expect(lines.some((l) => l.msg === "started")).toBe(false);
  });

  test("--log-level debug adds the anti-entropy rounds that found nothing to repair", async () => {
    h = new Harness();
    const [a] = await h.cluster(2, { extraArgsFor: (name) => (name === "a" ? ["--log-level", "debug"] : []) });
    await eventually(() => logLines(a!.log()).lines.some((l) => l.msg === "round: in sync" && l.level === "debug" && l.peer === "b"), {
      what: "a debug line of a round in sync",
    });
  });

  test("--log-format text: one readable line per event", async () => {
    h = new Harness();
    const node = await h.start("texty", { extraArgs: ["--log-format", "text"] });
    await eventually(() => node.log().includes("started"), { what: "the start-up line" });
    const first = node.log().split("\n")[0]!;
    expect(first).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  started name=texty url=http:\/\/127\.0\.0\.1:\d+ version=\S+ /);
    expect(() => JSON.parse(first)).toThrow();
  });

  test("a refused token is logged once per client per interval, and counted in /metrics", async () => {
    h = new Harness();
    const token = "observability-test-token";
    const node = await h.start("guarded", { extraArgs: ["--token", token] });
    for (let i = 0; i < 5; i++) expect((await fetch(`${node.url}/items/k`)).status).toBe(401);
    expect((await fetch(`${node.url}/items/k`, { method: "PUT", headers: { authorization: "Bearer wrong" }, body: "{}" })).status).toBe(401);
    const metrics = await (await fetch(`${node.url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
    expect(valueOf(parseMetrics(metrics), "makhzen_auth_refusals_total", { kind: "client_unauthorized" })).toBe(6);
    expect((await fetch(`${node.url}/metrics`)).status).toBe(401); // /metrics is behind the token like every client route
    const { lines } = await stopAndRead(node);
    const refusals = lines.filter((l) => l.msg === "auth refusal");
    expect(refusals).toHaveLength(1); // one client, within the interval
    expect(refusals[0]).toMatchObject({ level: "warn", component: "http", status: 401, method: "GET", route: "/items/*", remote: "127.0.0.1" });
    expect(JSON.stringify(lines)).not.toContain(token);
  });

  test("a bad --log-level or --log-format is a one-line usage error", async () => {
    for (const args of [["--log-level", "verbose"], ["--log-format", "xml"]]) {
      const r = await run([process.execPath, MAIN, "serve", "--port", "0", ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toContain(`--${args[0]!.slice(2)} must be one of`);
    }
  });
});

describe("serveLogOptions", () => {
  test("defaults: info; text on a terminal, json otherwise", () => {
    expect(serveLogOptions({}, {}, true)).toEqual({ level: "info", format: "text" });
    expect(serveLogOptions({}, {}, false)).toEqual({ level: "info", format: "json" });
  });

  test("MAKHZEN_LOG_LEVEL and MAKHZEN_LOG_FORMAT, and flags over them", () => {
    const env = { MAKHZEN_LOG_LEVEL: "debug", MAKHZEN_LOG_FORMAT: "text" };
    expect(serveLogOptions({}, env, false)).toEqual({ level: "debug", format: "text" });
    expect(serveLogOptions({ "log-level": "error", "log-format": "json" }, env, true)).toEqual({ level: "error", format: "json" });
    expect(() => serveLogOptions({}, { MAKHZEN_LOG_LEVEL: "loud" }, false)).toThrow("MAKHZEN_LOG_LEVEL must be one of debug, info, warn, error");
  });
});

describe("persistence logs", () => {
  test("a failing disk is one error line (then one per 10 s), and its recovery one info line; every failure is counted", async () => {
    const dir = mkdtempSync(join(tmpdir(), "makhzen-log-"));
    const lines: LogLine[] = [];
    const logger = createLogger({ level: "debug", format: "json", write: (l) => lines.push(JSON.parse(l) as LogLine) });
    const disk = Persistence.open({ dir, nodeName: "n1", fsync: "everysec", flushIntervalMs: 5, logger: logger.child("persistence") });
    try {
      const commit = disk.flush.bind(disk);
      disk.flush = () => {
        throw new Error("disk full");
      };
      disk.write({ bucket: "default", key: "k", value: "v", version: "001000000000000-000000-n1" });
      await eventually(() => disk.commitFailures >= 5, { what: "five failed commits" });
      disk.flush = commit;
      await eventually(() => lines.some((l) => l.msg === "commits succeed again"), { what: "the recovery line" });
      const failed = lines.filter((l) => l.msg === "commit failed; will retry");
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatchObject({ level: "error", component: "persistence", dir, failedInARow: 1, error: "disk full" });
      const recovered = lines.find((l) => l.msg === "commits succeed again")!;
      expect(recovered).toMatchObject({ level: "info", dir });
      expect(Number(recovered.failedInARow)).toBe(disk.commitFailures);
      await disk.durable(); // the write that failed five times is on disk now
    } finally {
      disk.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
