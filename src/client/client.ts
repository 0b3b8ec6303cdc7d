import { DEFAULT_BUCKET, type Item } from "../core/record.ts";
import type { BucketStats } from "../core/store.ts";
import type { ClusterStatus } from "../cluster/reports.ts";
import type { ForgetResult } from "../cluster/forget.ts";
import type { Refusals } from "../ops/security.ts";
import { Watchdog, watchedDownload, watchedUpload } from "./watchdog.ts";
import { MakhzenClientError } from "./error.ts";
import { clientSettings, type ClientOptions } from "./options.ts";
import { bucketSegment, checkCallback, checkLoadBody, checkOptions, checkValue, pathSegment, text } from "./arguments.ts";

export { MakhzenClientError, type ClientOptions };

export interface ClientWriteOptions {
  bucket?: string;
  ttl?: number;
  /** Only if the current version is this one (If-Match). */
  ifMatch?: string;
  /** Only if the key does not exist (If-None-Match: *). */
  ifAbsent?: boolean;
}

export interface ClientListOptions {
  bucket?: string;
  prefix?: string;
  limit?: number;
  cursor?: string;
}

export interface ClientListPage {
  items: Item[];
  cursor: string | null;
  /**
   * Set by a node of a partitioned cluster when some partitions had no reachable
   * owner or holder: the page lists what could be read, and misses their keys.
   */
  incomplete?: { partitions: number; members: string[] };
}

/**
 * A typed client for the items API. Used by the CLI and the tests, and exported
 * for applications.
 *
 * @example
 * const db = new MakhzenClient({ url: "http://127.0.0.1:3000" });
 * await db.put("greeting", "hello", { ttl: 60 });
 * (await db.get("greeting"))?.value; // "hello"
 */
export class MakhzenClient {
  readonly url: string;
  private readonly bucket: string;
  private readonly timeoutMs: number;
  private readonly authorization: string | undefined;
  private readonly tls: { ca: string } | undefined;

  /** Throws MakhzenClientError (status 0) for options it cannot use; see ClientOptions. */
  constructor(options: ClientOptions = {}) {
    const settings = clientSettings(options);
    this.url = settings.url;
    this.bucket = settings.bucket;
    this.timeoutMs = settings.timeoutMs;
    this.authorization = settings.authorization;
    this.tls = settings.tls;
  }

  /** The live item, or undefined when the key is absent. */
  async get(key: string, options: { bucket?: string } = {}): Promise<Item | undefined> {
    checkOptions("get", options);
    const res = await this.request("GET", this.itemPath(key, options.bucket));
    if (res.status === 404) {
      const body = await this.readError(res);
      if (body.code === "NOT_FOUND") return undefined;
      throw new MakhzenClientError(404, body.code, body.message);
    }
    return this.answer(res, "an item", isItem);
  }

