import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "citty";
import { DEFAULTS, FAST_TIMINGS, resolveConfig, type NodeConfig } from "../../src/config.ts";
import { CliError } from "../../src/cli/_errors.ts";
import { normalizeArgs } from "../../src/cli/_argv.ts";
import { parseBytes, parseDurationMs } from "../../src/cli/_flags.ts";
import { checkFlagsTogether, namingFlags, readFlag, SERVE_FLAGS, serveArgs, serveLogOptions, serveOptions, typedKeys } from "../../src/cli/serve-flags.ts";
import { run } from "../support/proc.ts";

/**
 * Walks the table of `serve` flags. What each flag must do is written out here
 * independently (the key it sets, a value as typed and what it becomes, a bad value
 * and its error), so a mistake in a row fails a test rather than being copied into one.
 */

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
const README = readFileSync(resolve(import.meta.dir, "../../README.md"), "utf8");

interface Expected {
  /** The NodeConfig key the flag sets; null for the flags `serve` reads itself. */
  key: keyof NodeConfig | null;
  input: string;
  value: unknown;
  /** A value the flag's kind refuses, and the whole message. */
  bad?: [string, string];
}

const DURATION = "must be a duration with a unit, like 500ms, 30s, 10m or 24h";
const SIZE = "must be a size like 1048576, 512kb or 100mb";

const EXPECTED: Record<string, Expected> = {
  port: { key: "port", input: "3001", value: 3001, bad: ["70000", '--port must be an integer from 0 to 65535, not "70000"'] },
  "resp-port": { key: "respPort", input: "6379", value: 6379, bad: ["x", '--resp-port must be an integer from 0 to 65535, not "x"'] },
  host: { key: "host", input: "0.0.0.0", value: "0.0.0.0" },
  name: { key: "name", input: "n1", value: "n1" },
  "max-key-bytes": { key: "maxKeyBytes", input: "2kb", value: 2048, bad: ["lots", `--max-key-bytes ${SIZE}, not "lots"`] },
  "max-value-bytes": { key: "maxValueBytes", input: "1m", value: 1_000_000, bad: ["1x", `--max-value-bytes ${SIZE}, not "1x"`] },
  "max-memory": { key: "maxMemoryBytes", input: "512mb", value: 512 * 1024 * 1024, bad: ["-1", `--max-memory ${SIZE}, not "-1"`] },
  eviction: { key: "eviction", input: "lru", value: "lru", bad: ["random", '--eviction must be one of noeviction, lru, not "random"'] },
  "tombstone-ttl": { key: "tombstoneTtlMs", input: "1h", value: 3_600_000, bad: ["3600", `--tombstone-ttl ${DURATION}, not "3600"`] },
  "data-dir": { key: "dataDir", input: "/var/lib/makhzen", value: "/var/lib/makhzen" },
  fsync: { key: "fsync", input: "always", value: "always", bad: ["never", '--fsync must be one of always, everysec, no, not "never"'] },
  peers: {
    key: "peers",
    input: "http://10.0.0.1:3000, https://b:2",
    value: ["http://10.0.0.1:3000", "https://b:2"],
    bad: [" , ", "--peers must list at least one URL"],
  },
  replicas: { key: "replicas", input: "2", value: 2, bad: ["0", '--replicas must be an integer from 1 to 100, not "0"'] },
  advertise: { key: "advertise", input: "http://10.0.0.3:3000", value: "http://10.0.0.3:3000", bad: ["10.0.0.3", '--advertise must be a URL like http://10.0.0.2:3000, not "10.0.0.3"'] },
  timings: { key: null, input: "fast", value: "fast", bad: ["turbo", '--timings must be one of default, fast, not "turbo"'] },
  "heartbeat-interval": { key: "heartbeatIntervalMs", input: "1.5s", value: 1500, bad: ["1000", `--heartbeat-interval ${DURATION}, not "1000"`] },
  "anti-entropy-interval": { key: "antiEntropyIntervalMs", input: "2m", value: 120_000, bad: ["2", `--anti-entropy-interval ${DURATION}, not "2"`] },
  "request-timeout": { key: "requestTimeoutMs", input: "250ms", value: 250, bad: ["5 sec", `--request-timeout ${DURATION}, not "5 sec"`] },
  "queue-max": { key: "queueMaxRecords", input: "5000", value: 5000, bad: ["1k", '--queue-max must be an integer from 1 to 1000000000, not "1k"'] },
  "queue-max-bytes": { key: "queueMaxBytes", input: "64mb", value: 64 * 1024 * 1024, bad: ["64 megs", `--queue-max-bytes ${SIZE}, not "64 megs"`] },
  "reap-dead-after": { key: "reapDeadAfterMs", input: "7d", value: 7 * 86_400_000, bad: ["1w", `--reap-dead-after ${DURATION}, not "1w"`] },
  "log-level": { key: null, input: "warn", value: "warn", bad: ["loud", '--log-level must be one of debug, info, warn, error, not "loud"'] },
  "log-format": { key: null, input: "text", value: "text", bad: ["xml", '--log-format must be one of json, text, not "xml"'] },
  "max-clock-offset": { key: "maxClockOffsetMs", input: "2s", value: 2000, bad: ["25h", "--max-clock-offset must be from 10ms to 24h, not 25h"] },
  "drain-timeout": { key: "drainTimeoutMs", input: "0s", value: 0, bad: ["soon", `--drain-timeout ${DURATION}, not "soon"`] },
  token: { key: "token", input: "t0ken", value: "t0ken" },
  "read-token": { key: "readToken", input: "r3ad", value: "r3ad" },
  "cluster-secret": { key: "clusterSecret", input: "s".repeat(16), value: "s".repeat(16) },
  "tls-cert": { key: "tlsCertFile", input: "cert.pem", value: "cert.pem" },
  "tls-key": { key: "tlsKeyFile", input: "key.pem", value: "key.pem" },
  "tls-ca": { key: "tlsCaFile", input: "ca.pem", value: "ca.pem" },
  insecure: { key: "insecure", input: "yes", value: true, bad: ["maybe", '--insecure must be true or false, not "maybe"'] },
  "body-timeout": { key: "bodyTimeoutMs", input: "5s", value: 5000, bad: ["5", `--body-timeout ${DURATION}, not "5"`] },
  "idle-timeout": { key: "idleTimeoutMs", input: "10s", value: 10_000, bad: ["10", `--idle-timeout ${DURATION}, not "10"`] },
  "max-clients": { key: "maxClients", input: "500", value: 500, bad: ["0", '--max-clients must be an integer from 1 to 1000000, not "0"'] },
};

