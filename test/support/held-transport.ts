import type { PeerTransport } from "../../src/cluster/protocol/peer-ops.ts";
import type { StoredRecord } from "../../src/core/record.ts";
import type { RecordsRequest } from "../../src/cluster/protocol/messages.ts";
import { fromTuple } from "../../src/cluster/protocol/record-wire.ts";

/**
 * A peer transport whose `records` calls each wait for the test to release them
 * (answered as all applied) or fail them: a replicator's batches in flight, held
 * where a test can see what went on the wire and decide when it lands.
 */
export function heldTransport() {
  const calls: { records: StoredRecord[]; release: () => void; fail: () => void }[] = [];
  const transport: PeerTransport = {
    async call(_url, op, body) {
      if (op !== "records") throw new Error(`unexpected op ${op}`);
      const records = (JSON.parse(body as string) as RecordsRequest).records.map(fromTuple);
      await new Promise<void>((release, reject) => calls.push({ records, release, fail: () => reject(new Error("no answer")) }));
      return { applied: records.length, refused: 0 } as never;
    },
  };
  return { calls, transport };
}