  /**
   * Stores `value`: a string as text; bytes (a Uint8Array) as they are, sent as
   * base64 (the node keeps bytes that are UTF-8 as text, as the embedded `set` does).
   */
  async put(key: string, value: string | Uint8Array, options: ClientWriteOptions = {}): Promise<Item> {
    checkOptions("put", options);
    checkValue(value);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (options.ifMatch !== undefined) headers["if-match"] = `"${options.ifMatch}"`;
    if (options.ifAbsent) headers["if-none-match"] = "*";
    const fields = typeof value === "string" ? { value } : { value: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64"), encoding: "base64" };
    const body = JSON.stringify(options.ttl === undefined ? fields : { ...fields, ttl: options.ttl });
    const res = await this.request("PUT", this.itemPath(key, options.bucket), { headers, body });
    return this.answer(res, "an item", isItem);
  }

  /** True when a value was deleted, false when the key was already absent. */
  async delete(key: string, options: { bucket?: string; ifMatch?: string } = {}): Promise<boolean> {
    checkOptions("delete", options);
    const headers: Record<string, string> = {};
    if (options.ifMatch !== undefined) headers["if-match"] = `"${options.ifMatch}"`;
    const res = await this.request("DELETE", this.itemPath(key, options.bucket), { headers });
    if (res.status === 404) {
      const body = await this.readError(res);
      if (body.code === "NOT_FOUND") return false;
      throw new MakhzenClientError(404, body.code, body.message);
    }
    await this.expectOk(res);
    // A makhzen node answers a delete 204 with the tombstone's version as its ETag:
    // any other success came from something else, and "OK" would be a lie.
    if (res.status !== 204 || res.headers.get("etag") === null) {
      await res.body?.cancel();
      throw this.badAnswer(res, "a delete's answer");
    }
    return true;
  }

  async list(options: ClientListOptions = {}): Promise<ClientListPage> {
    checkOptions("list", options);
    const q = new URLSearchParams();
    if (options.prefix) q.set("prefix", options.prefix);
    if (options.limit !== undefined) q.set("limit", String(options.limit));
    if (options.cursor) q.set("cursor", options.cursor);
    const qs = q.size ? `?${q}` : "";
    const res = await this.request("GET", `${this.bucketPath(options.bucket)}/items${qs}`);
    return this.answer(res, "a page of items", isPage);
  }

  /**
   * Every live item matching the options, following cursors page by page.
   * `onIncomplete` hears of each page that missed partitions (see ClientListPage).
   */
  async *listAll(options: Omit<ClientListOptions, "cursor"> = {}, onIncomplete?: (incomplete: NonNullable<ClientListPage["incomplete"]>) => void): AsyncGenerator<Item> {
    checkOptions("listAll", options);
    checkCallback("listAll's onIncomplete", onIncomplete);
    let cursor: string | undefined;
    do {
      const page = await this.list({ ...options, cursor });
      if (page.incomplete) onIncomplete?.(page.incomplete);
      yield* page.items;
      cursor = page.cursor ?? undefined;
    } while (cursor);
  }

  /**
   * Records as an NDJSON byte stream, tombstones and versions included: with `scope`
   * "cluster", every key of the cluster once with its newest record; otherwise (the
   * default, "node") this node's own records. Only one bucket's with `bucket`. No
   * total timeout, since a large dump takes as long as it takes; but the answer must
   * start within `timeoutMs`, and the stream fails (UNREACHABLE) when the node then
   * sends nothing for `timeoutMs` (see watchdog.ts).
   */
  async dump(options: { bucket?: string; scope?: "node" | "cluster" } = {}): Promise<ReadableStream<Uint8Array>> {
    checkOptions("dump", options);
    const q = new URLSearchParams();
    // "" is refused as get and list refuse it (it dumped every bucket).
    if (options.bucket !== undefined) q.set("bucket", bucketSegment(options.bucket));
    if (options.scope === "cluster") q.set("scope", "cluster");
    const qs = q.size ? `?${q}` : "";
    const abort = new AbortController();
    let started = false;
    const dog = new Watchdog(this.timeoutMs, () => abort.abort(started ? this.stalled("dump", "sent no data") : this.noAnswer()));
    dog.arm();
    let res: Response;
    try {
      res = await this.expectOk(await this.request("GET", `/dump${qs}`, {}, abort.signal));
    } finally {
      dog.disarm();
    }
    // Anything else (an HTML page, a JSON index) would be written out as if it were a backup.
    if (!res.body || !(res.headers.get("content-type") ?? "").startsWith("application/x-ndjson")) {
      await res.body?.cancel();
      throw this.badAnswer(res, "NDJSON records");
    }
    started = true;
    return watchedDownload(res.body, dog, (e) =>
      // The node spoke HTTP already: a reset is a connection closed, not a hint to use https.
      e instanceof MakhzenClientError ? e : new MakhzenClientError(0, "UNREACHABLE", `${this.url} broke off the dump: ${(e as { code?: string }).code === "ECONNRESET" ? "the connection closed" : describeFetchError(e, this.timeoutMs, this.url)}`),
    );
  }

  /**
   * Streams NDJSON records (as `dump` writes them) into the node; newer versions win.
   * No total timeout: fails (UNREACHABLE) when the node takes no data for `timeoutMs`,
   * or has not answered `timeoutMs` after the last byte.
   */
  async load(ndjson: ReadableStream<Uint8Array> | string): Promise<{ loaded: number; skipped: number }> {
    checkLoadBody(ndjson);
    const abort = new AbortController();
    let sent = false;
    let headed: Response | undefined;
    const dog = new Watchdog(this.timeoutMs, () =>
      abort.abort(headed !== undefined ? this.unfinished(headed) : sent ? this.noAnswer() : this.stalled("load", "took no data")),
    );
    const source = typeof ndjson === "string" ? new Blob([ndjson]).stream() : ndjson;
    const body = watchedUpload(source, dog, () => (sent = true));
    const init = { body, headers: { "content-type": "application/x-ndjson" } } as RequestInit;
    dog.arm();
    try {
      const res = (headed = await this.request("POST", "/load", init, abort.signal));
      return await this.answer(res, "load counts", (b): b is { loaded: number; skipped: number } =>
        isObject(b) && typeof b.loaded === "number" && typeof b.skipped === "number",
      );
    } finally {
      dog.disarm();
    }
  }

  async buckets(): Promise<BucketStats[]> {
    const res = await this.request("GET", "/buckets");
    return (await this.answer(res, "a list of buckets", (b): b is { buckets: BucketStats[] } => isObject(b) && Array.isArray(b.buckets))).buckets;
  }

  /** The members of the cluster as this node sees them (GET /cluster). */
  async cluster(): Promise<ClusterStatus & { refusals?: Refusals }> {
    const res = await this.request("GET", "/cluster");
    return this.answer(res, "a cluster status", isClusterStatus);
  }

  /** Where a key lives (GET /cluster/placement): its partition and that partition's owners, heaviest first. */
  async placement(key: string, options: { bucket?: string } = {}): Promise<{ partition: number; owners: string[] }> {
    checkOptions("placement", options);
    text("key", key, "INVALID_KEY");
    const qs = new URLSearchParams({ key, ...(options.bucket === undefined ? {} : { bucket: options.bucket }) });
    const res = await this.request("GET", `/cluster/placement?${qs}`);
    return this.answer(res, "a placement", (b): b is { partition: number; owners: string[] } => isObject(b) && typeof b.partition === "number" && Array.isArray(b.owners));
  }

  /**
   * Forgets a dead member for good (DELETE /cluster/members/:name, Cassandra's
   * removenode): its partitions get new owners at once. Refused (MakhzenClientError)
   * with NOT_FOUND for no such member, MEMBER_ALIVE for one that still answers.
   */
  async forget(name: string): Promise<ForgetResult> {
    const res = await this.request("DELETE", `/cluster/members/${encodeURIComponent(pathSegment("member name", name, "VALIDATION"))}`);
    return this.answer(res, "a forget's answer", (b): b is ForgetResult => isObject(b) && isObject(b.member) && Array.isArray(b.partitions));
  }

  async ready(): Promise<boolean> {
    try {
      return (await this.request("GET", "/readyz")).ok;
    } catch {
      return false;
    }
  }

  private itemPath(key: string, bucket?: string): string {
    return `${this.bucketPath(bucket)}/items/${encodeURIComponent(pathSegment("key", key))}`;
  }

  private bucketPath(bucket = this.bucket): string {
    return bucket === DEFAULT_BUCKET ? "" : `/buckets/${encodeURIComponent(bucketSegment(bucket))}`;
  }

  /**
   * One request, bounded by `timeoutMs` unless the caller brings its own signal (the
   * streaming calls, which bound stalls rather than the whole exchange). A signal
   * aborted with a MakhzenClientError fails with that error as it is.
   */
  private async request(method: string, path: string, init: RequestInit = {}, signal: AbortSignal = AbortSignal.timeout(this.timeoutMs)): Promise<Response> {
    try {
      const headers = this.authorization === undefined ? init.headers : { ...(init.headers as Record<string, string>), authorization: this.authorization };
      // A node never redirects. Followed, a 303 turned a PUT into a GET (`put` said OK, nothing written),
      // and a 307 to another origin dropped the token: any 3xx is refused, naming where it pointed.
      const res = await fetch(this.url + path, { ...init, headers, method, signal, tls: this.tls, redirect: "manual" });
      if (res.status >= 300 && res.status <= 399) {
        void res.body?.cancel().catch(() => {});
        const to = res.headers.get("location");
        throw new MakhzenClientError(res.status, "BAD_RESPONSE", `${this.url} answered HTTP ${res.status}, a redirect${to === null ? "" : ` to ${JSON.stringify(to.slice(0, 200))}`}: a makhzen node never redirects, so it is not followed (is the URL a node's?)`);
      }
      return res;
    } catch (e) {
      if (e instanceof MakhzenClientError) throw e;
      const why = describeFetchError(e, this.timeoutMs, this.url);
      throw new MakhzenClientError(0, "UNREACHABLE", `cannot reach ${this.url}: ${why}`);
    }
  }

  /** An answer whose head came and whose body stopped (the words the README gives, as for every other call). */
  private unfinished(res: Response): MakhzenClientError {
    return new MakhzenClientError(0, "UNREACHABLE", `${this.url} did not finish its answer (HTTP ${res.status}) within ${this.timeoutMs} ms`);
  }

  private noAnswer(): MakhzenClientError {
    return new MakhzenClientError(0, "UNREACHABLE", `cannot reach ${this.url}: no answer within ${this.timeoutMs} ms`);
  }

  private stalled(what: "dump" | "load", did: string): MakhzenClientError {
    return new MakhzenClientError(0, "UNREACHABLE", `${this.url} stalled mid-${what}: it ${did} for ${this.timeoutMs} ms`);
  }

  /**
   * A success's JSON body, checked to be what was asked for: a URL that reaches
   * something else (another server, a proxy's page) is an error, never an
   * `undefined` printed as a value or a crash further on.
   */
  private async answer<T>(res: Response, what: string, check: (body: unknown) => body is T): Promise<T> {
    await this.expectOk(res);
    const text = await this.text(res);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw this.badAnswer(res, what);
    }
    if (!check(body)) throw this.badAnswer(res, what);
    return body;
  }

