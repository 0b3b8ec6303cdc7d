import type { TSchema } from "@sinclair/typebox";
import { HTTP_STATUS, type ErrorCode } from "../errors.ts";
import { BUCKET_NAME_RULE } from "../core/record.ts";
import { DEFAULT_CONSISTENCY_TIMEOUT_MS, LEVEL_PATTERN, MAX_CONSISTENCY_TIMEOUT_MS } from "../cluster/consistency.ts";
import { WireRecord } from "../cluster/protocol/messages.ts";
import * as M from "./models.ts";
import { OCTET_CONTENT } from "./binary.ts";
import { clusterOperations, clusterParameters } from "./openapi-cluster.ts";
import { jsonContent, ref, type Json, type Operation } from "./openapi-parts.ts";

/**
 * The OpenAPI 3.1 document of the public API, served at GET /openapi.
 *
 * Why a table here rather than a document generated from the routes (as
 * @elysiajs/openapi did): the item routes are wildcards (`/items/*`, since a key
 * may hold `/`), which no OpenAPI tool can route (Prism answered
 * NO_PATH_MATCHED_ERROR for `PUT /items/k`); their `w`, `r` and `timeout` query
 * parameters and conditional headers are read by hand on the hot path, not by a
 * route schema a generator could see; and which errors an operation answers is a
 * matter of domain codes. So each operation is written once below, from the same
 * TypeBox models the routes validate with (models.ts), and each error status from
 * the one mapping errors are answered with (HTTP_STATUS). Nothing is hand-copied:
 * test/http/openapi.test.ts holds the table to the routes the app registers and to
 * the statuses it answers, and validates the document with an independent validator.
 *
 * Built once per app (it depends on whether the node asks for a token), not per request.
 */

export interface DocumentOptions {
  /** makhzen's version, for `info.version`. */
  version: string;
  /** Client routes need a bearer token (--token): 401 everywhere but the probes. */
  token: boolean;
  /** A read-only token exists (--read-token): writes may answer 403. */
  readToken: boolean;
  /** The app serves GET /cluster (it has a cluster). */
  cluster: boolean;
  /** The app serves metrics at GET /metrics (otherwise that route answers 404). */
  metrics: boolean;
}

const etag = { ETag: ref("headers", "ETag") };

/**
 * A TypeBox model as the JSON Schema it is, for the document: Elysia's `error`
 * messages (not JSON Schema) are dropped, and a `t.Numeric` (a query value: a
 * numeric string or a number) is shown as the number it stands for.
 */
export function jsonSchema(model: TSchema): Json {
  return JSON.parse(JSON.stringify(model), (key, value: unknown) => {
    if (key === "error" && typeof value === "string") return undefined;
    if (value !== null && typeof value === "object" && Array.isArray((value as Json).anyOf)) {
      const branches = (value as { anyOf: Json[] }).anyOf;
      // Elysia's t.Numeric and t.Integer accept a numeric string too (a query's): what the document
      // describes is a JSON body's, a number (tools generated `string | number` from the pair).
      const numeric = branches.find((b) => b.type === "string" && (b.format === "numeric" || b.format === "integer"));
      const number = branches.find((b) => b.type === "number" || b.type === "integer");
      if (numeric && number && branches.length === 2) return number;
    }
    return value;
  }) as Json;
}

const propertiesOf = (model: TSchema): Record<string, Json> => (jsonSchema(model).properties ?? {}) as Record<string, Json>;

