import { Type, type Static } from "@sinclair/typebox";
import * as P from "./messages.ts";
import { JOIN_REFUSALS } from "../../errors.ts";

/**
 * The peer protocol as a table: one entry per operation, with the TypeBox models of
 * its request and its answer. The Elysia peer routes (src/http/peer.ts), the HTTP
 * transport and the in-memory transport are all generated from it, so the three
 * cannot drift apart.
 */
export const PEER_OPS = {
  join: { request: P.JoinRequest, answer: P.MembersAnswer },
  gossip: { request: P.GossipRequest, answer: P.MembersAnswer },
  leave: { request: P.LeaveRequest, answer: P.OkAnswer },
  /** The member list, read only: what a node checks its name against after a pause (see NameClaim). */
  members: { request: Type.Object({}), answer: P.MembersAnswer },
  records: { request: P.RecordsRequest, answer: P.RecordsAnswer },
  groups: { request: Type.Object({}), answer: P.GroupsAnswer },
  leaves: { request: P.LeavesRequest, answer: P.LeavesAnswer },
  keys: { request: P.KeysRequest, answer: P.KeysAnswer },
  fetch: { request: P.FetchRequest, answer: P.FetchAnswer },
  scan: { request: P.ScanRequest, answer: P.ScanAnswer },
  /** A page of this node's records, tombstones included, for a listing or dump of the whole cluster (listing.ts). */
  list: { request: P.ListRequest, answer: P.ListAnswer },
  /** A client's get/set/delete of a key this node does not serve, run by an owner (routing.ts). */
  forward: { request: P.ForwardRequest, answer: P.ForwardAnswer },
  /** The forwards of one event-loop turn to one owner, each answered in its slot (forward-batch.ts). */
  forwardBatch: { request: P.ForwardBatchRequest, answer: P.ForwardBatchAnswer },
} as const;

export type PeerOp = keyof typeof PEER_OPS;
export type PeerRequest<O extends PeerOp> = Static<(typeof PEER_OPS)[O]["request"]>;
export type PeerAnswer<O extends PeerOp> = Static<(typeof PEER_OPS)[O]["answer"]>;

/** The serving side of the peer protocol: what a node answers. Never sees HTTP. */
export type PeerService = { [O in PeerOp]: (req: PeerRequest<O>) => PeerAnswer<O> | Promise<PeerAnswer<O>> };

/**
 * The calling side. `body` may be a ready JSON string: replication serializes each
 * record once and splices the same strings into the batches of every peer.
 * Contract: resolves with a validated answer or rejects (timeout, refused, bad
 * answer, `signal` aborted: a PeerError with code ABORTED); never hangs past
 * `timeoutMs` (a PeerError with status 0 and code UNREACHABLE), nor past the abort.
 * Every transport passes test/cluster/protocol/transport-contract.test.ts.
 */
export interface PeerTransport {
  call<O extends PeerOp>(url: string, op: O, body: PeerRequest<O> | string, timeoutMs: number, signal?: AbortSignal): Promise<PeerAnswer<O>>;
}

/** A peer answered with an error envelope (status > 0) or not at all (status 0). */
export class PeerError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "PeerError";
  }
}

/**
 * The code of a PeerError for a call that never left this node (the peer's port
 * refused the connection): unlike silence, the peer surely ran nothing.
 */
export const NOT_SENT = "NOT_SENT";

/** The PeerError of a call that got no answer within `timeoutMs`: the same from every transport. */
export const noAnswer = (what: string, timeoutMs: number): PeerError => new PeerError(0, "UNREACHABLE", `${what}: no answer within ${timeoutMs} ms`);

/** The PeerError of a call whose `signal` aborted it. */
export const aborted = (what: string): PeerError => new PeerError(0, "ABORTED", `${what}: aborted`);

/**
 * Domain codes a peer may answer that the caller must see as such (a MakhzenError,
 * not a PeerError): a join refused for a taken name, another --replicas or another
 * --max-clock-offset (JOIN_REFUSALS), a protocol version mismatch.
 */
export const PASS_THROUGH: ReadonlySet<string> = new Set([...JOIN_REFUSALS, "PROTOCOL_VERSION"]);

const requestCheckers = Object.fromEntries(
  Object.entries(PEER_OPS).map(([op, d]) => [op, P.checker(d.request, `peer ${op} request`)]),
) as { [O in PeerOp]: (v: unknown) => PeerRequest<O> };
const answerCheckers = Object.fromEntries(
  Object.entries(PEER_OPS).map(([op, d]) => [op, P.checker(d.answer, `peer ${op} answer`)]),
) as { [O in PeerOp]: (v: unknown) => PeerAnswer<O> };

/** Validates a request body for `op`; throws VALIDATION. */
export const checkRequest = <O extends PeerOp>(op: O, body: unknown): PeerRequest<O> => requestCheckers[op](body);

/** Validates an answer to `op`; throws VALIDATION. */
export const checkAnswer = <O extends PeerOp>(op: O, body: unknown): PeerAnswer<O> => answerCheckers[op](body);
