/**
 * A Jepsen-style checker for a history of client operations run against a cluster
 * under faults, and the final full dumps of every replica.
 *
 * Only acknowledged operations promise anything. A write that timed out, was
 * refused or met a dead node is indeterminate: it may or may not have landed, so it
 * is counted and otherwise ignored (it can only ever supersede, which is allowed).
 * For every acknowledged operation, with the version its answer carried (the ETag):
 *  1. lost: on some replica the key's final record is neither that write (same
 *     version, same contents) nor a record with a higher version;
 *  2. resurrected: an acknowledged delete whose key ends, on some replica, as a live
 *     value with a lower version than the delete's;
 *  3. divergent: the replicas' full dumps differ (counted per key).
 * A key missing from a replica after an acknowledged delete is not a loss: a purged
 * tombstone reads exactly as the delete promised. Nor is a missing key after an
 * acknowledged write that a delete may have superseded (an acknowledged delete with
 * a higher version, or an indeterminate one): tombstones every member holds are
 * purged early, so such a key is gone, not lost.
 *
 * Pure: no I/O, no clock. The fault test feeds it; test/history.test.ts feeds it
 * hand-made histories that break each rule.
 */
import type { StoredRecord } from "../../src/core/record.ts";
import { compareVersions } from "../../src/core/version.ts";

export interface Op {
  kind: "put" | "delete";
  /** Default "default" (the /items routes). */
  bucket?: string;
  key: string;
  /** The value a put sent. */
  value?: string;
  /** Which node took the request. */
  node: string;
  /** The node answered 2xx. */
  acknowledged: boolean;
  /**
   * Not acknowledged, and certainly not applied: the connection was refused, or the
   * node answered with an error that writes nothing (a 4xx, 503 CLOCK_OFFSET). Absent
   * for an operation that may have been applied (a time-out, a reset, or a `w=` that
   * was not met: 503 UNAVAILABLE and 504 leave the local write standing).
   */
  failed?: true;
  /** The version the answer carried (ETag); required when acknowledged. */
  version?: string;
  /** What came back (status and the start of the body, or the error): for a failure's report only. */
  answer?: string;
}

export interface Replica {
  node: string;
  records: StoredRecord[];
}

/** One acknowledged operation that broke a rule, with the replicas where it shows. */
export interface Violation {
  op: Op;
  /** Each such replica, with its final record for the key (absent: it has none). */
  on: { node: string; found?: StoredRecord }[];
}

export interface HistoryReport {
  acknowledgedWrites: number;
  acknowledgedDeletes: number;
  indeterminate: number;
  lost: Violation[];
  resurrected: Violation[];
  /** Keys ("bucket/key") whose records differ between replicas (missing on some included). */
  divergent: string[];
  replicas: number;
  /** One line of counts, for the test's output. */
  summary: string;
}

const keyOf = (bucket: string, key: string): string => `${bucket}/${key}`;

/** Checks the three rules; never throws on a violation (it reports them), only on a malformed history. */
export function checkHistory(history: readonly Op[], replicas: readonly Replica[]): HistoryReport {
  if (replicas.length === 0) throw new Error("checkHistory needs at least one replica");
  const finals = replicas.map((r) => indexRecords(r));
  let acknowledgedWrites = 0;
  let acknowledgedDeletes = 0;
  let indeterminate = 0;
  const lost: Violation[] = [];
  const resurrected: Violation[] = [];

  // Per key: the deletes that may have superseded a write whose key is now missing.
  const deletes = new Map<string, Op[]>();
  for (const op of history) {
    if (op.kind !== "delete") continue;
    const id = keyOf(op.bucket ?? "default", op.key);
    deletes.set(id, [...(deletes.get(id) ?? []), op]);
  }
  // An unacknowledged delete that may have been applied may have landed at any time after
  // it was sent (a node stopped with the request in its socket reads it on resume).
  const deletedAfter = (id: string, version: string): boolean =>
    (deletes.get(id) ?? []).some((d) => (d.acknowledged ? compareVersions(d.version!, version) > 0 : !d.failed));

  for (const op of history) {
    if (!op.acknowledged) {
      indeterminate++;
      continue;
    }
    if (op.version === undefined) throw new Error(`acknowledged ${op.kind} of ${op.key} on ${op.node} has no version`);
    if (op.kind === "put" && op.value === undefined) throw new Error(`put of ${op.key} on ${op.node} has no value`);
    if (op.kind === "put") acknowledgedWrites++;
    else acknowledgedDeletes++;
    const id = keyOf(op.bucket ?? "default", op.key);
    const lostOn: Violation["on"] = [];
    const resurrectedOn: Violation["on"] = [];
    replicas.forEach((replica, i) => {
      const found = finals[i]!.get(id);
      const verdict = !found && op.kind === "put" && deletedAfter(id, op.version!) ? "ok" : judge(op, found);
      if (verdict === "lost") lostOn.push({ node: replica.node, found });
      if (verdict === "resurrected") resurrectedOn.push({ node: replica.node, found });
    });
    if (lostOn.length > 0) lost.push({ op, on: lostOn });
    if (resurrectedOn.length > 0) resurrected.push({ op, on: resurrectedOn });
  }

  const divergent = divergentKeys(finals);
  const identical = divergent.length === 0;
  const summary =
    `history: ${acknowledgedWrites} acknowledged writes, ${acknowledgedDeletes} acknowledged deletes, ` +
    `${indeterminate} indeterminate, ${lost.length} lost, ${resurrected.length} resurrected, ` +
    (identical ? `${replicas.length} replicas identical` : `${divergent.length} keys divergent across ${replicas.length} replicas`);
  return { acknowledgedWrites, acknowledgedDeletes, indeterminate, lost, resurrected, divergent, replicas: replicas.length, summary };
}

/** What one replica's final record says about one acknowledged operation. */
function judge(op: Op, found: StoredRecord | undefined): "ok" | "lost" | "resurrected" {
  const wanted = op.kind === "put" ? op.value! : null;
  if (!found) return op.kind === "delete" ? "ok" : "lost";
  const order = compareVersions(found.version, op.version!);
  if (order > 0) return "ok"; // superseded
  // Same version: it must be this very write (two writers under one name can collide).
  if (order === 0) return found.value === wanted ? "ok" : "lost";
  if (op.kind === "delete" && found.value !== null) return "resurrected";
  return "lost";
}

function indexRecords(replica: Replica): Map<string, StoredRecord> {
  const out = new Map<string, StoredRecord>();
  for (const r of replica.records) {
    const id = keyOf(r.bucket, r.key);
    if (out.has(id)) throw new Error(`the dump of ${replica.node} lists ${id} twice`);
    out.set(id, r);
  }
  return out;
}

/** Keys whose record (version, value, expiry) is not the same on every replica, or not on all of them. */
function divergentKeys(finals: Map<string, StoredRecord>[]): string[] {
  const all = new Set<string>();
  for (const f of finals) for (const id of f.keys()) all.add(id);
  const out: string[] = [];
  for (const id of all) {
    const shapes = finals.map((f) => {
      const r = f.get(id);
      return r ? JSON.stringify([r.version, r.value, r.expiresAt ?? null]) : "missing";
    });
    if (shapes.some((s) => s !== shapes[0])) out.push(id);
  }
  return out.sort();
}

/** Whether every replica's dump is identical (the cheap check to poll on before running the full checker). */
export function replicasIdentical(replicas: readonly Replica[]): boolean {
  return divergentKeys(replicas.map(indexRecords)).length === 0;
}
