import { describe, expect, test } from "bun:test";
import { Validator } from "@seriousme/openapi-schema-validator";
import { createNode, type MakhzenNode } from "../../src/node.ts";
import { resolveConfig, type NodeOptions } from "../../src/config.ts";
import { createApp } from "../../src/http/app.ts";
import { openApiDocument, type DocumentOptions } from "../../src/http/openapi.ts";
import type { Cluster } from "../../src/cluster/cluster.ts";
import type { ItemsService } from "../../src/service.ts";
import { call, rng } from "../support/http.ts";
import { closeAfterEach } from "../support/cleanup.ts";

const track = closeAfterEach();
const start = (options: NodeOptions = {}): MakhzenNode => track(createNode({ name: "openapi", maxKeyBytes: 64, maxValueBytes: 256, ...options }));

type Doc = {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown>; parameters: Record<string, { name: string; in: string; description?: string }> };
  security?: unknown;
};
type Operation = {
  operationId: string;
  parameters?: { $ref: string }[];
  requestBody?: { content: Record<string, { schema: unknown }> };
  responses: Record<string, { content?: Record<string, { schema: unknown }>; headers?: Record<string, unknown> }>;
  security?: unknown[];
};
const VARIANTS: DocumentOptions[] = [
  { version: "1.2.3", token: false, readToken: false, cluster: true, metrics: true },
  { version: "1.2.3", token: true, readToken: true, cluster: true, metrics: true },
  { version: "1.2.3", token: true, readToken: false, cluster: false, metrics: false },
];
const documentOf = (opts: DocumentOptions) => openApiDocument(opts) as unknown as Doc;
const operationsOf = (doc: Doc) =>
  Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ path, method, op })));
const paramNames = (doc: Doc, op: Operation) => (op.parameters ?? []).map((p) => doc.components.parameters[p.$ref.split("/").pop()!]!.name);