/** The parameters operations name, each once. */
function parameters(): Record<string, Json> {
  const list = propertiesOf(M.ListQuery);
  // Empty (`?w=`) is the default, as absent is (consistency.ts): allowEmptyValue says so, where the pattern alone refused it.
  // A count may be zero-padded in a query (`w=02`), as any integer there (items.ts unpadded).
  const level = (what: string) => ({
    schema: { type: "string", pattern: LEVEL_PATTERN.source.replace("[1-9]", "0*[1-9]") },
    allowEmptyValue: true,
    description: `${what}: \`1\` (the default, also when empty: this node alone), \`quorum\`, \`all\`, or a count. This node counts as one.`,
  });
  return {
    key: {
      name: "key",
      in: "path",
      required: true,
      schema: { type: "string", minLength: 1 },
      description:
        "The key, percent-encoded as one path segment: a `/` inside a key is written `%2F` (`a%2Fb` is the key `a/b`). Any UTF-8 of 1 to --max-key-bytes (1024 by default) bytes, but U+FFFD, and neither `.` nor `..` (a URL path cannot name them: they are dot segments).",
    },
    bucket: {
      name: "bucket",
      in: "path",
      required: true,
      schema: { type: "string", pattern: `^${BUCKET_NAME_RULE}$` },
      description: "The bucket; `/items` is the bucket `default`. Not `.` or `..`, however encoded: a URL cannot name them (they are dot segments), and such a request is refused (400 `INVALID_BUCKET`).",
    },
    w: { name: "w", in: "query", required: false, ...level("Replicas that must hold the write before it is answered") },
    r: { name: "r", in: "query", required: false, ...level("Replicas to ask, newest answer wins, stale ones repaired (read repair)") },
    timeout: {
      name: "timeout",
      in: "query",
      required: false,
      schema: { type: "integer", minimum: 1, maximum: MAX_CONSISTENCY_TIMEOUT_MS },
      allowEmptyValue: true,
      description: `How long \`w\` or \`r\` waits, in ms (default ${DEFAULT_CONSISTENCY_TIMEOUT_MS}, also when empty). On timeout: 504 REPLICATION_TIMEOUT, and a write stands.`,
    },
    ttl: {
      name: "ttl",
      in: "query",
      required: false,
      schema: propertiesOf(M.ItemBody).ttl,
      description: "Seconds until the item expires, for a `text/plain` body. A JSON body carries `ttl` itself; `?ttl=` beside one is refused (400).",
    },
    ifMatch: {
      name: "If-Match",
      in: "header",
      required: false,
      schema: { type: "string" },
      description: 'Write only if the key currently has this version (`"<version>"`, as the ETag), or exists at all (`*`); 412 otherwise. Checked against this replica.',
    },
    ifNoneMatch: {
      name: "If-None-Match",
      in: "header",
      required: false,
      schema: { type: "string", enum: ["*"] },
      description: "`*`: write only if the key holds no live value; 412 otherwise. Checked against this replica.",
    },
    prefix: { name: "prefix", in: "query", required: false, schema: list.prefix, description: "Only keys that start with this" },
    limit: { name: "limit", in: "query", required: false, schema: list.limit, description: "Items per page (default 100)" },
    cursor: { name: "cursor", in: "query", required: false, schema: list.cursor, description: "The `cursor` of the previous page" },
    dumpBucket: { name: "bucket", in: "query", required: false, schema: { type: "string", pattern: `^${BUCKET_NAME_RULE}$` }, description: "Only this bucket" },
    dumpScope: { name: "scope", in: "query", required: false, schema: { enum: ["node", "cluster"], default: "node" }, description: "`node`: this node's own records; `cluster`: every key of the cluster once, its newest record (503 when some partition has no reachable owner or holder)" },
  };
}

