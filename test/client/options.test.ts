import { afterAll, describe, expect, test } from "bun:test";
import { MakhzenClient, MakhzenClientError } from "../../src/client/client.ts";
import { createNode } from "../../src/index.ts";
import { silentLogger } from "../../src/ops/log.ts";

/**
 * The client checks its options and every call's arguments as createNode and the
 * embedded handles check theirs: a plain JavaScript caller (these calls go through
 * `any`, as JavaScript would) is refused, with status 0 and a message naming the
 * option, before anything is sent. Before, `{ timeout: 500 }` kept the 10 s default,
 * `put(k, v, { TTL: 5 })` stored no TTL, and `timeoutMs: -1` made every call throw
 * a raw TypeError.
 */

// Counts what reaches it: a refused call must send nothing.
let received = 0;
const server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch: () => {
    received++;
    return Response.json({ error: { code: "NOT_FOUND", message: "not found" } }, { status: 404 });
  },
});
const url = `http://127.0.0.1:${server.port}`;
afterAll(() => server.stop(true));

type Any = any;
const Client = MakhzenClient as Any;

async function refusal(call: () => unknown): Promise<{ status: number; code: string; message: string }> {
  const before = received;
  try {
    await call();
  } catch (e) {
    if (!(e instanceof MakhzenClientError)) throw new Error(`expected a MakhzenClientError, got ${String(e)}`);
    expect(received - before).toBe(0);
    return { status: e.status, code: e.code, message: e.message };
  }
  throw new Error("expected the call to be refused");
}

