/**
 * The replicated write in process, step by step, in CPU ns per record (no sockets):
 *
 *  - receiving: what a peer does with a `records` batch of fresh keys (JSON.parse of
 *    the body, the protocol's compiled check, the merge through the peer service);
 *  - sending: what the node that took the writes spends in its replicator per record
 *    with two peers (hearing of the store's change, filing into both queues, taking
 *    batches, serializing, building each request body), with a transport that
 *    answers at once; `--lookup` files them as records looked up when taken
 *    (`enqueue`, the path before the store reported its changes).
 *
 *   bun bench/replication-steps.ts [--rounds 5] [--batches 400] [--batch 150] [--lookup]
 */
import { MemoryTransport } from "../src/cluster/protocol/memory-transport.ts";
import { checkRequest, type PeerAnswer, type PeerOp, type PeerTransport } from "../src/cluster/protocol/peer-ops.ts";
import { Replicator } from "../src/cluster/replicator.ts";
import { CLUSTER_DEFAULTS } from "../src/cluster/options.ts";
import { recordId, type StoredRecord } from "../src/core/record.ts";
import { core } from "../test/support/core.ts";
import { createNode } from "../src/node.ts";
import { PROTOCOL_HEADER, PROTOCOL_VERSION, type RecordsRequest } from "../src/cluster/protocol/messages.ts";
import { fromTuple, recordsRequest } from "../src/cluster/protocol/record-wire.ts";
import { median, option } from "./_lib.ts";

const ROUNDS = Number(option("rounds", "5"));
const BATCHES = Number(option("batches", "400"));
const BATCH = Number(option("batch", "150"));
const ONLY = option("only", ""); // "send" or "receive": one side alone (to profile it)
const LOOKUP = process.argv.includes("--lookup");
const VALUE = "x".repeat(100);

const cpuNs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
};

/** CPU ns per record of `fn` run over `n` records. */
function perRecord(n: number, fn: () => void): number {
  Bun.gc(true);
  const t0 = cpuNs();
  fn();
  return (cpuNs() - t0) / n;
}

// ---- receiving ----
const receiver = core("b", new MemoryTransport());
let version = 0;
const bodies = (round: number): string[] =>
  Array.from({ length: BATCHES }, (_, i) => {
    const recs: StoredRecord[] = [];
    for (let j = 0; j < BATCH; j++) recs.push({ bucket: "default", key: `r${round}-${i}-${j}`, value: VALUE, version: `${String(Date.now()).padStart(15, "0")}-${String(++version % 1e6).padStart(6, "0")}-a` });
    return JSON.stringify(recordsRequest(recs));
  });

// The same merge straight into a store (no peer service, no clock guard): the store's own share.
const bare = core("bare", new MemoryTransport());
// And whole requests through a node's peer route (node.handle: the HTTP app, no socket).
const node = createNode({ name: "routed", port: 0 });
const receiving: Record<string, number[]> = { parse: [], check: [], apply: [], store: [], whole: [], route: [] };
for (let r = 0; r < (ONLY === "send" ? 0 : ROUNDS + 1); r++) {
  const texts = bodies(r);
  const n = BATCHES * BATCH;
  let parsed: unknown[] = [];
  const parse = perRecord(n, () => (parsed = texts.map((t) => JSON.parse(t))));
  let checked: ReturnType<typeof checkRequest<"records">>[] = [];
  const check = perRecord(n, () => (checked = parsed.map((p) => checkRequest("records", p))));
  const apply = perRecord(n, () => {
    for (const req of checked) receiver.cluster.service.records(req);
  });
  const again = texts.map((t) => (JSON.parse(t) as RecordsRequest).records.map(fromTuple));
  const store = perRecord(n, () => {
    for (const recs of again) for (const rec of recs) bare.store.apply(rec);
  });
  const requests = texts.map(
    (t) => new Request("http://x/internal/records", { method: "POST", headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(t)), [PROTOCOL_HEADER]: PROTOCOL_VERSION }, body: t }),
  );
  Bun.gc(true);
  const t0 = cpuNs();
  for (const req of requests) {
    const res = await node.handle(req);
    if (res.status !== 200) throw new Error(`peer route: HTTP ${res.status} ${await res.text()}`);
    await res.text();
  }
  const route = (cpuNs() - t0) / n;
  if (r === 0) continue; // warm-up
  receiving.route!.push(route);
  receiving.store!.push(store);
  receiving.parse!.push(parse);
  receiving.check!.push(check);
  receiving.apply!.push(apply);
  receiving.whole!.push(parse + check + apply);
}

// ---- sending ----
/** Answers every batch at once, as a peer that took everything would. */
class InstantTransport implements PeerTransport {
  batches = 0;
  call<O extends PeerOp>(_url: string, op: O, body: unknown): Promise<PeerAnswer<O>> {
    if (op !== "records") throw new Error(`unexpected ${op}`);
    this.batches++;
    void (body as string).length;
    return Promise.resolve({ applied: BATCH, refused: 0 } as PeerAnswer<O>);
  }
}
const sender = core("a", new MemoryTransport());
const transport = new InstantTransport();
const replicator = new Replicator({
  transport,
  config: { ...CLUSTER_DEFAULTS, batchMaxRecords: BATCH },
  onOverflow: () => {},
  current: (b, k) => sender.store.getRecord(b, k),
  changesReported: !LOOKUP,
  wallMs: () => Date.now(),
  lingerMs: 0,
});
replicator.addPeer("b", "mem://b");
replicator.addPeer("c", "mem://c");
const sending: number[] = [];
for (let r = 0; r < (ONLY === "receive" ? 0 : ROUNDS + 1); r++) {
  const n = BATCHES * BATCH;
  const records: StoredRecord[] = [];
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const rec: StoredRecord = { bucket: "default", key: `s${r}-${i}`, value: VALUE, version: sender.clock.now() };
    sender.store.apply(rec);
    records.push(rec);
    ids.push(recordId(rec.bucket, rec.key)); // the store's change names it (its own string, built for the digest anyway)
  }
  Bun.gc(true);
  const t0 = cpuNs();
  // As under load: a turn's worth of writes, then the senders take them.
  for (let i = 0; i < n; i += BATCH) {
    if (LOOKUP) for (let j = i; j < i + BATCH; j++) replicator.enqueue(records[j]!);
    else
      for (let j = i; j < i + BATCH; j++) {
        replicator.storeChanged(ids[j]!, false); // as the store's onChange does, right before
        replicator.enqueueWritten(records[j]!);
      }
    await new Promise((resolve) => setImmediate(resolve));
    while (!replicator.drained(["b", "c"])) await new Promise((resolve) => setImmediate(resolve));
  }
  const ns = (cpuNs() - t0) / n;
  if (r > 0) sending.push(ns);
}
replicator.close();
await node.close();

console.log(`records per batch ${BATCH}, ${BATCHES} batches a round, medians of ${ROUNDS} rounds, CPU ns per record:`);
if (ONLY !== "send") console.log(`receiving: JSON.parse ${median(receiving.parse!).toFixed(0)}, check ${median(receiving.check!).toFixed(0)}, merge ${median(receiving.apply!).toFixed(0)} (Store.apply alone ${median(receiving.store!).toFixed(0)}), together ${median(receiving.whole!).toFixed(0)}; through the peer route ${median(receiving.route!).toFixed(0)}`);
if (ONLY !== "receive") console.log(`sending (two peers, ${transport.batches} batches in all): ${median(sending).toFixed(0)}`);