/** The item operations of one kind of path: `/items` (bucket `default`) or `/buckets/{bucket}/items`. */
function itemOperations(inBucket: boolean): Operation[] {
  const base = inBucket ? "/buckets/{bucket}/items" : "/items";
  const named = (verb: string, noun: string) => `${verb}${inBucket ? "Bucket" : ""}${noun}`;
  const where = inBucket ? "of a bucket" : "of the default bucket";
  const pathParams = inBucket ? ["bucket", "key"] : ["key"];
  const bucketErrors: ErrorCode[] = inBucket ? ["INVALID_BUCKET"] : [];
  const writeErrors: ErrorCode[] = ["PRECONDITION_FAILED", "VALIDATION", "UNAVAILABLE", "REPLICATION_TIMEOUT", "OUTCOME_UNKNOWN", "CLOCK_OFFSET", "NAME_TAKEN", "LEAVING", "PERSISTENCE_FAILED"];
  return [
    {
      method: "get",
      path: base,
      operationId: named("list", "Items"),
      summary: `List the items ${where}, in key order, a page at a time`,
      description: "Pass `cursor` back until it is null. A page that steps over many deleted keys may hold fewer items, even none.",
      tag: "items",
      parameters: [...(inBucket ? ["bucket"] : []), "prefix", "limit", "cursor"],
      responses: { 200: { description: "A page of items", content: jsonContent("ItemList") } },
      errors: ["BAD_REQUEST", "VALIDATION", ...bucketErrors],
    },
    {
      method: "get",
      path: `${base}/{key}`,
      operationId: named("get", "Item"),
      summary: `Get an item ${where}`,
      description: "JSON by default (a value that is not UTF-8: base64, with `encoding`); the raw value with `Accept: text/plain` (406 for a binary value); the raw bytes of any value with `Accept: application/octet-stream`. An expired item is absent.",
      tag: "items",
      parameters: [...pathParams, "r", "timeout"],
      responses: {
        200: {
          description: "The item, and its version as the ETag",
          headers: etag,
          content: { ...jsonContent("Item"), "text/plain": { schema: { type: "string", description: "The raw value" } }, ...OCTET_CONTENT },
        },
      },
      errors: ["BAD_REQUEST", "KEY_TOO_LARGE", "NOT_FOUND", "NOT_ACCEPTABLE", "VALIDATION", "UNAVAILABLE", "REPLICATION_TIMEOUT", ...bucketErrors],
    },
    {
      method: "put",
      path: `${base}/{key}`,
      operationId: named("put", "Item"),
      summary: `Create or replace an item ${where}`,
      description:
        "A JSON body `{value, ttl?, encoding?}`, or with `Content-Type: text/plain` the raw value, or with `Content-Type: application/octet-stream` the raw bytes (TTL as `?ttl=` for both), all under the same size limits. Bytes that are UTF-8 are stored as text.",
      tag: "items",
      parameters: [...pathParams, "w", "timeout", "ttl", "ifMatch", "ifNoneMatch"],
      requestBody: {
        required: true,
        content: {
          ...jsonContent("ItemBody"),
          "text/plain": { schema: { type: "string", description: "The raw value, UTF-8" } },
          ...OCTET_CONTENT,
        },
      },
      responses: { 200: { description: "Written; the item and its version as the ETag", headers: etag, content: jsonContent("Item") } },
      errors: [
        ...["BAD_REQUEST", "INVALID_UNICODE", "KEY_TOO_LARGE", "VALUE_TOO_LARGE", "BODY_TOO_LARGE", "REQUEST_TIMEOUT"] as ErrorCode[],
        ...["UNSUPPORTED_MEDIA_TYPE", "OUT_OF_MEMORY", ...writeErrors, ...bucketErrors] as ErrorCode[],
      ],
    },
    {
      method: "delete",
      path: `${base}/{key}`,
      operationId: named("delete", "Item"),
      summary: `Delete an item ${where}`,
      tag: "items",
      parameters: [...pathParams, "w", "timeout", "ifMatch"],
      responses: { 204: { description: "Deleted; the version of the delete as the ETag", headers: etag } },
      errors: ["BAD_REQUEST", "KEY_TOO_LARGE", "NOT_FOUND", ...writeErrors, ...bucketErrors], // VALIDATION (writeErrors): a bad w or timeout, or a query parameter DELETE does not take
    },
  ];
}

