import { Elysia, t } from "elysia";
import { MakhzenError } from "../errors.ts";
import { decodeUtf8, refuseEncoded, tooLarge, withDeadline } from "./body.ts";
import { QUERY, queryRule } from "./query.ts";
import { WireRecord, checker } from "../cluster/protocol/messages.ts";
import type { StoredRecord } from "../core/record.ts";
import type { ItemsService, LoadCounts } from "../service.ts";

export interface TransferDeps {
  service: ItemsService;
  /** Longest NDJSON line accepted by /load, in bytes (see limits.ts). */
  maxLineBytes: number;
  /** Longest silence of a /load body between two reads, in ms: a restore has no total cap, in bytes or in time. */
  idleTimeoutMs: number;
}

const NDJSON = "application/x-ndjson";
const checkRecord = checker(WireRecord, "record");

/**
 * Backup and restore over HTTP, as NDJSON: one record per line, versions,
 * tombstones and expiries included, so a dump/load round trip is exact.
 * Both directions stream; neither holds more than a page or a line in memory.
 * (Documented in openapi.ts.)
 */
export function transferRoutes(deps: TransferDeps) {
  return new Elysia({ name: "transfer" })
    // scope=node (the default): this node's own records. scope=cluster: every key of the
    // cluster once, its newest record (ItemsService.dumpCluster); its first page is built
    // before the answer starts, so a dump that cannot be whole is a 503, not a short 200.
    .get(
      "/dump",
      async ({ query, request }) => {
        // HEAD: Bun reads a streamed body whole to give its length, so a HEAD of a dump of
        // gigabytes held all of them. It answers the GET's head alone (a cluster's after its
        // first page, so its status is the GET's): chunked, as the GET is, with no length.
        const head = request.method === "HEAD";
        if (query.scope !== "cluster") {
          const pages = deps.service.dump(query.bucket); // a bad bucket is refused here, for HEAD too; nothing is scanned yet
          return head ? ndjsonHead() : ndjson(ndjsonStream(pages));
        }
        const pages = deps.service.dumpCluster(query.bucket);
        const first = await pages.next();
        if (!head) return ndjson(ndjsonStream(pages, first));
        await pages.return?.(undefined);
        return ndjsonHead();
      },
      {
        // Before Elysia reads the query: a repeated bucket or scope is a 400 (query.ts), not one of the two silently.
        transform: queryRule(QUERY.dump),
        query: t.Object({ bucket: t.Optional(t.String()), scope: t.Optional(t.Union([t.Literal("node"), t.Literal("cluster")], { error: 'scope must be "node" (this node\'s own records) or "cluster"' })) }),
      },
    )
    .post(
      "/load",
      async ({ request }) => {
        refuseEncoded(request);
        const counts: LoadCounts = { loaded: 0, skipped: 0 };
        // No body (or Content-Length: 0) is an empty load. (`new ReadableStream()` stood in
        // for a missing body here, and it never ends: such a load was never answered.)
        if (request.body) await loadLines(request.body, deps, counts);
        return counts;
      },
      // A parameter here is a mistake (`?bucket=` does not load into a bucket: each line names its own).
      { parse: "none", transform: queryRule(QUERY.load) },
    );
}

/**
 * Loads every line of an NDJSON body in order through the service, counting into
 * `counts`. The first bad line (or a body that stalls, or a line over the limit)
 * stops the load with an error naming its line and how many records before it were
 * loaded; those stand, and are durable before the error is answered (the service
 * waits for that either way).
 */
async function loadLines(body: ReadableStream<Uint8Array>, deps: TransferDeps, counts: LoadCounts): Promise<void> {
  let line = 0;
  let read = false;
  async function* records(): AsyncGenerator<StoredRecord> {
    for await (const bytes of lines(body, deps.maxLineBytes, deps.idleTimeoutMs)) {
      line++;
      const text = decodeUtf8(bytes, "record");
      if (text.trim() === "") continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new MakhzenError("BAD_REQUEST", "not valid JSON");
      }
      yield checkRecord(parsed) as StoredRecord;
    }
    read = true;
  }
  try {
    await deps.service.load(records(), counts);
  } catch (e) {
    if (!(e instanceof MakhzenError)) throw e;
    const code = e.code === "VALIDATION" ? "BAD_REQUEST" : e.code;
    // A stall or an over-long line is met while reading the next line, not yet counted.
    const at = e.code === "REQUEST_TIMEOUT" || e.code === "BODY_TOO_LARGE" ? line + 1 : line;
    // Lines before it that were already held count as skipped: "0 loaded" alone read as if they were thrown away.
    const skipped = counts.skipped > 0 ? `, ${counts.skipped} skipped as already held as new or newer` : "";
    if (!counts.notDurable) throw new MakhzenError(code, `line ${at}: ${e.message} (${counts.loaded} records before it were loaded${skipped})`);
    // The data dir did not take what was loaded: applied in memory, not all durable (Service.load).
    const notDurable = "applied in memory, but the data dir did not take them all: they are not durable until it does, and lost if the node stops first";
    if (read) throw new MakhzenError(code, `every line was read: ${counts.loaded} records ${notDurable} (${e.message})`);
    throw new MakhzenError(code, `line ${at}: ${e.message} (${counts.loaded} records before it were ${notDurable})`);
  }
}