  /**
   * A body, read within the request's signal: a body that stalls past `timeoutMs`
   * or breaks off is UNREACHABLE, as a node that never answered (it rejected with
   * the runtime's own TimeoutError or ECONNRESET).
   */
  private async text(res: Response): Promise<string> {
    try {
      return await res.text();
    } catch (e) {
      if (e instanceof MakhzenClientError) throw e;
      if (e instanceof Error && e.name === "TimeoutError") throw this.unfinished(res);
      const reset = (e as { code?: string }).code === "ECONNRESET"; // Bun's message adds advice about fetch() options
      throw new MakhzenClientError(0, "UNREACHABLE", `${this.url} broke off its answer (HTTP ${res.status}): ${reset ? "the connection closed" : describeFetchError(e, this.timeoutMs, this.url)}`);
    }
  }

  private async readError(res: Response): Promise<{ code: string; message: string }> {
    const text = await this.text(res);
    try {
      const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
      if (body.error?.code) return { code: body.error.code, message: body.error.message ?? body.error.code };
    } catch {
      // not our envelope: fall through
    }
    return { code: `HTTP_${res.status}`, message: `HTTP ${res.status}: ${text.slice(0, 200)}` };
  }

  private badAnswer(res: Response, what: string): MakhzenClientError {
    const type = res.headers.get("content-type") ?? "no content type";
    return new MakhzenClientError(res.status, "BAD_RESPONSE", `${this.url} answered HTTP ${res.status} (${type}) that is not ${what}: is it a makhzen node?`);
  }