describe("MakhzenClient options", () => {
  test("an unknown option is refused with the name it stands for, as createNode refuses its own", async () => {
    expect(await refusal(() => new Client({ url, timeout: 500 }))).toEqual({ status: 0, code: "INVALID_CONFIG", message: 'unknown option "timeout"; did you mean "timeoutMs"?' });
    expect((await refusal(() => new Client({ url, bukket: "b" }))).message).toBe('unknown option "bukket"; did you mean "bucket"?');
    expect((await refusal(() => new Client({ url, tlsCa: "x" }))).message).toBe('unknown option "tlsCa"; did you mean "ca"?');
    expect((await refusal(() => new Client({ url, baseURL: url }))).message).toBe('unknown option "baseURL"; did you mean "url"?');
    // Nothing close: the options are listed. `constructor` is not taken for one (Object.prototype's).
    expect((await refusal(() => new Client({ zzz: 1 }))).message).toBe('unknown option "zzz"; the options are url, bucket, timeoutMs, token, ca');
    expect((await refusal(() => new Client(JSON.parse('{"constructor": 1}')))).code).toBe("INVALID_CONFIG");
  });

  test("options that are not an object are refused with a clear error, not a TypeError", async () => {
    expect(await refusal(() => new Client(null))).toEqual({ status: 0, code: "INVALID_CONFIG", message: "options must be an object of named options, not null" });
    expect((await refusal(() => new Client([url]))).message).toBe("options must be an object of named options, not an array");
    expect((await refusal(() => new Client(url))).message).toBe(`options must be an object of named options, not "${url}"; pass { url: "${url}" }`);
    expect((await refusal(() => new Client(3000))).code).toBe("INVALID_CONFIG");
    // Absent, or an option given as undefined, takes the default.
    expect(new Client().url).toBe("http://127.0.0.1:3000");
    expect(new Client({ url: undefined, bucket: undefined, timeoutMs: undefined, token: undefined, ca: undefined }).url).toBe("http://127.0.0.1:3000");
  });

  test("timeoutMs must be an integer from 1 ms to 24 h (the CLI's --timeout bounds)", async () => {
    for (const timeoutMs of [-1, 0, NaN, Infinity, 1.5, 86_400_001, "5", null, true]) {
      const e = await refusal(() => new Client({ url, timeoutMs }));
      expect({ timeoutMs, code: e.code, status: e.status }).toEqual({ timeoutMs, code: "INVALID_CONFIG", status: 0 });
      expect(e.message).toStartWith("timeoutMs must be an integer from 1 to 86400000");
    }
    for (const timeoutMs of [1, 86_400_000]) expect(new Client({ url, timeoutMs })).toBeInstanceOf(MakhzenClient);
  });

  test("url: a string of scheme, host and port; host:port means http", async () => {
    expect(new Client({ url: `127.0.0.1:${server.port}` }).url).toBe(url);
    expect(new Client({ url: `[::1]:${server.port}` }).url).toBe(`http://[::1]:${server.port}`);
    expect(new Client({ url: ` ${url}/ ` }).url).toBe(url);
    for (const bad of [3000, null, { toString: () => url }]) {
      const e = await refusal(() => new Client({ url: bad }));
      expect({ code: e.code, message: e.message }).toEqual({ code: "INVALID_URL", message: expect.stringContaining("url must be a string like http://10.0.0.2:3000") });
    }
    const why = async (u: string) => (await refusal(() => new Client({ url: u }))).message;
    expect(await why("http://h:3000?x=1")).toEndWith("it has a query (?...)");
    expect(await why("http://h:3000#top")).toEndWith("it has a fragment (#...)");
    expect(await why("http://u:p@h:3000")).toEndWith("it has a user name or password (a node takes a token: the token option)");
    // The password is not repeated in the error (it reaches terminals and logs).
    expect(await why("http://bob:s3cr3t@h:3000")).toStartWith('url "http://bob:***@h:3000" must be');
    expect(await why("http://h:3000/api")).toEndWith("it has a path (/api); a node serves at the root");
    expect(await why("ftp://h:21")).toBe('url "ftp://h:21" must be http:// or https://');
  });

  test("bucket: a bucket name a URL path can carry", async () => {
    for (const bucket of ["bad/x", "", "has space", "x".repeat(65), 5, null]) {
      const e = await refusal(() => new Client({ url, bucket }));
      expect({ bucket, code: e.code }).toEqual({ bucket, code: "INVALID_BUCKET" });
    }
    // Names a node takes, but fetch resolves them as dot segments: `/buckets/../items/k` is the default bucket's.
    for (const bucket of [".", ".."]) expect((await refusal(() => new Client({ url, bucket }))).message).toBe(`bucket "${bucket}" cannot be used in a URL path`);
    expect(new Client({ url, bucket: "a.b-c_1" })).toBeInstanceOf(MakhzenClient);
  });

  test("token: a string of visible ASCII, never echoed", async () => {
    for (const token of [12345, null, "", "has space", "line\nbreak", "ünï"]) {
      const e = await refusal(() => new Client({ url, token }));
      expect({ code: e.code, echoed: typeof token === "string" && token !== "" && e.message.includes(token) }).toEqual({ code: "INVALID_TOKEN", echoed: false });
    }
  });

  test("ca: PEM text of a certificate; a file name is said to be one", async () => {
    expect(await refusal(() => new Client({ url, ca: "./ca.pem" }))).toEqual({
      status: 0,
      code: "INVALID_CONFIG",
      message: 'ca is not a PEM certificate: it holds no PEM block (-----BEGIN ...); it is the PEM text, not a file name: pass readFileSync(file, "utf8")',
    });
    const garbled = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n";
    expect((await refusal(() => new Client({ url, ca: garbled }))).message).toBe("ca is not a PEM certificate: none of its PEM blocks parses as one");
    expect((await refusal(() => new Client({ url, ca: new Uint8Array(4) }))).message).toStartWith("ca must be a string of PEM text");
  });
});