function operations(opts: DocumentOptions): Operation[] {
  return [
    {
      method: "get",
      path: "/",
      operationId: "getIndex",
      summary: "Where to go from here: links to this document, the probes, the cluster and the items routes",
      tag: "meta",
      responses: { 200: { description: "The index", content: jsonContent("Index") } },
    },
    ...itemOperations(false),
    ...itemOperations(true),
    {
      method: "get",
      path: "/buckets",
      operationId: "listBuckets",
      summary: "List buckets, with their live keys and bytes, in this node's own copy",
      description:
        "Counts this node's own copy, unlike the item listings. With no more members than the replication factor every node holds every key, so the counts are the cluster's once replication has caught up; in a partitioned cluster a node holds only its partitions' keys, so nodes answer different counts and a bucket with no key on this node is missing. For the cluster's counts, page through `GET /buckets/{bucket}/items`, or count the records of `GET /dump?scope=cluster`.",
      tag: "buckets",
      responses: { 200: { description: "Every bucket that holds a live key", content: jsonContent("BucketList") } },
      errors: ["VALIDATION"], // a query parameter: it takes none
    },
    {
      method: "get",
      path: "/healthz",
      operationId: "getHealth",
      summary: "Liveness: the process answers",
      tag: "ops",
      open: true,
      responses: { 200: { description: "Alive", content: jsonContent("Health") } },
    },
    {
      method: "get",
      path: "/readyz",
      operationId: "getReadiness",
      summary: "Readiness: the first sync is done, the clock is in bounds, the node is not leaving",
      tag: "ops",
      open: true,
      responses: { 200: { description: "Ready", content: jsonContent("Health") } },
      otherErrors: { 503: errorResponse("Not ready: `UNAVAILABLE`, `CLOCK_OFFSET` or `NAME_TAKEN` (always 503, which is all a load balancer reads)") },
    },
    {
      method: "get",
      path: "/metrics",
      operationId: "getMetrics",
      summary: "Prometheus metrics, every name prefixed makhzen_ (see docs/operations.md)",
      tag: "ops",
      responses: { 200: { description: "The Prometheus text format", content: { "text/plain": { schema: { type: "string" } } } } },
      errors: opts.metrics ? [] : ["NOT_FOUND"],
    },
    ...(opts.cluster ? clusterOperations() : []),
    {
      method: "get",
      path: "/dump",
      operationId: "dumpRecords",
      summary: "Every record, versions, deletes and expiries included, as NDJSON (streamed)",
      tag: "backup",
      parameters: ["dumpBucket", "dumpScope"],
      responses: {
        200: { description: "One record per line", content: { "application/x-ndjson": { schema: { type: "string", description: "Lines, each a Record (components/schemas/Record)" } } } },
      },
      errors: ["INVALID_BUCKET", "VALIDATION", "UNAVAILABLE"], // VALIDATION: another query parameter, or another scope
    },
    {
      method: "post",
      path: "/load",
      operationId: "loadRecords",
      summary: "Merge NDJSON records as /dump writes them; newer versions win, and loaded records replicate",
      description: "The first bad line stops the load; its error names the line, and the records before it stand.",
      tag: "backup",
      requestBody: {
        required: false,
        content: { "application/x-ndjson": { schema: { type: "string", description: "Lines, each a Record (components/schemas/Record)" } } },
      },
      responses: { 200: { description: "What the load did", content: jsonContent("LoadCounts") } },
      errors: [
        ...["BAD_REQUEST", "INVALID_BUCKET", "INVALID_KEY", "INVALID_UNICODE", "KEY_TOO_LARGE", "VALUE_TOO_LARGE"] as ErrorCode[],
        ...["BODY_TOO_LARGE", "REQUEST_TIMEOUT", "OUT_OF_MEMORY", "PERSISTENCE_FAILED", "CLOCK_OFFSET", "NAME_TAKEN", "VALIDATION"] as ErrorCode[], // VALIDATION: a query parameter
        "UNSUPPORTED_MEDIA_TYPE", // a Content-Encoding
      ],
    },
    {
      method: "get",
      path: "/openapi",
      operationId: "getOpenApi",
      summary: "This document",
      tag: "meta",
      responses: { 200: { description: "The OpenAPI document", content: { "application/json": { schema: { type: "object" } } } } },
    },
  ];
}

const errorResponse = (description: string, headers?: Json): Json => ({ description, ...(headers ? { headers } : {}), content: jsonContent("Error") });

