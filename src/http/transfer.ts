import { Elysia, t } from "elysia";
import { MakhzenError } from "../errors.ts";
import type { Items } from "../items.ts";
import { WireRecord, checker } from "../peer-protocol.ts";
import { BUCKET_PATTERN, type StoredRecord } from "../record.ts";
import type { ScanCursor, Store } from "../store.ts";

export interface TransferDeps {
  store: Store;
  items: Items;
  /** Longest NDJSON line accepted by /load, in bytes. */
  maxLineBytes: number;
  maxClockOffsetMs: number;
  /** When set, a load answers only after this resolves (fsync=always). */
  durable?: () => Promise<void>;
}

/** Records per scan step of a dump: bounds the memory a dump holds at once. */
const DUMP_PAGE = 1000;
const NDJSON = "application/x-ndjson";
const checkRecord = checker(WireRecord, "record");

/**
 * Backup and restore over HTTP, as NDJSON: one record per line, versions,
 * tombstones and expiries included, so a dump/load round trip is exact.
 * Both directions stream; neither holds more than a page or a line in memory.
 */
export function transferRoutes(deps: TransferDeps) {
  return new Elysia({ name: "transfer" })
    .get(
      "/dump",
      ({ query }) => {
        const bucket = query.bucket;
        if (bucket !== undefined && !BUCKET_PATTERN.test(bucket)) {
          throw new MakhzenError("INVALID_BUCKET", "bucket name must match [A-Za-z0-9_.-]{1,64}");
        }
        return new Response(dumpStream(deps.store, bucket), { headers: { "content-type": NDJSON } });
      },
      {
        query: t.Object({ bucket: t.Optional(t.String()) }),
        detail: { summary: "Every record (tombstones included) as NDJSON, streamed", tags: ["backup"] },
      },
    )
    .post(
      "/load",
      async ({ request }) => {
        let loaded = 0;
        let skipped = 0;
        let line = 0;
        for await (const text of lines(request.body ?? new ReadableStream(), deps.maxLineBytes)) {
          line++;
          if (text.trim() === "") continue;
          let record: StoredRecord;
          try {
            record = checkRecord(JSON.parse(text)) as StoredRecord;
            if (deps.items.importRecord(record, deps.maxClockOffsetMs)) loaded++;
            else skipped++;
          } catch (e) {
            const why = e instanceof MakhzenError ? e.message : "not valid JSON";
            const code = e instanceof MakhzenError && e.code !== "VALIDATION" ? e.code : "BAD_REQUEST";
            // The records before the bad line stand: under fsync=always they are on disk before we say so.
            await deps.durable?.();
            throw new MakhzenError(code, `line ${line}: ${why} (${loaded} records before it were loaded)`);
          }
        }
        await deps.durable?.();
        return { loaded, skipped };
      },
      {
        parse: "none",
        detail: {
          summary: "Merge NDJSON records (as /dump writes them); newer versions win, and loaded records replicate",
          tags: ["backup"],
        },
      },
    );
}

function dumpStream(store: Store, bucket: string | undefined): ReadableStream<Uint8Array> {
  let after: ScanCursor | undefined = bucket === undefined ? undefined : { bucket, key: "" };
  const encoder = new TextEncoder();
  return new ReadableStream({
    // Pull-based: the next page is scanned only when the client has read the last.
    pull(controller) {
      const page = store.scan(after, DUMP_PAGE);
      const inBucket = bucket === undefined ? page : page.filter((r) => r.bucket === bucket);
      if (inBucket.length > 0) controller.enqueue(encoder.encode(inBucket.map((r) => JSON.stringify(r)).join("\n") + "\n"));
      if (page.length < DUMP_PAGE || inBucket.length < page.length) return controller.close();
      const last = page[page.length - 1]!;
      after = { bucket: last.bucket, key: last.key };
    },
  });
}

/** Splits a byte stream into lines, refusing one longer than `maxLineBytes` (counted in characters, a lower bound). */
async function* lines(body: ReadableStream<Uint8Array>, maxLineBytes: number): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let tail = "";
  for await (const chunk of body) {
    const text = tail + decoder.decode(chunk, { stream: true });
    let start = 0;
    for (let nl = text.indexOf("\n"); nl !== -1; nl = text.indexOf("\n", start)) {
      yield text.slice(start, nl);
      start = nl + 1;
    }
    tail = text.slice(start);
    if (tail.length > maxLineBytes) throw new MakhzenError("BODY_TOO_LARGE", `a line is longer than ${maxLineBytes} bytes`);
  }
  tail += decoder.decode();
  if (tail.length > 0) yield tail;
}