const byName = (name: string) => SERVE_FLAGS.find((f) => f.name === name)!;
const ansi = /\u001B\[[0-9;]*m/g;

/** What a flag's value does: the node options it sets, or (for the flags serve reads itself) where it shows. */
function effect(name: string, args: Record<string, unknown>, env: Record<string, string>): unknown {
  const options = serveOptions(args, env);
  if (name === "timings") return options.deadAfterMs === FAST_TIMINGS.deadAfterMs ? "fast" : undefined;
  if (name === "log-level") return serveLogOptions(args, env, true).level;
  if (name === "log-format") return serveLogOptions(args, env, true).format;
  return options;
}

const expectedEffect = (name: string, e: Expected): unknown => (e.key === null ? e.value : { [e.key]: e.value });

/** The usage error a call throws: exit code and message. */
function usageErrorOf(fn: () => unknown): { exitCode: number; message: string } {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CliError);
    return { exitCode: (e as CliError).exitCode, message: (e as CliError).message };
  }
  throw new Error("expected a usage error");
}

describe("the serve flag table", () => {
  test("names each flag once, and every flag has its expectations written here", () => {
    const names = SERVE_FLAGS.flatMap((f) => [f.name, ...f.aliases]);
    expect(new Set(names).size).toBe(names.length);
    expect(SERVE_FLAGS.map((f) => f.name).sort()).toEqual(Object.keys(EXPECTED).sort());
    expect(byName("peers").aliases).toEqual(["cluster"]);
  });

  test("every flag sets the NodeConfig key the table says, and only it", () => {
    for (const f of SERVE_FLAGS) {
      const e = EXPECTED[f.name]!;
      expect({ flag: f.name, key: f.key ?? null }).toEqual({ flag: f.name, key: e.key });
      expect({ flag: f.name, effect: effect(f.name, { [f.name]: e.input }, {}) }).toEqual({ flag: f.name, effect: expectedEffect(f.name, e) });
      // The logger's flags are not node options.
      if (f.name.startsWith("log-")) expect(serveOptions({ [f.name]: e.input }, {})).toEqual({});
    }
  });

  test("every flag reads its MAKHZEN_* variable when not given, and the flag wins over it", () => {
    for (const f of SERVE_FLAGS) {
      const e = EXPECTED[f.name]!;
      expect(f.env).toBe(`MAKHZEN_${f.name.toUpperCase().replaceAll("-", "_")}`);
      expect({ env: f.env, effect: effect(f.name, {}, { [f.env]: e.input }) }).toEqual({ env: f.env, effect: expectedEffect(f.name, e) });
      // Given on the command line, the variable is not even parsed: a bad one does not matter.
      const other = e.bad?.[0] ?? "from-the-environment";
      expect({ flag: f.name, effect: effect(f.name, { [f.name]: e.input }, { [f.env]: other }) }).toEqual({ flag: f.name, effect: expectedEffect(f.name, e) });
    }
    expect(serveOptions({}, {})).toEqual({});
  });

  test("a bad value is a usage error (exit 2) naming the flag, or the variable when it came from the environment", () => {
    for (const f of SERVE_FLAGS) {
      const bad = EXPECTED[f.name]!.bad;
      if (bad === undefined) continue;
      const [input, message] = bad;
      expect(usageErrorOf(() => readFlag(f, { [f.name]: input }, {}))).toEqual({ exitCode: 2, message });
      // The user set MAKHZEN_PORT, not --port: the error says so.
      expect(usageErrorOf(() => readFlag(f, {}, { [f.env]: input }))).toEqual({ exitCode: 2, message: message.replace(`--${f.name}`, f.env) });
    }
    // The node options refuse it too, not only the flag alone.
    expect(usageErrorOf(() => serveOptions({}, { MAKHZEN_IDLE_TIMEOUT: "30" })).message).toStartWith("MAKHZEN_IDLE_TIMEOUT ");
  });

  test("a flag's bounds, written in the units a user types, are the node's: the ends pass resolveConfig, one past them fails both", () => {
    // [flag, lowest, highest, one below, one above] as a user would type them; undefined: no bound of the flag's own.
    const BOUNDS: [string, string | undefined, string | undefined, string | undefined, string | undefined][] = [
      ["max-key-bytes", "1", "64kb", "0", "65537"],
      ["max-value-bytes", "0", "512mb", undefined, "536870913"],
      ["queue-max-bytes", "1kb", undefined, "1023", undefined],
      ["heartbeat-interval", "10ms", undefined, "9ms", "3601s"],
      ["anti-entropy-interval", "10ms", "24h", "9ms", "86400001ms"],
      ["request-timeout", "10ms", "1h", "9ms", "3600001ms"],
      ["drain-timeout", "0s", "1h", undefined, "3600001ms"],
      ["body-timeout", "100ms", "1h", "99ms", "3600001ms"],
      ["idle-timeout", "1s", "255s", "999ms", "255001ms"],
      ["max-clock-offset", "10ms", "24h", "9ms", "86400001ms"],
    ];
    for (const [name, low, high, below, above] of BOUNDS) {
      const f = byName(name);
      const configError = (value: number) => {
        try {
          resolveConfig({ [f.key!]: value });
          return undefined;
        } catch (e) {
          return (e as Error).message;
        }
      };
      for (const ok of [low, high]) {
        if (ok === undefined) continue;
        expect({ name, ok, error: configError(f.kind.parse(f.name, ok) as number) }).toEqual({ name, ok, error: undefined });
      }
      for (const [bad, bound] of [[below, low], [above, high]] as const) {
        if (bad === undefined) continue;
        const unbounded = f.kind.name === "size" ? parseBytes(name, bad) : parseDurationMs(name, bad);
        expect({ name, bad, error: configError(unbounded) }).toEqual({ name, bad, error: expect.stringMatching(new RegExp(`^${f.key} `)) });
        const { message } = usageErrorOf(() => f.kind.parse(f.name, bad));
        expect(message).toStartWith(`--${name} must be `);
        expect(message).toEndWith(`, not ${bad}`);
        if (bound !== undefined) expect(message).toContain(bound);
      }
    }
    expect(usageErrorOf(() => byName("idle-timeout").kind.parse("idle-timeout", "300s")).message).toBe("--idle-timeout must be from 1s to 255s, not 300s");
    // Past the largest a node takes, said in the units typed (it was "not 1.0737418239999893e+23", from the node's own check).
    expect(usageErrorOf(() => byName("max-memory").kind.parse("max-memory", "99999999999999gb")).message).toBe("--max-memory must be at most 8388607gb, not 99999999999999gb");
    expect(usageErrorOf(() => byName("tombstone-ttl").kind.parse("tombstone-ttl", "999999999999999d")).message).toBe("--tombstone-ttl must be at most 104249991d, not 999999999999999d");
    expect(byName("max-memory").kind.parse("max-memory", "8388607gb")).toBe(8388607 * 1024 ** 3);
    // A unit is one of the size units, never a name Object.prototype has.
    expect(usageErrorOf(() => byName("max-memory").kind.parse("max-memory", "1constructor")).message).toBe(`--max-memory ${SIZE}, not "1constructor"`);
  });

  test("rules between flags name the flags: tokens, the TLS pair, timings without flags of their own", () => {
    const refused = (args: Record<string, unknown>) => usageErrorOf(() => checkFlagsTogether(serveOptions(args, {}))).message;
    expect(refused({ "read-token": "r" })).toBe("--read-token needs --token: without it every client may write anyway");
    expect(refused({ token: "same", "read-token": "same" })).toBe("--read-token must differ from --token");
    expect(refused({ "tls-key": "k.pem" })).toBe("--tls-cert and --tls-key go together: give both or neither");
    // Set in the environment, named as set there: the user typed no --tls-cert.
    const fromEnv = (env: Record<string, string>) => usageErrorOf(() => checkFlagsTogether(serveOptions({}, env), typedKeys({}))).message;
    expect(fromEnv({ MAKHZEN_TLS_CERT: "c.pem" })).toBe("MAKHZEN_TLS_CERT and --tls-key go together: give both or neither");
    expect(fromEnv({ MAKHZEN_READ_TOKEN: "r" })).toBe("MAKHZEN_READ_TOKEN needs --token: without it every client may write anyway");
    expect(fromEnv({ MAKHZEN_READ_TOKEN: "r", MAKHZEN_TOKEN: "r" })).toBe("MAKHZEN_READ_TOKEN must differ from MAKHZEN_TOKEN");
    // The secret signs peer requests: a token that is the secret is a peer's credential (a read token that writes).
    const secret = "s".repeat(16);
    expect(refused({ token: "t", "read-token": secret, "cluster-secret": secret })).toBe(
      "--read-token must differ from --cluster-secret: a client holding the secret can act as a peer, and write",
    );
    expect(refused({ token: secret, "cluster-secret": secret })).toBe("--token must differ from --cluster-secret: a client holding the secret can act as a peer");
    expect(fromEnv({ MAKHZEN_TOKEN: secret, MAKHZEN_CLUSTER_SECRET: secret })).toBe("MAKHZEN_TOKEN must differ from MAKHZEN_CLUSTER_SECRET: a client holding the secret can act as a peer");
    expect(refused({ "heartbeat-interval": "10s" })).toBe("--heartbeat-interval must be at most 5s (the silence after which a member is suspect), not 10s");
    expect(refused({ timings: "fast", "reap-dead-after": "1s" })).toBe(
      "--reap-dead-after must be at least 1500ms (the silence after which a member is dead under the fast timings), not 1s",
    );
    // Set in the environment, named as set there (they were named as flags nobody typed).
    expect(fromEnv({ MAKHZEN_HEARTBEAT_INTERVAL: "10s" })).toBe("MAKHZEN_HEARTBEAT_INTERVAL must be at most 5s (the silence after which a member is suspect), not 10s");
    expect(fromEnv({ MAKHZEN_TIMINGS: "fast", MAKHZEN_REAP_DEAD_AFTER: "1s" })).toBe(
      "MAKHZEN_REAP_DEAD_AFTER must be at least 1500ms (the silence after which a member is dead under the fast timings), not 1s",
    );
    expect(() => checkFlagsTogether(serveOptions({ token: "t", "read-token": "r", "heartbeat-interval": "5s" }, {}))).not.toThrow();
    // A flag typed without what gives it effect is refused, not ignored.
    expect(refused({ fsync: "always" })).toBe("--fsync needs --data-dir: without one nothing is written to disk, so there is nothing to fsync");
    expect(refused({ eviction: "lru" })).toBe("--eviction needs --max-memory above 0: without a memory budget nothing is ever evicted");
    expect(refused({ eviction: "noeviction", "max-memory": "0" })).toBe("--eviction needs --max-memory above 0: without a memory budget nothing is ever evicted");
    expect(() => checkFlagsTogether(serveOptions({ fsync: "always", "data-dir": "/d", eviction: "lru", "max-memory": "1mb" }, {}))).not.toThrow();
    // From the environment it is a standing default: used where it applies, else unused.
    const env = { MAKHZEN_FSYNC: "always", MAKHZEN_EVICTION: "lru" };
    const standing = serveOptions({}, env);
    expect(() => checkFlagsTogether(standing, typedKeys({}))).not.toThrow();
    // Dropped, so the node (whose resolveConfig refuses them given alone) starts without them.
    expect([standing.fsync, standing.eviction]).toEqual([undefined, undefined]);
    expect(() => resolveConfig(standing)).not.toThrow();
    const applies = serveOptions({ "data-dir": "/d", name: "n", "max-memory": "1mb" }, env);
    checkFlagsTogether(applies, typedKeys({ "data-dir": "/d", name: "n", "max-memory": "1mb" }));
    expect([applies.fsync, applies.eviction]).toEqual(["always", "lru"]);
    expect(usageErrorOf(() => checkFlagsTogether(serveOptions({ fsync: "no" }, env), typedKeys({ fsync: "no" }))).message).toStartWith("--fsync needs --data-dir");
    // What only the node finds is reworded with the flags that set the fields.
    expect(namingFlags('tlsCertFile "/x.pem" cannot be read: ENOENT')).toBe('--tls-cert "/x.pem" cannot be read: ENOENT');
    expect(namingFlags("name must be given with dataDir when port is 0")).toBe("--name must be given with --data-dir when --port is 0");
    // A quoted value is the user's own: kept as typed, whatever words it holds.
    expect(namingFlags('name "bad name" must be 1-128 characters')).toBe('--name "bad name" must be 1-128 characters');
    expect(namingFlags('tlsCertFile "/etc/name \\"port\\".pem" cannot be read')).toBe('--tls-cert "/etc/name \\"port\\".pem" cannot be read');
    expect(namingFlags("suspectAfterMs must be an integer")).toBe("suspectAfterMs must be an integer");
    // The node quotes a value as JSON does, so a quote inside it is no end of the quoting (`--name "a"b\--name"` before).
    const refusal = (o: Record<string, unknown>) => {
      try {
        resolveConfig(o);
      } catch (e) {
        return namingFlags((e as Error).message);
      }
    };
    expect(refusal({ name: 'a"b\\name' })).toStartWith('--name "a\\"b\\\\name" must be');
    expect(refusal({ advertise: 'ftp://x"name' })).toStartWith('--advertise "ftp://x\\"name" must be http:// or https://');
  });

  test("secrets are checked as typed, and never echoed", () => {
    expect(usageErrorOf(() => byName("cluster-secret").kind.parse("cluster-secret", "short")).message).toBe(
      "--cluster-secret must be at least 16 characters (try: openssl rand -hex 32); it has 5",
    );
    expect(usageErrorOf(() => byName("token").kind.parse("token", "has space")).message).toBe("--token must be visible ASCII characters without spaces");
    expect(usageErrorOf(() => byName("read-token").kind.parse("read-token", "t\u00e9")).message).toBe("--read-token must be visible ASCII characters without spaces");
  });

  test("every default --help shows is the node's default, in a spelling the flag accepts", () => {
    const shown = SERVE_FLAGS.filter((f) => f.shownDefault !== undefined);
    expect(shown.map((f) => f.name)).toContain("heartbeat-interval");
    for (const f of shown) {
      const parsed = f.kind.parse(f.name, f.shownDefault!);
      if (f.key !== undefined) expect({ flag: f.name, parsed }).toEqual({ flag: f.name, parsed: (DEFAULTS as Partial<NodeConfig>)[f.key] });
      else expect({ flag: f.name, parsed }).toEqual({ flag: f.name, parsed: serveLogOptions({}, {}, true).level });
    }
  });

  test("every flag and alias takes effect in every spelling: --x v, --x=v, -x v, -x=v", () => {
    for (const f of SERVE_FLAGS) {
      const e = EXPECTED[f.name]!;
      for (const spelling of [f.name, ...f.aliases]) {
        const forms: [string[], unknown][] =
          f.kind.type === "boolean"
            ? [[[`--${spelling}`], true], [[`-${spelling}`], true], [[`--${spelling}=false`], false], [[`-${spelling}=yes`], true], [[`--no-${spelling}`], false]]
            : [[`--${spelling}`, e.input], [`--${spelling}=${e.input}`], [`-${spelling}`, e.input], [`-${spelling}=${e.input}`]].map((raw) => [raw, e.value]);
        for (const [raw, value] of forms) {
          const args = parseArgs(normalizeArgs(raw, serveArgs).argv, serveArgs) as Record<string, unknown>;
          expect({ raw, effect: effect(f.name, args, {}) }).toEqual({ raw, effect: expectedEffect(f.name, { ...e, value }) });
        }
      }
    }
    // A switch turned off on the command line beats the variable.
    expect(serveOptions(parseArgs(["--no-insecure"], serveArgs), { MAKHZEN_INSECURE: "1" }).insecure).toBe(false);
    expect(() => normalizeArgs(["--heartbeat", "1s"], serveArgs)).toThrow("unknown flag --heartbeat; see --help");
  });

  test("serve --help (and agent --help) lists every flag, its aliases and its description", async () => {
    const [serve, agent] = await Promise.all([run([process.execPath, MAIN, "serve", "--help"]), run([process.execPath, MAIN, "agent", "--help"])]);
    expect(serve.code).toBe(0);
    expect(agent.stdout).toBe(serve.stdout);
    const lines = serve.stdout.replace(ansi, "").split("\n");
    for (const f of SERVE_FLAGS) {
      const spellings = [...f.aliases.map((a) => `-${a}`), `--${f.name}`].join(", ");
      const hint = f.kind.type === "boolean" ? "" : `=<${f.name.replaceAll("-", "_")}>`;
      const line = lines.find((l) => l.trim().startsWith(`${spellings}${hint} `));
      expect({ flag: f.name, line: line?.trim().slice(spellings.length + hint.length).trim() }).toEqual({ flag: f.name, line: f.description });
    }
    // The notes in parentheses, as users have always read them.
    expect(byName("heartbeat-interval").description).toBe("Heartbeat period, e.g. 1s (default 1s; env MAKHZEN_HEARTBEAT_INTERVAL)");
    // Every flag names its variable (a few did, as if the rest had none).
    for (const f of SERVE_FLAGS) expect(f.description, f.name).toContain(`env ${f.env}`);
    expect(byName("peers").description).toEndWith("(alias --cluster; env MAKHZEN_PEERS)");
    expect(byName("token").description).toEndWith("(env MAKHZEN_TOKEN: keeps it out of ps)");
    expect(byName("data-dir").description).toBe("Keep a durable copy in this directory (default: in memory only; env MAKHZEN_DATA_DIR)");
  });

  test("README's flag tables list every flag beside its variable", () => {
    const rows = README.split("\n").filter((l) => l.startsWith("| `--"));
    for (const f of SERVE_FLAGS) {
      const row = rows.find((r) => new RegExp("`--" + f.name + "[` ]").test(r));
      expect({ flag: f.name, env: row?.includes("`" + f.env + "`") }).toEqual({ flag: f.name, env: true });
      for (const a of f.aliases) expect(row).toContain("`--" + a + "`");
    }
  });
});