describe("MakhzenClient call options", () => {
  const c = new Client({ url });

  test("each call refuses an option it does not take, with a did-you-mean, and sends nothing", async () => {
    const cases: [string, () => unknown, string][] = [
      ["put", () => c.put("k", "v", { TTL: 5 }), 'put has no option "TTL"; did you mean "ttl"?'],
      ["put", () => c.put("k", "v", { ifabsent: true }), 'put has no option "ifabsent"; did you mean "ifAbsent"?'],
      ["get", () => c.get("k", { bukket: "x" }), 'get has no option "bukket"; did you mean "bucket"?'],
      ["delete", () => c.delete("k", { ifmatch: "v" }), 'delete has no option "ifmatch"; did you mean "ifMatch"?'],
      ["list", () => c.list({ prefx: "a" }), 'list has no option "prefx"; did you mean "prefix"?'],
      ["listAll", async () => { for await (const _ of c.listAll({ cursor: "x" })) void _; }, 'listAll has no option "cursor"; it takes bucket, prefix, limit'],
      ["dump", () => c.dump({ local: true }), 'dump has no option "local"; it takes bucket, scope'],
      ["placement", () => c.placement("k", { bucker: "b" }), 'placement has no option "bucker"; did you mean "bucket"?'],
      // Object.prototype's names are not options (the embedded handles' check threw a TypeError on these).
      ["get", () => c.get("k", JSON.parse('{"constructor": 1}')), 'get has no option "constructor"; it takes bucket'],
    ];
    for (const [name, call, message] of cases) {
      expect({ name, ...(await refusal(call)) }).toEqual({ name, status: 0, code: "VALIDATION", message });
    }
  });

  test("options of the wrong type, or not an object, are refused", async () => {
    expect((await refusal(() => c.put("k", "v", { ttl: "60" }))).message).toBe("put option ttl must be a number, not string");
    expect((await refusal(() => c.put("k", "v", { ifAbsent: "yes" }))).message).toBe("put option ifAbsent must be a boolean, not string");
    expect((await refusal(() => c.list({ limit: "10" }))).message).toBe("list option limit must be a number, not string");
    expect((await refusal(() => c.get("k", { bucket: 5 }))).message).toBe("get option bucket must be a string, not number");
    expect((await refusal(() => c.get("k", null))).message).toBe("get options must be an object like { bucket }");
    expect((await refusal(() => c.put("k", "v", 60))).message).toBe("put options must be an object like { bucket, ttl, ifMatch, ifAbsent }");
  });

  test("values the client itself puts in a path, header or query are checked", async () => {
    const cases: [() => unknown, string, string][] = [
      [() => c.get(5), "INVALID_KEY", "key must be a string, not number"],
      [() => c.put("k", 5), "VALIDATION", "value must be a string or a Uint8Array, not number"],
      [() => c.get("a\ud800b"), "INVALID_UNICODE", "key is not well-formed Unicode: it has a lone surrogate (no UTF-8 form)"],
      [() => c.placement("a\udc00"), "INVALID_UNICODE", "key is not well-formed Unicode: it has a lone surrogate (no UTF-8 form)"],
      [() => c.list({ prefix: "\ud800" }), "INVALID_UNICODE", "list option prefix is not well-formed Unicode: it has a lone surrogate (no UTF-8 form)"],
      [() => c.put("k", "v", { ifMatch: 'a"b' }), "VALIDATION", 'put option ifMatch must be a version as a node gives it (visible ASCII without quotes), not "a\\"b"'],
      [() => c.delete("k", { ifMatch: "a\nb" }), "VALIDATION", 'delete option ifMatch must be a version as a node gives it (visible ASCII without quotes), not "a\\nb"'],
      [() => c.get("k", { bucket: ".." }), "INVALID_BUCKET", 'bucket ".." cannot be used in a URL path'],
      [() => c.list({ bucket: "" }), "INVALID_BUCKET", 'bucket "" cannot be used in a URL path'],
      [() => c.dump({ scope: "Cluster" }), "VALIDATION", 'dump option scope must be "node" or "cluster", not "Cluster"'],
      [() => c.forget(".."), "VALIDATION", 'member name ".." cannot be used in a URL path'],
      [() => c.forget(7), "VALIDATION", "member name must be a string, not number"],
      [() => c.load({ records: [] }), "VALIDATION", "load takes NDJSON as a string or a ReadableStream of bytes, not object"],
      [async () => { for await (const _ of c.listAll({}, "log")) void _; }, "VALIDATION", "listAll's onIncomplete must be a function, not string"],
    ];
    for (const [call, code, message] of cases) expect(await refusal(call)).toEqual({ status: 0, code, message });
  });
});

describe("MakhzenClient options against a node", () => {
  const node = createNode({ port: 0, logger: silentLogger });
  afterAll(() => node.close());

  test("options the node takes still work; an option given as undefined is absent", async () => {
    const { url: nodeUrl } = await node.listen();
    const c = new MakhzenClient({ url: nodeUrl.replace("http://", ""), bucket: "b", timeoutMs: 5000 });
    const first = await c.put("k", "v", { ttl: 60, ifAbsent: true, ifMatch: undefined });
    expect(node.bucket("b").get("k")?.expiresAt).toEqual(expect.any(Number));
    expect((await c.put("k", "w", { ifMatch: first.version })).value).toBe("w");
    expect((await c.list({ prefix: "k", limit: 1, cursor: undefined, bucket: undefined })).items.map((i) => i.key)).toEqual(["k"]);
    expect((await c.placement("k", { bucket: "b" })).owners.length).toBe(1);
    // A bucket name is still the node's to judge: refused by it, 400.
    const e = (await c.get("k", { bucket: "no such!" }).catch((err) => err)) as MakhzenClientError;
    expect([e.status, e.code]).toEqual([400, "INVALID_BUCKET"]);
  });
});