/** The error responses of one operation, one per status, naming the codes it may carry. */
function errorResponses(op: Operation, opts: DocumentOptions): Record<string, Json> {
  const codes: ErrorCode[] = [...(op.errors ?? [])];
  if (opts.token && !op.open) codes.push("UNAUTHORIZED");
  if (opts.readToken && !op.open && op.method !== "get") codes.push("FORBIDDEN");
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) {
    const status = HTTP_STATUS[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<string, Json> = {};
  for (const [status, list] of [...byStatus].sort(([a], [b]) => a - b)) {
    const auth = list.includes("UNAUTHORIZED") ? { "WWW-Authenticate": { schema: { type: "string" } } } : undefined;
    out[status] = errorResponse(list.map((c) => `\`${c}\``).join(", "), auth);
  }
  return { ...out, ...op.otherErrors, 500: errorResponse("`INTERNAL`: a bug; see the node's log") };
}

const DESCRIPTION = [
  "The items API of a makhzen node.",
  "",
  "- **Keys** go in the path as one percent-encoded segment: a `/` inside a key is written `%2F` (`/items/a%2Fb` is the key `a/b`). `/items` is the bucket `default`.",
  "- **Values** are sent as `{\"value\": \"...\", \"ttl\"?: seconds}`, or raw with `Content-Type: text/plain` (TTL as `?ttl=`); read back raw with `Accept: text/plain`. Bytes that are not UTF-8 travel as `application/octet-stream`, or in JSON as base64 with `\"encoding\": \"base64\"`.",
  "- **Errors** all carry the envelope `{\"error\": {\"code\", \"message\"}}` (components/schemas/Error); `code` is stable, `message` is for people.",
  "- **Methods:** a known path asked with a method it does not take answers 405 `METHOD_NOT_ALLOWED` with an `Allow` header; `HEAD` works wherever `GET` does.",
  "- **Consistency:** `w` and `r` count replicas, this node included; conditional writes (`If-Match`, `If-None-Match`) are checked against this replica only.",
].join("\n");

/**
 * The HEAD of a GET operation: a node answers HEAD wherever it answers GET (Bun
 * drops the body), and a tool routes only the methods a document lists (Prism's
 * proxy answered HEAD /items/k 405 NO_METHOD_MATCHED). The same statuses and
 * headers, no content; the operationId says head for get. (Prism's proxy itself
 * then fails a HEAD with 500: it parses the empty body of an answer whose
 * Content-Type is JSON. The in-process test holds HEAD's statuses to the document.)
 */
function headOf(get: Json): Json {
  const responses = Object.fromEntries(
    Object.entries(get.responses as Record<string, Json>).map(([status, { content: _content, ...rest }]) => [status, rest]),
  );
  const id = String(get.operationId);
  return { ...get, operationId: id.startsWith("get") ? `head${id.slice(3)}` : `head${id[0]!.toUpperCase()}${id.slice(1)}`, summary: `${get.summary} (headers only)`, responses };
}

/** The document, as a plain object (JSON.stringify it once). */
export function openApiDocument(opts: DocumentOptions): Json {
  const paths: Record<string, Record<string, Json>> = {};
  for (const op of operations(opts)) {
    const operation: Json = {
      operationId: op.operationId,
      summary: op.summary,
      ...(op.description ? { description: op.description } : {}),
      tags: [op.tag],
      ...(op.parameters ? { parameters: op.parameters.map((p) => ref("parameters", p)) } : {}),
      ...(op.requestBody ? { requestBody: op.requestBody } : {}),
      responses: { ...op.responses, ...errorResponses(op, opts) },
      ...(opts.token && op.open ? { security: [] } : {}),
    };
    (paths[op.path] ??= {})[op.method] = operation;
    if (op.method === "get") paths[op.path]!.head = headOf(operation);
  }
  return {
    openapi: "3.1.0",
    info: { title: "makhzen", version: opts.version, description: DESCRIPTION, license: { name: "MIT", identifier: "MIT" } },
    tags: [
      { name: "items", description: "Items of the default bucket and of named buckets" },
      { name: "buckets", description: "Buckets" },
      { name: "ops", description: "Probes and metrics" },
      ...(opts.cluster ? [{ name: "cluster", description: "Membership and placement as this node sees them" }] : []),
      { name: "backup", description: "Dump and load, as NDJSON" },
      { name: "meta", description: "The index and this document" },
    ],
    paths,
    components: {
      schemas: {
        Item: jsonSchema(M.Item),
        ItemBody: jsonSchema(M.ItemBody),
        ItemList: jsonSchema(M.ItemList),
        BucketList: jsonSchema(M.BucketList),
        Error: { ...jsonSchema(M.ErrorEnvelope), description: "Every error answer: a stable `code` (e.g. NOT_FOUND) and a `message` for people" },
        Health: jsonSchema(M.Health),
        ClusterStatus: jsonSchema(M.ClusterStatus),
        ...(opts.cluster ? { Placement: jsonSchema(M.Placement), Forgotten: jsonSchema(M.Forgotten) } : {}),
        LoadCounts: jsonSchema(M.LoadCounts),
        Index: jsonSchema(M.Index),
        Record: { ...jsonSchema(WireRecord), description: "One line of /dump and /load: a value, or a delete (value null); `bytes`: the value is base64 of bytes that are not UTF-8" },
      },
      parameters: { ...parameters(), ...(opts.cluster ? clusterParameters() : {}) },
      headers: { ETag: { description: "The item's version, quoted; send it back in If-Match", schema: { type: "string" } } },
      ...(opts.token ? { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } } : {}),
    },
    ...(opts.token ? { security: [{ bearer: [] }] } : {}),
  };
}