  private async expectOk(res: Response): Promise<Response> {
    if (res.ok) return res;
    const err = await this.readError(res);
    throw new MakhzenClientError(res.status, err.code, err.message);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const isItem = (v: unknown): v is Item => isObject(v) && typeof v.key === "string" && typeof v.value === "string";

const isPage = (v: unknown): v is ClientListPage =>
  isObject(v) && Array.isArray(v.items) && v.items.every(isItem) && (v.cursor === null || typeof v.cursor === "string");

const isClusterStatus = (v: unknown): v is ClusterStatus & { refusals?: Refusals } =>
  isObject(v) && typeof v.self === "string" && Array.isArray(v.members) && v.members.every((m) => isObject(m) && typeof m.name === "string");

function describeFetchError(e: unknown, timeoutMs: number, url: string): string {
  if (!(e instanceof Error)) return String(e);
  if (e.name === "TimeoutError") return `no answer within ${timeoutMs} ms`;
  const code = (e as { code?: string }).code;
  if (code === "ConnectionRefused" || code === "ECONNREFUSED") return "connection refused";
  // What an https node does with a plain request: it closes the connection at the first bytes.
  if (code === "ECONNRESET" && url.startsWith("http:")) return "the connection was closed unexpectedly (ECONNRESET): if the node serves https (--tls-cert), use an https:// URL";
  // What fixes each, in our words: Bun's message names its own fetch() and its `verbose` option.
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `its certificate does not name the host of this URL (${code}): use a name or address the certificate lists in its subjectAltName`;
  }
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") return `its certificate is outside its dates of validity (${code})`;
  if (code !== undefined && /CERT|VERIFY|SELF_SIGNED/.test(code)) return `its certificate is not trusted (${code}): pass the CA of its certificate (--tls-ca, or the ca option)`;
  if (code === "Malformed_HTTP_Response") return `its answer is not HTTP (${code}): is this a makhzen node's HTTP port, not its RESP port or another server?`;
  const message = e.message.replace(/ For more information, pass `verbose: true` in the second argument to fetch\(\)/, "");
  return code === undefined || message.includes(code) ? message : `${message} (${code})`;
}
