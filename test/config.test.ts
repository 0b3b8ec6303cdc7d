import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { createNode, createLogger, type CreateNodeOptions, type MakhzenNode } from "../src/index.ts";
import { OPTION_NAMES, resolveConfig } from "../src/config.ts";
import { SERVE_FLAGS } from "../src/cli/serve-flags.ts";
import { closeAfterEach } from "./support/cleanup.ts";

/**
 * createNode as plain JavaScript calls it: options TypeScript would refuse at
 * compile time are refused at run time, with an error that names the option.
 */
const track = closeAfterEach();
/** createNode with no types, as a JavaScript caller has it. */
const createNodeJs = createNode as (options?: unknown) => MakhzenNode;

function refusal(options: unknown): string {
  try {
    track(createNodeJs(options));
  } catch (e) {
    expect((e as { code?: string }).code).toBe("INVALID_CONFIG");
    return (e as Error).message;
  }
  throw new Error(`createNode accepted ${String(options)}`);
}

describe("unknown options", () => {
  test("are refused, with the option they most likely stand for", () => {
    const cases: [string, string][] = [
      ["maxMemory", 'unknown option "maxMemory"; did you mean "maxMemoryBytes"?'], // the unit left off
      ["tombstoneTtl", 'unknown option "tombstoneTtl"; did you mean "tombstoneTtlMs"?'],
      ["heartbeatInterval", 'unknown option "heartbeatInterval"; did you mean "heartbeatIntervalMs"?'],
      ["max-value-bytes", 'unknown option "max-value-bytes"; did you mean "maxValueBytes"?'], // the flag's spelling
      ["MaxKeyBytes", 'unknown option "MaxKeyBytes"; did you mean "maxKeyBytes"?'],
      ["prot", 'unknown option "prot"; did you mean "port"?'], // a typo
      ["clustreSecret", 'unknown option "clustreSecret"; did you mean "clusterSecret"?'],
      ["cluster", 'unknown option "cluster"; did you mean "peers"?'], // the old makhzen's -cluster
      ["bindPort", 'unknown option "bindPort"; did you mean "port"?'], // huton's -bindPort
      ["replication_factor", 'unknown option "replication_factor"; did you mean "replicas"?'], // Cassandra's
      ["replicationFactor", 'unknown option "replicationFactor"; did you mean "replicas"?'],
      ["replica", 'unknown option "replica"; did you mean "replicas"?'],
      ["log", 'unknown option "log"; did you mean "logger"?'],
      ["tlsCert", 'unknown option "tlsCert"; did you mean "tlsCertFile"?'],
    ];
    for (const [name, message] of cases) expect(refusal({ [name]: 1 })).toBe(message);
  });

  test("several close names are all offered; none close lists every option", () => {
    expect(refusal({ timeout: 1 })).toMatch(/^unknown option "timeout"; did you mean "\w+TimeoutMs", "\w+TimeoutMs" or "\w+TimeoutMs"\?$/);
    const none = refusal({ zzz: 1 });
    expect(none).toStartWith('unknown option "zzz"; the options are host, port,');
    for (const name of [...OPTION_NAMES, "logger"]) expect(none).toContain(name);
  });

  test("names of Object.prototype are unknown options like any other, never its functions", () => {
    for (const name of ["constructor", "toString", "hasOwnProperty", "__proto__"]) {
      const message = refusal(JSON.parse(`{"${name}": 1}`));
      expect({ name, message }).toEqual({ name, message: expect.stringMatching(new RegExp(`^unknown option "${name}"; `)) });
      expect(message).not.toContain("function");
    }
  });

  test("a misspelt option given as undefined is still a misspelt option", () => {
    expect(refusal({ maxMemory: undefined })).toContain('"maxMemoryBytes"');
  });

  test("resolveConfig refuses them too (it is what createNode calls)", () => {
    expect(() => resolveConfig({ maxMemory: 1 } as never)).toThrow('unknown option "maxMemory"; did you mean "maxMemoryBytes"?');
  });

  test("options that are not an object are refused", () => {
    for (const options of [null, "port=3000", 3000, [], true]) {
      expect(refusal(options)).toStartWith("options must be an object");
    }
  });
});