describe("the document is valid OpenAPI", () => {
  test("an independent validator (@seriousme/openapi-schema-validator) accepts every variant", async () => {
    for (const opts of VARIANTS) {
      const result = await new Validator().validate(structuredClone(openApiDocument(opts)));
      expect({ opts, ...result }).toEqual({ opts, valid: true });
    }
  });

  test("and that validator does refuse a broken document (so the test above can fail)", async () => {
    const breakages: ((doc: Doc) => void)[] = [
      (doc) => (doc.components.parameters.key!.in = "body"), // OpenAPI 2's body parameter
      (doc) => doc.paths["/items/{key}"]!.get!.parameters!.push({ $ref: "#/components/parameters/nope" }), // a dangling $ref
      (doc) => (doc.paths["/items/{key}"]!.get!.responses["200"] = { content: {} }), // a response without a description
    ];
    for (const breakIt of breakages) {
      const doc = documentOf(VARIANTS[0]!);
      breakIt(doc);
      expect((await new Validator().validate(doc)).valid).toBe(false);
    }
  });

  test("every $ref resolves", () => {
    for (const opts of VARIANTS) {
      const doc = openApiDocument(opts);
      const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
      expect(refs.length).toBeGreaterThan(30);
      for (const ref of refs) {
        const path = ref.slice(8, -1).replace(/^#\//, "").split("/");
        const target = path.reduce<unknown>((at, seg) => (at as Record<string, unknown> | undefined)?.[seg], doc);
        expect({ ref, found: target !== undefined }).toEqual({ ref, found: true });
      }
    }
  });

  test("a number in a body is a number: no string-or-number pair of Elysia's query types (tools made `string | number` of it)", () => {
    for (const opts of VARIANTS) {
      const text = JSON.stringify(openApiDocument(opts));
      expect(text).not.toContain('"format":"integer"');
      expect(text).not.toContain('"format":"numeric"');
    }
    const cluster = documentOf(VARIANTS[0]!).components.schemas.ClusterStatus as { properties: Record<string, unknown> };
    expect(cluster.properties.replicas).toMatchObject({ type: "integer" });
  });

  test("GET /openapi serves it", async () => {
    const served = (await call(start(), "GET", "/openapi")).json;
    expect(served.openapi).toBe("3.1.0");
    expect(served.paths["/items/{key}"].put.operationId).toBe("putItem");
  });
});

describe("what the document says", () => {
  const doc = documentOf(VARIANTS[0]!);

  test("the item paths have path parameters, and the key's says a `/` is written %2F", () => {
    for (const path of ["/items/{key}", "/buckets/{bucket}/items/{key}"]) {
      expect(Object.keys(doc.paths[path]!).sort()).toEqual(["delete", "get", "head", "put"]);
      for (const op of Object.values(doc.paths[path]!)) {
        const names = paramNames(doc, op);
        expect(names).toContain("key");
        if (path.startsWith("/buckets")) expect(names).toContain("bucket");
      }
    }
    expect(doc.components.parameters.key).toMatchObject({ in: "path", required: true });
    expect(doc.components.parameters.key!.description).toContain("%2F");
    expect(Object.keys(doc.paths).some((p) => p.includes("*"))).toBe(false);
  });

  test("GET /buckets says it counts this node's own copy, and where the cluster's counts are", () => {
    // A partitioned cluster's nodes answer different counts (each holds its partitions' keys): the document must not let a tool take them for the cluster's.
    const op = doc.paths["/buckets"]!.get! as unknown as { summary: string; description?: string };
    expect(op.summary).toContain("this node's own copy");
    expect(op.description).toContain("partitioned cluster");
    expect(op.description).toContain("GET /dump?scope=cluster");
  });

  test("item operations document w/r and timeout, If-Match and If-None-Match, and their bodies", () => {
    for (const base of ["/items/{key}", "/buckets/{bucket}/items/{key}"]) {
      const ops = doc.paths[base]!;
      expect(paramNames(doc, ops.get!)).toEqual(expect.arrayContaining(["r", "timeout"]));
      expect(paramNames(doc, ops.put!)).toEqual(expect.arrayContaining(["w", "timeout", "If-Match", "If-None-Match", "ttl"]));
      expect(paramNames(doc, ops.delete!)).toEqual(expect.arrayContaining(["w", "timeout", "If-Match"]));
      expect(ops.put!.requestBody!.content["application/json"]!.schema).toEqual({ $ref: "#/components/schemas/ItemBody" });
      expect(ops.put!.requestBody!.content["text/plain"]).toBeDefined();
      expect(ops.get!.responses["200"]!.content!["text/plain"]).toBeDefined();
      expect(ops.get!.responses["200"]!.headers!.ETag).toBeDefined();
    }
    expect(doc.components.schemas.ItemBody).toMatchObject({ required: ["value"], additionalProperties: false });
  });

  test("an empty w, r or timeout is the default, and the document allows it (its pattern alone refused ?w=)", async () => {
    for (const name of ["w", "r", "timeout"]) expect(doc.components.parameters[name]).toMatchObject({ allowEmptyValue: true });
    const node = start();
    expect((await call(node, "PUT", "/items/e?w=&timeout=", { body: '{"value":"v"}' })).status).toBe(200);
    expect((await call(node, "GET", "/items/e?r=&timeout=")).status).toBe(200);
    expect((await call(node, "DELETE", "/items/e?w=")).status).toBe(204);
  });

  test("every error response carries the named Error envelope; every operation documents 500", () => {
    expect(doc.components.schemas.Error).toMatchObject({
      required: ["error"],
      properties: { error: { required: ["code", "message"] } },
    });
    for (const { path, method, op } of operationsOf(doc)) {
      expect({ path, method, has500: "500" in op.responses }).toEqual({ path, method, has500: true });
      for (const [status, res] of Object.entries(op.responses)) {
        // HEAD is answered as GET without a body: the same statuses, no content.
        if (method === "head") expect({ path, status, content: res.content }).toEqual({ path, status, content: undefined });
        if (Number(status) < 400 || method === "head") continue;
        expect({ path, method, status, schema: res.content?.["application/json"]?.schema }).toEqual({
          path,
          method,
          status,
          schema: { $ref: "#/components/schemas/Error" },
        });
      }
    }
  });

  test("operationIds are unique identifiers a code generator can use", () => {
    const ids = operationsOf(doc).map(({ op }) => op.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[a-z][A-Za-z0-9]*$/);
    expect(ids).toEqual(expect.arrayContaining(["getItem", "putItem", "deleteItem", "listItems", "getBucketItem", "listBuckets"]));
  });

  test("under a token: a security scheme, 401 everywhere but the probes, 403 on writes with a read token", () => {
    const secured = documentOf(VARIANTS[1]!);
    expect(secured.security).toEqual([{ bearer: [] }]);
    for (const { path, method, op } of operationsOf(secured)) {
      const probe = path === "/healthz" || path === "/readyz";
      expect({ path, method, open: op.security?.length === 0, has401: "401" in op.responses }).toEqual({ path, method, open: probe, has401: !probe });
      expect({ path, method, has403: "403" in op.responses }).toEqual({ path, method, has403: method !== "get" && method !== "head" });
    }
    expect("401" in doc.paths["/items/{key}"]!.get!.responses).toBe(false);
  });
});

describe("the document matches the app", () => {
  /** The routes an app registers, as OpenAPI operations: `/items/*` is `/items/{key}`, `:bucket` is `{bucket}`. */
  function appOperations(opts: DocumentOptions): string[] {
    const config = resolveConfig({ port: 0, ...(opts.token ? { token: "write-token-1" } : {}), ...(opts.readToken ? { readToken: "read-token-1" } : {}) });
    // Only the route table is read: no handler runs, so the service and cluster are never called.
    const app = createApp({
      config,
      service: {} as ItemsService,
      isReady: () => true,
      version: opts.version,
      cluster: opts.cluster ? ({} as Cluster) : undefined,
      metrics: opts.metrics ? async () => "" : undefined,
    });
    return app.routes
      .filter((r) => !r.path.startsWith("/internal/")) // the peer protocol: not for clients
      .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, "{$1}").replace(/\/\*$/, "/{key}")}`)
      .sort();
  }

  test("every route the app registers is documented, and nothing else", () => {
    for (const opts of VARIANTS) {
      const ops = operationsOf(documentOf(opts));
      // HEAD is no route of its own: the server answers it wherever GET is, and the document lists it beside every GET.
      const documented = ops.filter(({ method }) => method !== "head").map(({ path, method }) => `${method} ${path}`).sort();
      expect(documented).toEqual(appOperations(opts));
      const heads = ops.filter(({ method }) => method === "head").map(({ path }) => path);
      expect(heads.sort()).toEqual(ops.filter(({ method }) => method === "get").map(({ path }) => path).sort());
    }
  });

  test("every status the app answers, to a few thousand varied requests, is one the document lists for that operation", async () => {
    const token = "write-token-1";
    const node = start({ token, readToken: "read-token-1" });
    const doc = (await call(node, "GET", "/openapi", { headers: { authorization: `Bearer ${token}` } })).json as Doc;
    const matchers = operationsOf(doc).map(({ path, method, op }) => ({
      method,
      path,
      op,
      re: new RegExp(`^${path.replace(/\{key\}/, ".+").replace(/\{(bucket|name)\}/, "[^/]+")}$`),
    }));
    const next = rng(10);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
    const keys = ["k", "k2", "a%2Fb", "%C3%A9", "%ZZ", "%EF%BF%BD", "x".repeat(70)];
    const paths = [
      () => `/items/${pick(keys)}`,
      () => `/buckets/${pick(["b1", "b-2", "bad!", "x".repeat(65)])}/items/${pick(keys)}`,
      () => `/buckets/${pick(["b1", "bad!"])}/items`,
      () => pick(["/", "/items", "/buckets", "/healthz", "/readyz", "/metrics", "/cluster", "/openapi", "/dump", "/dump?bucket=b1", "/dump?bucket=bad!"]),
      () => "/load",
    ];
    const queries = ["", "", "?w=1", "?w=quorum", "?w=2&timeout=5", "?w=zzz", "?r=all", "?r=3&timeout=5", "?timeout=0&r=2", "?ttl=5", "?ttl=x", "?limit=2", "?limit=0", "?cursor=%%", "?cursor=YQ"];
    const bodies = [undefined, "", '{"value":"v"}', '{"value":"v","ttl":2}', '{"value":1}', "{", '{"value":"v","x":1}', "raw", "y".repeat(300)];
    const loads = ['{"bucket":"b1","key":"l","value":"v","version":"001700000000000-000000-x"}', "not json", '{"bucket":"bad!","key":"l","value":"v","version":"1"}'];
    const headerSets: Record<string, string>[] = [{}, { "content-type": "text/plain" }, { "content-type": "application/json" }, { "if-none-match": "*" }, { "if-match": '"nope"' }, { "if-match": "*" }, { accept: "text/plain" }, { "content-type": "text/plain; charset=latin1" }];
    const auths = [undefined, token, token, token, "read-token-1", "wrong"];
    const seen = new Set<string>();
    const exchange = async (path: string, method: string, auth: string | undefined, headers: Record<string, string>, body: string | undefined) => {
      const pathOnly = path.split("?")[0]!;
      const candidates = matchers.filter((m) => m.re.test(pathOnly));
      const a = await call(node, method, path, { body, headers: { ...headers, ...(auth ? { authorization: `Bearer ${auth}` } : {}) } });
      const op = candidates.find((m) => m.method === method.toLowerCase());
      const what = `${method} ${path} ${JSON.stringify(headers)} ${body?.slice(0, 40)} -> ${a.status} ${a.text.slice(0, 120)}`;
      if (op === undefined) {
        // Undocumented on purpose: a path no operation matches (404), or a method it does not
        // take (405); the token is checked before routing, so those may be 401 or 403 first.
        if (![401, 403, 404, 405].includes(a.status)) throw new Error(`no operation for ${what}`);
        return;
      }
      if (!(String(a.status) in op.op.responses)) throw new Error(`${op.op.operationId} does not document ${a.status}: ${what}`);
      seen.add(`${op.op.operationId} ${a.status}`);
    };
    for (let i = 0; i < 3000; i++) {
      const base = pick(paths)();
      const path = base + (next() < 0.5 && !base.includes("?") ? pick(queries) : "");
      const pathOnly = path.split("?")[0]!;
      // HEAD apart (below), so the draws stay as they were.
      const candidates = matchers.filter((m) => m.re.test(pathOnly) && m.method !== "head");
      const method = next() < 0.9 && candidates.length > 0 ? pick(candidates).method.toUpperCase() : pick(["GET", "PUT", "DELETE", "POST"]);
      const auth = pick(auths);
      const headers = pick(headerSets);
      const body = method === "GET" || method === "HEAD" ? undefined : pathOnly === "/load" ? pick(loads) : pick(bodies);
      await exchange(path, method, auth, headers, body);
    }
    // The cluster routes, every method on each (kept apart: the draws above stay as they were).
    const clusterPaths = ["/cluster/placement", "/cluster/placement?key=k", "/cluster/placement?key=k&bucket=bad!", `/cluster/placement?key=${"x".repeat(70)}`];
    for (const path of [...clusterPaths, "/cluster/members/nobody", "/cluster/members/openapi"]) {
      for (const method of ["GET", "DELETE", "PUT"]) for (const auth of [undefined, token, "read-token-1"]) await exchange(path, method, auth, {}, undefined);
    }
    // HEAD wherever GET is: the statuses the document lists for it.
    for (const path of ["/items/k", "/buckets/b1/items/k"]) await exchange(path, "PUT", token, {}, '{"value":"v"}');
    for (const path of ["/", "/items/k", "/items/absent", "/items/%ZZ", "/buckets/b1/items/k", "/buckets/bad!/items", "/items?limit=0", "/buckets", "/healthz", "/readyz", "/metrics", "/cluster", "/openapi", "/dump", "/cluster/placement?key=k"]) {
      for (const auth of [undefined, token, "read-token-1"]) await exchange(path, "HEAD", auth, {}, undefined);
    }
    for (const s of ["headItem 200", "headItem 404", "headItem 400", "headItem 401", "headBucketItem 200", "headListItems 422", "headOpenApi 200"]) expect(seen).toContain(s);
    // The mix reached far: successes and refusals of several kinds on the item routes.
    for (const s of ["getPlacement 200", "getPlacement 400", "forgetMember 404", "forgetMember 409", "forgetMember 403", "putItem 200", "putItem 412", "putItem 413", "putItem 415", "putItem 422", "putItem 503", "getItem 404", "getItem 400", "putItem 401", "putItem 403", "putBucketItem 400", "loadRecords 400"]) {
      expect(seen).toContain(s);
    }
  }, 60_000);
});
