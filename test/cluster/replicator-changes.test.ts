import { afterEach, describe, expect, test } from "bun:test";
import { CLUSTER_DEFAULTS } from "../../src/cluster/options.ts";
import { Replicator } from "../../src/cluster/replicator.ts";
import type { PeerTransport } from "../../src/cluster/protocol/peer-ops.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { recordId, type StoredRecord } from "../../src/core/record.ts";
import { core, joined } from "../support/core.ts";
import { eventually } from "../support/proc.ts";
import { heldTransport } from "../support/held-transport.ts";
import type { RecordsRequest } from "../../src/cluster/protocol/messages.ts";
import { fromTuple } from "../../src/cluster/protocol/record-wire.ts";

/**
 * A write the store reported as its last change is queued as `current` and taken
 * without a store lookup (Replicator.enqueueWritten, storeChanged); anything that
 * may have changed its key since (a later change, a purge, a failed send) is looked
 * up when taken, as every record was before, and the store's newer record goes, or
 * nothing. Each test counts the lookups and reads what went on the wire.
 */

let open: Replicator[] = [];
afterEach(() => {
  for (const r of open) r.close();
  open = [];
});

/** A replicator with peer b, whose store is `held` (a map by record id), counting its lookups. */
function replicator(transport: PeerTransport, changesReported = true) {
  const held = new Map<string, StoredRecord>();
  const lookups: string[] = [];
  const r = new Replicator({
    transport,
    config: { ...CLUSTER_DEFAULTS, backoffBaseMs: 1, backoffMaxMs: 5 },
    onOverflow: () => {},
    wallMs: () => Date.now(),
    current: (bucket, key) => {
      lookups.push(key);
      return held.get(recordId(bucket, key));
    },
    changesReported,
  });
  r.addPeer("b", "http://b.invalid");
  open.push(r);
  /** As the store and Items do: apply (the store's change), then the write hook. */
  const write = (key: string, value: string | null): StoredRecord => {
    const rec = { bucket: "default", key, value, version: `${String(Date.now()).padStart(15, "0")}-${String(++n).padStart(6, "0")}-a` };
    const id = recordId(rec.bucket, key);
    held.set(id, rec);
    r.storeChanged(id, false);
    r.enqueueWritten(rec);
    return rec;
  };
  /** A change of the store that is not this node's write: a newer record from a peer (`rec`), or a purge (undefined). */
  const changeElsewhere = (key: string, rec: StoredRecord | undefined): void => {
    const id = recordId("default", key);
    if (rec) held.set(id, rec);
    else held.delete(id);
    r.storeChanged(id, rec === undefined);
  };
  return { r, held, lookups, write, changeElsewhere };
}

let n = 0;
const newer = (key: string, value: string | null): StoredRecord => ({ bucket: "default", key, value, version: `${String(Date.now() + 60_000).padStart(15, "0")}-${String(++n).padStart(6, "0")}-x` });