describe("wrong types and values, as plain JavaScript may pass them", () => {
  test("every option, given an object, NaN or null, is refused with INVALID_CONFIG naming it", () => {
    for (const name of OPTION_NAMES) {
      for (const value of [{}, Number.NaN, null]) {
        const message = refusal({ [name]: value });
        expect({ name, value, message: message.startsWith(`${name} `) }).toEqual({ name, value, message: true });
      }
    }
  });

  test("the gaps that let wrong types through before: name, wallClock, the TLS files, host and port under a default name", () => {
    expect(refusal({ name: 5 })).toBe("name must be a string, not 5");
    expect(refusal({ wallClock: 1_700_000_000_000 })).toStartWith("wallClock must be a function");
    expect(refusal({ tlsCaFile: 3 })).toBe("tlsCaFile must be the path of a PEM file");
    expect(refusal({ tlsCertFile: "", tlsKeyFile: "k.pem" })).toBe("tlsCertFile must be the path of a PEM file");
    // A string is shown quoted: `not 3000` read as if 3000 were wrong.
    expect(refusal({ port: "3000" })).toBe('port must be an integer from 0 to 65535, not "3000"');
    expect(refusal({ host: ["0.0.0.0"] })).toBe("host must be a non-empty string");
    // A BigInt says so: `not 1` read as if 1 were a valid value.
    expect(refusal({ eviction: 1n })).toBe("eviction must be noeviction or lru, not 1n (a BigInt)");
    expect(refusal({ maxMemoryBytes: 1n })).toBe("maxMemoryBytes must be an integer from 0 to 9007199254740991, not 1n (a BigInt)");
    expect(refusal({ fsync: "sometimes" })).toBe('fsync must be always, everysec or no, not "sometimes"');
    expect(refusal({ peers: "http://127.0.0.1:3001" })).toBe("peers must be a list of URLs");
  });

  test("peers and advertise take host:port as the CLI does, and refuse what a node would never send", () => {
    // huton's `-peers 127.0.0.1:8100` means http://127.0.0.1:8100, embedded as on the command line.
    expect(resolveConfig({ peers: ["127.0.0.1:8100", "http://10.0.0.2:3000/", "[::1]:9"], advertise: "localhost:3000" })).toMatchObject({
      peers: ["http://127.0.0.1:8100", "http://10.0.0.2:3000", "http://[::1]:9"],
      advertise: "http://localhost:3000",
    });
    for (const url of ["http://10.0.0.2:3000?x=1", "http://10.0.0.2:3000#f", "http://10.0.0.2:3000/prefix", "http://u:p@10.0.0.2:3000"]) {
      // A password is masked: errors reach terminals and logs.
      expect(refusal({ peers: [url] })).toBe(`peers "${url.replace(":p@", ":***@")}" must be scheme, host and port only, like http://10.0.0.2:3000 (no path, query, fragment or user name)`);
    }
    expect(refusal({ advertise: "ftp://x:1" })).toBe('advertise "ftp://x:1" must be http:// or https://');
    expect(refusal({ peers: [3000] })).toBe("peers must be a URL like http://10.0.0.2:3000 (a string), not 3000");
  });

  test("host must be an address to listen on: IPv4, IPv6 without brackets, or a hostname", () => {
    // 999.1.1.1 was refused by protected mode (not loopback: "without --token"), and with a token by getaddrinfo.
    for (const host of ["999.1.1.1", "1.2.3", "127.1", "01.2.3.4", "1.2.3.4.5", "[::1]", "::g", "a b", "-x.example", "a..b", "x".repeat(64), "ex\nample"]) {
      expect(refusal({ host })).toBe(`host ${JSON.stringify(host)} is not an address to listen on: an IPv4 address (four numbers from 0 to 255), an IPv6 address without brackets (::1) or a hostname`);
    }
    for (const host of ["127.0.0.1", "0.0.0.0", "255.255.255.255", "::1", "::", "fe80::1", "::ffff:127.0.0.1", "localhost", "node-1.example.com", "db_1", "example.com."]) {
      expect(resolveConfig({ host }).host).toBe(host);
    }
  });

  test("fsync without dataDir and eviction without maxMemoryBytes would do nothing: refused, as the CLI refuses the flags", () => {
    expect(refusal({ fsync: "always" })).toBe("fsync needs dataDir: without one nothing is written to disk, so there is nothing to fsync");
    expect(refusal({ eviction: "lru" })).toBe("eviction needs maxMemoryBytes above 0: without a memory budget nothing is ever evicted");
    expect(refusal({ eviction: "noeviction", maxMemoryBytes: 0 })).toStartWith("eviction needs maxMemoryBytes above 0");
    expect(resolveConfig({ fsync: "always", dataDir: "/d", name: "n" }).fsync).toBe("always");
    expect(resolveConfig({ eviction: "lru", maxMemoryBytes: 1 << 20 }).eviction).toBe("lru");
    expect(resolveConfig({}).fsync).toBe("everysec"); // the defaults alone are no refusal
  });

  test("out-of-range values are refused as they always were", () => {
    expect(refusal({ maxMemoryBytes: -1 })).toStartWith("maxMemoryBytes must be an integer from 0");
    expect(refusal({ idleTimeoutMs: 300_000 })).toStartWith("idleTimeoutMs must be an integer from 1000 to 255000");
    expect(refusal({ maxKeyBytes: 1.5 })).toStartWith("maxKeyBytes must be an integer");
    for (const replicas of [0, 101, 2.5, "3"]) expect(refusal({ replicas })).toStartWith("replicas must be an integer from 1 to 100, not ");
    expect(resolveConfig({ replicas: 1 }).replicas).toBe(1);
    expect(resolveConfig({ replicas: 100 }).replicas).toBe(100);
    expect(resolveConfig({}).replicas).toBe(3);
  });

  test("a logger must be a logger", () => {
    expect(refusal({ logger: console })).toStartWith("logger must have debug, info, warn, error and child");
    expect(refusal({ logger: null })).toStartWith("logger must have");
    // A real one, and none at all, are fine; so is an option given as undefined.
    track(createNode({ logger: createLogger({ write: () => undefined }) }));
    track(createNodeJs({ logger: undefined, port: undefined, name: "n1" }));
  });
});