const ndjson = (body: ReadableStream<Uint8Array>) => new Response(body, { headers: { "content-type": NDJSON } });
const ndjsonHead = () => new Response(null, { headers: { "content-type": NDJSON, "transfer-encoding": "chunked" } });

/**
 * A dump's pages as NDJSON bytes, one record a line; pull-based: the next page is
 * scanned (or, for the cluster, asked of its members) only when the client has read
 * the last. `first`: a page already pulled. A page that fails (a cluster dump that
 * lost its last copy of some partitions) errors the stream: the transfer breaks
 * rather than end as if it were whole.
 */
function ndjsonStream(pages: Iterator<StoredRecord[]> | AsyncIterator<StoredRecord[]>, first?: IteratorResult<StoredRecord[]>): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let pending = first;
  let page: StoredRecord[] = [];
  let at = 0;
  return new ReadableStream({
    // A piece of at most about DUMP_CHUNK_CHARS a pull, the rest of the page kept for the next: a page
    // is a count of records, and 1,000 values of 1 MiB made one string of gigabytes (past what the
    // engine holds, the dump broke off), and a reader that paused held all of it.
    async pull(controller) {
      while (at === page.length) {
        const next = pending ?? (await pages.next());
        pending = undefined;
        if (next.done) return controller.close();
        [page, at] = [next.value, 0];
      }
      let text = "";
      while (at < page.length && text.length < DUMP_CHUNK_CHARS) text += JSON.stringify(page[at++]) + "\n";
      controller.enqueue(encoder.encode(text));
    },
  });
}

/** About the most characters of records one pull of a dump's stream encodes (one record may be more). */
const DUMP_CHUNK_CHARS = 1024 * 1024;

/**
 * Splits a byte stream into lines, as bytes (decoded one line at a time, so bytes
 * that are not UTF-8 are refused rather than replaced). A line longer than
 * `maxLineBytes` is refused before it is buffered further; the body as a whole has
 * no cap. A read that waits longer than `idleTimeoutMs` ends the load with
 * REQUEST_TIMEOUT: a stalled client cannot hold the request forever, and a large
 * restore that keeps moving is never cut.
 */
async function* lines(body: ReadableStream<Uint8Array>, maxLineBytes: number, idleTimeoutMs: number): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  // The start of a line that began in an earlier chunk, and its length so far.
  let parts: Uint8Array[] = [];
  let partBytes = 0;
  let finished = false;
  try {
    for (;;) {
      const { done, value: chunk } = await withDeadline(reader.read(), idleTimeoutMs, "the next part of the load body").catch(cutShort);
      if (done) {
        finished = true;
        break;
      }
      let start = 0;
      for (let nl = chunk.indexOf(NEWLINE); nl !== -1; nl = chunk.indexOf(NEWLINE, start)) {
        if (partBytes + nl - start > maxLineBytes) throw lineTooLong(maxLineBytes);
        const piece = chunk.subarray(start, nl);
        yield parts.length === 0 ? piece : Buffer.concat([...parts, piece]);
        parts = [];
        partBytes = 0;
        start = nl + 1;
      }
      if (start < chunk.byteLength) {
        partBytes += chunk.byteLength - start;
        if (partBytes > maxLineBytes) throw lineTooLong(maxLineBytes);
        parts.push(chunk.subarray(start));
      }
    }
  } finally {
    // Stopped early (a bad line, a stall, a line too long): the client may still be
    // sending, so stop reading, and its bytes are not buffered.
    if (!finished) await reader.cancel().catch(() => undefined);
  }
  if (partBytes > 0) yield Buffer.concat(parts);
}

/**
 * A read of the body that failed other than by our deadline: the client closed the
 * connection mid-body (Bun: "The connection was closed."). A client's doing, so a
 * 400 (counted so in /metrics, logged as nothing), not an unexpected 500.
 */
function cutShort(e: unknown): never {
  if (e instanceof MakhzenError) throw e;
  throw new MakhzenError("BAD_REQUEST", `the body was cut short: ${e instanceof Error ? e.message : String(e)}`);
}

const NEWLINE = 0x0a;
const lineTooLong = (maxLineBytes: number) => tooLarge(maxLineBytes, "a line");