describe("records known current skip the store lookup", () => {
  test("a write whose change was the store's last is sent as written, without a lookup", async () => {
    const { calls, transport } = heldTransport();
    const { r, lookups, write } = replicator(transport);
    const a = write("a", "1");
    const b = write("b", "2");
    await eventually(() => calls.length === 1, { timeoutMs: 2000, what: "a batch sent" });
    expect(calls[0]!.records).toEqual([a, b]);
    calls[0]!.release();
    await eventually(() => r.drained(["b"]), { timeoutMs: 2000, what: "acknowledged" });
    expect(lookups).toEqual([]);
  });

  test("without changesReported every record is looked up", async () => {
    const { calls, transport } = heldTransport();
    const { lookups, write } = replicator(transport, false);
    write("a", "1");
    await eventually(() => calls.length === 1, { timeoutMs: 2000, what: "a batch sent" });
    expect(lookups).toEqual(["a"]);
  });

  test("a write filed after another change of the store (not its own) is looked up", async () => {
    const { calls, transport } = heldTransport();
    const { r, lookups, changeElsewhere } = replicator(transport);
    const rec = { bucket: "default", key: "k", value: "v", version: `${String(Date.now()).padStart(15, "0")}-000001-a` };
    changeElsewhere("k", rec);
    changeElsewhere("other", undefined); // the store's last change is another key's removal
    r.enqueueWritten(rec);
    await eventually(() => calls.length === 1, { timeoutMs: 2000, what: "a batch sent" });
    expect(lookups).toEqual(["k"]);
    expect(calls[0]!.records).toEqual([rec]);
  });

  test("a queued write whose key then changes in the store is looked up, and the store's newer record goes instead", async () => {
    const { calls, transport } = heldTransport();
    const { r, lookups, write, changeElsewhere } = replicator(transport);
    write("first", "1"); // in flight: the next records wait in the queue behind it
    await eventually(() => calls.length === 1, { timeoutMs: 2000, what: "the first batch sent" });
    write("k", "old");
    write("other", "2");
    const replaced = newer("k", "from a peer");
    changeElsewhere("k", replaced);
    calls[0]!.release();
    await eventually(() => calls.length === 2, { timeoutMs: 2000, what: "the second batch sent" });
    expect(calls[1]!.records).toEqual([replaced, expect.objectContaining({ key: "other" })]);
    expect(lookups).toEqual(["k"]);
    calls[1]!.release();
  });

  test("a queued write whose key is then purged is not sent", async () => {
    const { calls, transport } = heldTransport();
    const { r, write, changeElsewhere } = replicator(transport);
    write("first", "1");
    await eventually(() => calls.length === 1, { timeoutMs: 2000, what: "the first batch sent" });
    write("k", "old");
    write("other", "2");
    changeElsewhere("k", newer("k", null));
    changeElsewhere("k", undefined); // the delete, purged
    calls[0]!.release();
    await eventually(() => calls.length === 2, { timeoutMs: 2000, what: "the second batch sent" });
    expect(calls[1]!.records.map((x) => x.key)).toEqual(["other"]);
    calls[1]!.release();
    await eventually(() => r.drained(["b"]), { timeoutMs: 2000, what: "acknowledged" });
  });

  test("a queued delete whose tombstone is then purged still goes (a short --tombstone-ttl purged it before its batch left, and the peers kept the value)", async () => {
    const { calls, transport } = heldTransport();
    const { r, write, changeElsewhere } = replicator(transport);
    write("first", "1");
    await eventually(() => calls.length === 1, { timeoutMs: 2000, what: "the first batch sent" });
    write("k", "v");
    const deleted = write("k", null);
    changeElsewhere("k", undefined); // the sweep purges the tombstone
    calls[0]!.release();
    await eventually(() => calls.length === 2, { timeoutMs: 2000, what: "the second batch sent" });
    expect(calls[1]!.records).toEqual([deleted]);
    calls[1]!.release();
    await eventually(() => r.drained(["b"]), { timeoutMs: 2000, what: "acknowledged" });
  });

  test("records of a failed batch are looked up when taken again (their keys may have changed while in flight)", async () => {
    const { calls, transport } = heldTransport();
    const { r, lookups, write, changeElsewhere } = replicator(transport);
    write("k", "old");
    await eventually(() => calls.length === 1, { timeoutMs: 2000, what: "a batch sent" });
    const replaced = newer("k", "from a peer");
    changeElsewhere("k", replaced); // not queued while in flight: nothing to mark
    calls[0]!.fail();
    await eventually(() => calls.length === 2, { timeoutMs: 2000, what: "the retry" });
    expect(calls[1]!.records).toEqual([replaced]);
    expect(lookups).toEqual(["k"]);
    calls[1]!.release();
    await eventually(() => r.drained(["b"]), { timeoutMs: 2000, what: "acknowledged" });
  });
});

describe("a node's writes through its store (createCore's onChange hook)", () => {
  test("a write queued behind a batch in flight goes as the store holds it when taken: a peer's newer delete, not the old value", async () => {
    const net = new MemoryTransport();
    // a's records to c wait for the test while `hold`; every call to c is kept to read.
    let hold = true;
    let release: (() => void) | undefined;
    const toC: StoredRecord[][] = [];
    const aNet = Object.create(net) as MemoryTransport;
    aNet.call = (async (url: string, op: string, body: unknown, t: number, s?: AbortSignal) => {
      if (url === "mem://c" && op === "records") {
        toC.push((JSON.parse(body as string) as RecordsRequest).records.map(fromTuple));
        if (hold) await new Promise<void>((r) => (release = r));
      }
      return net.call(url, op as never, body as never, t, s);
    }) as MemoryTransport["call"];
    const [a, b, c] = [core("a", aNet), core("b", net), core("c", net)];
    const nodes = [a, b, c];
    try {
      await joined(nodes);
      a.items.set("default", "first", "1");
      await eventually(() => release !== undefined, { timeoutMs: 2000, what: "a's batch to c in flight" });
      a.items.set("default", "k", "old"); // queued for c behind the batch in flight
      await eventually(() => b.store.get("default", "k")?.value === "old", { timeoutMs: 2000, what: "b has the value" });
      const t = b.items.delete("default", "k")!;
      await eventually(() => a.store.getRecord("default", "k")?.version === t, { timeoutMs: 2000, what: "a has b's delete" });
      hold = false;
      release!();
      await eventually(() => a.cluster.replicator.drained(["c"]), { timeoutMs: 2000, what: "a's queue to c drained" });
      const sent = toC.flat().filter((x) => x.key === "k");
      expect(sent.map((x) => [x.value, x.version])).toEqual([[null, t]]);
    } finally {
      for (const x of nodes) x.cluster.close();
    }
  });
});