describe("the bucket API checks its arguments as TypeScript would", () => {
  test("unknown or mistyped call options are refused (VALIDATION), keys must be strings (INVALID_KEY)", () => {
    const node = track(createNode({ name: "js" }));
    const b = node.bucket() as unknown as Record<string, (...args: unknown[]) => unknown>;
    const codeOf = (f: () => unknown): [string, string] => {
      try {
        f();
      } catch (e) {
        return [(e as { code: string }).code, (e as Error).message];
      }
      return ["none", ""];
    };
    expect(codeOf(() => b.set!("k", "v", { TTL: 60 }))).toEqual(["VALIDATION", 'set has no option "TTL"; did you mean "ttl"?']);
    expect(codeOf(() => b.set!("k", "v", { expire: 60 }))).toEqual(["VALIDATION", 'set has no option "expire"; it takes ttl, ifMatch, ifAbsent']);
    // Object.prototype's names are no options (`constructor` threw a TypeError from inside the check).
    expect(codeOf(() => b.set!("k", "v", { constructor: 1 }))).toEqual(["VALIDATION", 'set has no option "constructor"; it takes ttl, ifMatch, ifAbsent']);
    expect(codeOf(() => b.set!("k", "v", { ttl: "60" }))).toEqual(["VALIDATION", "set option ttl must be a number, not string"]);
    expect(codeOf(() => b.set!("k", "v", 60))).toEqual(["VALIDATION", "set options must be an object like { ttl, ifMatch, ifAbsent }"]);
    expect(codeOf(() => b.set!("k", "v", { ifAbsent: "yes" }))[0]).toBe("VALIDATION");
    expect(codeOf(() => b.delete!("k", { ifMatch: 5 }))).toEqual(["VALIDATION", "delete option ifMatch must be a string, not number"]);
    expect(codeOf(() => b.list!({ prefix: 5 }))).toEqual(["VALIDATION", "list option prefix must be a string, not number"]);
    expect(codeOf(() => b.list!({ cursor: "x" }))).toEqual(["VALIDATION", 'list has no option "cursor"; it takes prefix, limit, after']);
    expect(codeOf(() => b.get!(5))).toEqual(["INVALID_KEY", "key must be a string, not number"]);
    // get takes no options: r and timeoutMs are items().get's (get("k", { r: "all" }) was a silent local read).
    const none = "none (r and timeoutMs are node.items().get's, which asks the owners)";
    expect(codeOf(() => b.get!("k", { r: "all" }))).toEqual(["VALIDATION", `get has no option "r"; it takes ${none}`]);
    expect(codeOf(() => b.get!("k", { foo: 1 }))).toEqual(["VALIDATION", `get has no option "foo"; it takes ${none}`]);
    expect(codeOf(() => b.get!("k", 5))).toEqual(["VALIDATION", "get takes no options, not 5"]);
    expect(codeOf(() => b.get!("k", null))).toEqual(["VALIDATION", "get takes no options, not null"]);
    expect(codeOf(() => b.get!("k", {}))).toEqual(["none", ""]);
    expect(node.bucket().get("k")).toBeUndefined(); // nothing refused was written
    // Well-formed calls are untouched.
    expect(node.bucket().set("k", "v", { ttl: 60, ifAbsent: true, ifMatch: undefined }).value).toBe("v");
    expect(node.bucket().list({ prefix: "k", limit: 5 }).items.length).toBe(1);
    expect(node.bucket().delete("k", {})).toBe(true);
  });
});

describe("the README lists the options as they are", () => {
  const readme = readFileSync(resolve(import.meta.dir, "../README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Embedding"), readme.indexOf("\n## ", readme.indexOf("## Embedding") + 1));
  const rows = [...section.matchAll(/^\| `(\w+)` \| (.*?) \| (.*?) \| (.*?) \|$/gm)];

  test("every option of createNode is in the Embedding table, and nothing else", () => {
    const listed = rows.map((r) => r[1]!);
    expect(new Set(listed).size).toBe(listed.length);
    const options: (keyof CreateNodeOptions)[] = [...OPTION_NAMES, "logger"];
    expect([...listed].sort()).toEqual([...options].sort());
  });

  test("the flag beside each option is the serve flag that sets it", () => {
    const flagOf = new Map(SERVE_FLAGS.filter((f) => f.key !== undefined).map((f) => [f.key as string, f.name]));
    for (const [, option, flag] of rows) {
      if (option === "logger") continue; // --log-level and --log-format make the logger
      const expected = flagOf.get(option!);
      expect({ option, flag }).toEqual({ option, flag: expected === undefined ? "—" : `\`--${expected}\`` });
    }
  });
});
