import { describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { FAST_TIMINGS, resolveConfig } from "../../src/config.ts";
import { serveOptions } from "../../src/cli/serve.ts";
import { cleanEnv } from "../support/proc.ts";

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");

describe("serve: cluster flags", () => {
  test("--peers (and its alias --cluster) and --advertise become node options", () => {
    const o = serveOptions({ peers: "http://10.0.0.1:3000, http://10.0.0.2:3000/", advertise: "http://10.0.0.3:3000" }, {});
    expect(o.peers).toEqual(["http://10.0.0.1:3000", "http://10.0.0.2:3000/"]);
    expect(resolveConfig(o).peers).toEqual(["http://10.0.0.1:3000", "http://10.0.0.2:3000"]);
    expect(o.advertise).toBe("http://10.0.0.3:3000");
    expect(serveOptions({}, { MAKHZEN_PEERS: "http://a:1" }).peers).toEqual(["http://a:1"]);
  });

  test("--timings fast is a preset that individual flags still override", () => {
    const o = serveOptions({ timings: "fast", "heartbeat-interval": "250ms" }, {});
    expect(o.heartbeatIntervalMs).toBe(250);
    expect(o.deadAfterMs).toBe(FAST_TIMINGS.deadAfterMs);
    expect(serveOptions({}, {}).heartbeatIntervalMs).toBeUndefined();
  });

  test("--queue-max-bytes and --reap-dead-after become node options, validated by resolveConfig", () => {
    const o = serveOptions({ "queue-max-bytes": "64mb", "reap-dead-after": "2h" }, {});
    expect(o).toMatchObject({ queueMaxBytes: 64 * 1024 * 1024, reapDeadAfterMs: 2 * 3_600_000 });
    expect(serveOptions({}, { MAKHZEN_REAP_DEAD_AFTER: "1h" }).reapDeadAfterMs).toBe(3_600_000);
    expect(() => resolveConfig({ queueMaxBytes: 10 })).toThrow(/queueMaxBytes/);
    expect(() => resolveConfig({ reapDeadAfterMs: 1000 })).toThrow(/reapDeadAfterMs/); // shorter than deadAfterMs
  });

  test("--replicas becomes replicas, from the flag or MAKHZEN_REPLICAS; 3 when neither is given", () => {
    expect(serveOptions({ replicas: "2" }, {}).replicas).toBe(2);
    expect(serveOptions({}, { MAKHZEN_REPLICAS: "5" }).replicas).toBe(5);
    expect(serveOptions({ replicas: "1" }, { MAKHZEN_REPLICAS: "5" }).replicas).toBe(1);
    expect(resolveConfig(serveOptions({}, {})).replicas).toBe(3);
  });

  test("--max-clock-offset becomes maxClockOffsetMs, from the flag or MAKHZEN_MAX_CLOCK_OFFSET", () => {
    expect(serveOptions({ "max-clock-offset": "250ms" }, {}).maxClockOffsetMs).toBe(250);
    expect(serveOptions({}, { MAKHZEN_MAX_CLOCK_OFFSET: "1s" }).maxClockOffsetMs).toBe(1000);
    expect(resolveConfig({}).maxClockOffsetMs).toBe(500);
  });

  test("bad cluster flags print one line and exit 2", () => {
    for (const [args, message] of [
      [["--peers", "not a url"], '--peers must be a URL like http://10.0.0.2:3000, not "not a url"'],
      // Named as typed: --cluster is an alias of --peers.
      [["--cluster", "ftp://x"], '--cluster must be a URL like http://10.0.0.2:3000, not "ftp://x"'],
      [["--advertise", "x"], '--advertise must be a URL like http://10.0.0.2:3000, not "x"'],
      [["--timings", "turbo"], '--timings must be one of default, fast, not "turbo"'],
      [["--queue-max", "0"], '--queue-max must be an integer from 1 to 1000000000, not "0"'],
      [["--replicas", "0"], '--replicas must be an integer from 1 to 100, not "0"'],
      [["--replicas", "101"], '--replicas must be an integer from 1 to 100, not "101"'],
      [["--replicas", "two"], '--replicas must be an integer from 1 to 100, not "two"'],
      [["--replicas=2.5"], '--replicas must be an integer from 1 to 100, not "2.5"'],
      // A bare number is refused, not guessed: 1000 could mean ms or s.
      [["--heartbeat-interval", "1000"], '--heartbeat-interval must be a duration with a unit, like 500ms, 30s, 10m or 24h, not "1000"'],
      [["--max-clock-offset", "0ms"], "--max-clock-offset must be from 10ms to 24h, not 0ms"],
      [["--max-clock-offset", "500"], '--max-clock-offset must be a duration with a unit, like 500ms, 30s, 10m or 24h, not "500"'],
    ] as const) {
      const r = Bun.spawnSync([process.execPath, MAIN, "serve", "--port", "0", ...args], { env: cleanEnv() });
      expect(r.exitCode).toBe(2);
      expect(r.stderr.toString()).toBe(`makhzen: ${message}\n`);
    }
  });
});
