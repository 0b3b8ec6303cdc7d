import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { MakhzenError } from "../../errors.ts";
import { BUCKET_PATTERN, KEY_BYTES_CEILING } from "../../core/record.ts";
import { NODE_NAME_PATTERN, VERSION_MAX_LENGTH, VERSION_PATTERN } from "../../core/version.ts";
import { GROUP_SIZE, GROUPS, HASH_HEX_PATTERN, LEAVES } from "../digest.ts";
import { PARTITION_SET_PATTERN } from "../placement.ts";
import { LEVEL_PATTERN, MAX_CONSISTENCY_TIMEOUT_MS } from "../consistency.ts";

/**
 * Every message of the peer protocol (JSON over HTTP under /internal/), as TypeBox
 * models. The peer routes validate request bodies with them and the HTTP transport
 * validates answers with them: nothing from the network is trusted, on either side.
 * Bump PROTOCOL_VERSION on any incompatible change; a node refuses requests that
 * carry another version.
 */
// 2: partitions (issue 11): a digest group per partition (256), the forward and list ops, partition sets in heartbeats.
// 3: the digest's hashes and contentHash computed without BigInt (core/fingerprint.ts): other values in the same 16 hex digits;
//    and a `records` request carries each record as a tuple (WireRecordTuple), not an object.
// 4: a forwarded write carries its sender's deadline (ForwardRequest.deadlineMs), which a node of 3 refuses as an unknown field.
export const PROTOCOL_VERSION = "4";
export const PROTOCOL_HEADER = "x-makhzen-protocol";

// The patterns and sizes are those of the modules that own them (version.ts,
// record.ts, digest.ts), so the wire takes exactly what a node produces.
const Name = Type.String({ pattern: NODE_NAME_PATTERN.source });
const Version = Type.String({ pattern: VERSION_PATTERN.source, maxLength: VERSION_MAX_LENGTH });
const Bucket = Type.String({ pattern: BUCKET_PATTERN.source });
// Limits of the receiving node are not applied to replicated records (a replica
// must take what its peers took); this bound (in characters, which a key of that
// many bytes never exceeds) only stops absurd input.
const Key = Type.String({ minLength: 1, maxLength: KEY_BYTES_CEILING });
/** A digest hash (digest.ts's hex). */
const Hash = Type.String({ pattern: HASH_HEX_PATTERN.source });

export const MemberState = Type.Union([
  Type.Literal("alive"),
  Type.Literal("suspect"),
  Type.Literal("dead"),
  Type.Literal("left"),
]);

/** A member as gossiped. `state` spreads only as `left`; alive/suspect/dead is each node's own view. */
export const WireMember = Type.Object({
  name: Name,
  url: Type.String({ minLength: 1, maxLength: 2048 }),
  state: MemberState,
  incarnation: Type.Integer({ minimum: 0 }),
});

export const WireRecord = Type.Object(
  {
    bucket: Bucket,
    key: Key,
    value: Type.Union([Type.String(), Type.Null()]),
    version: Version,
    expiresAt: Type.Optional(Type.Integer({ minimum: 0 })),
    // A binary value: `value` is canonical base64 of its bytes (core/binary.ts). Absent
    // for text, so every text record is the message it was before binary values; a
    // node that predates the field refuses a record carrying it (422), and the
    // sender's batch split drops only that record (batch.ts), not the rest.
    bytes: Type.Optional(Type.Literal(true)),
  },
  { additionalProperties: false },
);

/**
 * A record in a replication batch (`records`): `[bucket, key, value, version]`, then
 * `expiresAt` when it has one, then `true` for a binary value (with `expiresAt` or
 * null before it). The same fields as WireRecord, by position: every record a node
 * writes goes over this twice in a 3-node cluster, and against the object form it is
 * ~18% fewer bytes to write, read and parse, cheaper to serialize, and a quarter of
 * the check (a tuple's length closes it; an object is closed by listing its
 * properties). `fetch`, `scan` and `list` answers keep WireRecord. Tuples of four
 * come first in the union: a record without a TTL, the usual one, passes on the
 * first try. protocol/record-wire.ts converts.
 */
const Value = Type.Union([Type.String(), Type.Null()]);
const ExpiresAt = Type.Integer({ minimum: 0 });
export const WireRecordTuple = Type.Union([
  Type.Tuple([Bucket, Key, Value, Version]),
  Type.Tuple([Bucket, Key, Value, Version, ExpiresAt]),
  Type.Tuple([Bucket, Key, Value, Version, Type.Union([ExpiresAt, Type.Null()]), Type.Literal(true)]),
]);

/**
 * Leaves per `keys` request. With the answer's byte budget (`rest`) it bounds what
 * one request makes a peer list.
 */
export const LEAVES_PER_KEYS_REQUEST = 64;
/**
 * Most records one replication batch, `fetch` or `scan` page carries: the upper
 * bound of batchMaxRecords, so no configuration can ask a peer for a page it refuses.
 */
export const MAX_BATCH_RECORDS = 10_000;

const RecordRef = Type.Object({ bucket: Bucket, key: Key });
const Leaf = Type.Integer({ minimum: 0, maximum: LEAVES - 1 });
const Group = Type.Integer({ minimum: 0, maximum: GROUPS - 1 });

/**
 * A join: the joiner's claim and the settings every member must share, which the
 * seed checks against its own: its replication factor (REPLICAS_MISMATCH) and its
 * --max-clock-offset in ms (CLOCK_OFFSET_MISMATCH). Optional so that a join without
 * them (an older node, a membership test) is still read; such a join is not checked
 * for what it leaves out.
 */
export const JoinRequest = Type.Object({
  member: WireMember,
  replicas: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  maxClockOffsetMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 7 * 24 * 3_600_000 })),
});
/**
 * The member list (the answering node first) and, since protocol 1 grew it, the
 * answering node's wall clock in epoch ms when it answered: heartbeats and joins
 * measure clock offsets with it (see clock-offset.ts).
 */
/**
 * What a heartbeat reports for the early purge of deletes (see stability.ts), both in
 * epoch ms: `stableMs`, every current member holds every record the sender stamped
 * at or before it; `durableMs`, everything the sender had applied before it (its
 * clock) would survive its crash.
 */
const StableMs = Type.Integer({ minimum: 0 });
const DurableMs = Type.Integer({ minimum: 0 });
/**
 * What a heartbeat reports of the sender's partitions (see partition-views.ts), each
 * a set of partitions as 64 hex digits (placement.ts): `holds`, those it holds at
 * least one record of; `filling`, those it owns but does not yet hold in full.
 */
const PartitionSet = Type.String({ pattern: PARTITION_SET_PATTERN.source });

/**
 * The members that left and may come back from their data dirs, with until when (the
 * sender's grace period, stability.ts): a node that restarted without a data dir, or
 * joined since, learns them from its peers' heartbeats instead of vouching for deletes
 * they lack. Absent when there are none; ignored by a release before it.
 */
const Departed = Type.Array(Type.Object({ name: Name, untilMs: Type.Integer({ minimum: 0 }) }), { maxItems: 10_000 });
export const MembersAnswer = Type.Object({
  members: Type.Array(WireMember, { maxItems: 10_000 }),
  wallMs: Type.Optional(Type.Integer({ minimum: 0 })),
  stableMs: Type.Optional(StableMs),
  durableMs: Type.Optional(DurableMs),
  holds: Type.Optional(PartitionSet),
  filling: Type.Optional(PartitionSet),
  departed: Type.Optional(Departed),
  /** In a join's answer: the joiner's name owned nothing in the seed's list (absent or left), so it takes partitions from their old owners (rebalance.ts). */
  newcomer: Type.Optional(Type.Boolean()),
});
export const GossipRequest = Type.Object({
  from: WireMember,
  members: Type.Array(WireMember, { maxItems: 10_000 }),
  stableMs: Type.Optional(StableMs),
  durableMs: Type.Optional(DurableMs),
  holds: Type.Optional(PartitionSet),
  filling: Type.Optional(PartitionSet),
  departed: Type.Optional(Departed),
});
export const LeaveRequest = Type.Object({ name: Name, incarnation: Type.Integer({ minimum: 0 }) });
export const OkAnswer = Type.Object({ ok: Type.Boolean() });
export const RecordsRequest = Type.Object({ records: Type.Array(WireRecordTuple, { maxItems: 100_000 }) });
/**
 * `applied`: records that changed the store; `refused`: the others (older than, or
 * equal to, what the peer holds, or too new). `tooNew`: indices of the records
 * refused because their version is further ahead of the peer's clock than
 * --max-clock-offset, or older than a record it holds that is itself stamped that far
 * ahead: the peer does NOT hold them within bounds, so they must
 * not count as acknowledged.
 */
export const RecordsAnswer = Type.Object({
  applied: Type.Integer(),
  refused: Type.Integer(),
  tooNew: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 100_000 })),
});
/**
 * `syncing`: the node is in its first sync (a full copy, then a round with each
 * peer, both ways): a round against it now would only push what it is about to
 * pull, so the caller stops there.
 */
export const GroupsAnswer = Type.Object({
  groups: Type.Array(Type.String(), { minItems: GROUPS, maxItems: GROUPS }),
  syncing: Type.Optional(Type.Boolean()),
});
export const LeavesRequest = Type.Object({ groups: Type.Array(Group, { maxItems: GROUPS }) });
export const LeavesAnswer = Type.Object({ leaves: Type.Array(Type.Array(Type.String(), { minItems: GROUP_SIZE, maxItems: GROUP_SIZE })) });
export const KeysRequest = Type.Object({ leaves: Type.Array(Leaf, { maxItems: LEAVES_PER_KEYS_REQUEST }) });
/**
 * (bucket, key, version, hash) of every record in the listed leaves. `hash` is the
 * record's contentHash (record.ts) in 16 hex digits: with it a caller that holds
 * the same version with other contents knows which of the two wins the merge
 * order. Optional, so answers of nodes that predate it still parse (their equal
 * versions count as equal records). An answer that passes the peer's byte budget
 * stops after a whole leaf (at least one is always listed): `rest` is the index,
 * in the request, of the first leaf not listed.
 */
export const KeysAnswer = Type.Object({
  entries: Type.Array(
    Type.Object({ bucket: Bucket, key: Key, version: Version, hash: Type.Optional(Hash) }),
  ),
  rest: Type.Optional(Type.Integer({ minimum: 1 })),
});
/**
 * `vouches`: also say which of the keys' partitions the answerer's copy speaks for
 * (a merge read, routing.ts: the silence of a copy still filling, or of a node that
 * holds nothing of the partition, proves nothing). Optional both ways, so nodes that
 * predate it ignore it and answer without.
 */
export const FetchRequest = Type.Object({ keys: Type.Array(RecordRef, { maxItems: 100_000 }), vouches: Type.Optional(Type.Literal(true)) });
/**
 * `records` in request order. An answer that would pass the batch byte budget stops
 * early: `rest` is the index of the first key not answered, to ask again. `vouches`
 * (when asked): the partitions of the asked keys this node holds as a whole copy
 * would (Rebalancer.vouchesFor): owned and not filling, or held without being owned.
 */
export const FetchAnswer = Type.Object({
  records: Type.Array(WireRecord),
  rest: Type.Optional(Type.Integer({ minimum: 0 })),
  vouches: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 65_536 })),
});
export const ScanRequest = Type.Object({
  after: Type.Optional(RecordRef),
  limit: Type.Integer({ minimum: 1, maximum: MAX_BATCH_RECORDS }),
});
export const ScanAnswer = Type.Object({ records: Type.Array(WireRecord), next: Type.Union([RecordRef, Type.Null()]) });
/**
 * A page of this node's records for a cluster-wide listing or dump (listing.ts):
 * strictly after `after` in (bucket, key) order, only `bucket`'s when given (from
 * its first key when `after` is absent), and of those only the keys starting with
 * `prefix` (which needs `bucket`). Tombstones and expired records are included,
 * with their versions, so the asking node can keep the newest of each key.
 * `vouches`: also say which partitions the answerer's copy speaks for (as `fetch`'s).
 * `values: false`: the records without their values (`stamps`), for a walk that
 * needs only keys (RESP's KEYS, SCAN, FLUSHDB): a KEYS over 200 values of 1 MiB
 * otherwise pulled every value from every member. Optional both ways, with no new
 * protocol version: a node that predates it refuses it (422, an unknown property),
 * and the asker asks again without it and reads the `records` as stamps
 * (ClusterListing.ask: correct, only heavier), so a rolling upgrade keeps listing.
 */
export const ListRequest = Type.Object({
  bucket: Type.Optional(Bucket),
  prefix: Type.Optional(Type.String({ maxLength: KEY_BYTES_CEILING })),
  after: Type.Optional(RecordRef),
  limit: Type.Integer({ minimum: 1, maximum: MAX_BATCH_RECORDS }),
  vouches: Type.Optional(Type.Literal(true)),
  values: Type.Optional(Type.Literal(false)),
});
/** A record of a `list` answer without its value (core/record.ts KeyStamp): `deleted` for a tombstone. */
export const WireStamp = Type.Object(
  {
    bucket: Bucket,
    key: Key,
    version: Version,
    expiresAt: Type.Optional(Type.Integer({ minimum: 0 })),
    deleted: Type.Optional(Type.Literal(true)),
  },
  { additionalProperties: false },
);
/**
 * `records` in (bucket, key) order; asked with `values: false`, `stamps` in their
 * place (and `records` empty). `more`: the page stopped at `limit` or at the
 * answer's byte budget (it then holds at least one record), so this node vouches
 * only for the keys up to its last one; false: it holds nothing further.
 * `vouches`, when asked: the partitions its copy speaks for (Rebalancer.vouchesFor:
 * an old owner's whole copy during a move too), absent from an older node.
 */
export const ListAnswer = Type.Object({
  records: Type.Array(WireRecord),
  stamps: Type.Optional(Type.Array(WireStamp)),
  more: Type.Boolean(),
  vouches: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 65_536 })),
});

/**
 * A client's request for a key, sent by a node that does not serve the key to one
 * of its owners (routing.ts): a get, set or delete with every option the client
 * gave. `forwarded` marks it as having made its one hop: the owner runs it itself,
 * whatever its own view of the placement says, and never forwards it again. A TTL
 * goes as `ttl` (the owner stamps its expiry, as for a request it took itself);
 * `w`/`r` go parsed, as the service takes them.
 */
const WireConcern = Type.Object(
  {
    level: Type.Union([Type.Literal("quorum"), Type.Literal("all"), Type.Integer({ minimum: 1, maximum: 9999 })]),
    raw: Type.String({ pattern: LEVEL_PATTERN.source }),
    timeoutMs: Type.Integer({ minimum: 1, maximum: MAX_CONSISTENCY_TIMEOUT_MS }),
  },
  { additionalProperties: false },
);
export const ForwardRequest = Type.Object(
  {
    forwarded: Type.Literal(true),
    op: Type.Union([Type.Literal("get"), Type.Literal("set"), Type.Literal("delete")]),
    bucket: Bucket,
    key: Key,
    value: Type.Optional(Type.String()),
    bytes: Type.Optional(Type.Literal(true)),
    ttl: Type.Optional(Type.Number()),
    expiresAt: Type.Optional(Type.Integer({ minimum: 0 })),
    /** SetOptions.pastExpiryDeletes: an expiresAt already past on the owner's clock writes the key already expired (RESP's SET PX 1). */
    pastExpiryDeletes: Type.Optional(Type.Literal(true)),
    ifMatch: Type.Optional(Type.String({ maxLength: VERSION_MAX_LENGTH + 2 })),
    ifAbsent: Type.Optional(Type.Literal(true)),
    w: Type.Optional(WireConcern),
    r: Type.Optional(WireConcern),
    /** A write's: when its sender stops waiting for the answer (its wall clock, epoch ms). Later, the owner runs nothing (Router.serve). */
    deadlineMs: Type.Optional(Type.Integer({ minimum: 0 })),
    /** The sender's node name, with deadlineMs: whose clock the deadline is read on (its measured offset corrects it). */
    from: Type.Optional(Name),
    /**
     * A conditional write's: the sender's own record of the key, when it holds one (an
     * owner that takes writes of the key itself). The deciding owner merges it before it
     * checks the condition and stamps (Router.serve). A node of the release before
     * refuses it (422, nothing run), and is asked again without it (Router.forward).
     */
    held: Type.Optional(WireRecord),
  },
  { additionalProperties: false },
);
/**
 * The owner's answer, relayed to the client unchanged: `record` for a get (null:
 * no live value) and a set, `version` for a delete (null: nothing to delete), or
 * `error`, the owner's own code and message (a failed condition, a w= not met).
 * Errors travel inside a 200 so the relaying node sees them exactly as the owner
 * wrote them; a non-200 answer is a failure of the hop itself.
 */
export const ForwardAnswer = Type.Object({
  record: Type.Optional(Type.Union([WireRecord, Type.Null()])),
  version: Type.Optional(Type.Union([Version, Type.Null()])),
  error: Type.Optional(Type.Object({ code: Type.String({ pattern: "^[A-Z][A-Z0-9_]{0,63}$" }), message: Type.String({ maxLength: 65_536 }) })),
  /** With `error`: the write came past its deadlineMs, and nothing ran (the sender, if it still waits, tries the next owner). */
  late: Type.Optional(Type.Literal(true)),
});

/**
 * Most requests one `forwardBatch` carries. The sender also bounds a batch's keys
 * and values by its batch byte budget (forward-batch.ts).
 */
export const MAX_FORWARD_BATCH = 1000;
/**
 * The forwards one node sends one owner in one event-loop turn, in one request
 * (forward-batch.ts). The owner runs them concurrently, each as `forward` runs one,
 * and answers each in its slot, in the same order.
 */
export const ForwardBatchRequest = Type.Object({ requests: Type.Array(ForwardRequest, { minItems: 1, maxItems: MAX_FORWARD_BATCH }) }, { additionalProperties: false });
/**
 * One slot of a `forwardBatch` answer: the ForwardAnswer `forward` would have given,
 * or `failed`, what a 5xx of `forward` would have said (the request's outcome is
 * unknown: it may have run), or `resend`, for a read only: not run, because the
 * answer had reached its byte budget (a read's answer carries a value of any size);
 * the sender sends it again alone.
 */
export const ForwardSlot = Type.Object({
  ...ForwardAnswer.properties,
  failed: Type.Optional(Type.String({ maxLength: 65_536 })),
  resend: Type.Optional(Type.Literal(true)),
});
export const ForwardBatchAnswer = Type.Object({ answers: Type.Array(ForwardSlot, { maxItems: MAX_FORWARD_BATCH }) });

export type WireMember = Static<typeof WireMember>;
export type MemberState = Static<typeof MemberState>;
export type JoinRequest = Static<typeof JoinRequest>;
export type MembersAnswer = Static<typeof MembersAnswer>;
export type GossipRequest = Static<typeof GossipRequest>;
export type LeaveRequest = Static<typeof LeaveRequest>;
export type WireRecordTuple = Static<typeof WireRecordTuple>;
export type RecordsRequest = Static<typeof RecordsRequest>;
export type RecordsAnswer = Static<typeof RecordsAnswer>;
export type GroupsAnswer = Static<typeof GroupsAnswer>;
export type LeavesRequest = Static<typeof LeavesRequest>;
export type LeavesAnswer = Static<typeof LeavesAnswer>;
export type KeysRequest = Static<typeof KeysRequest>;
export type KeysAnswer = Static<typeof KeysAnswer>;
export type KeysEntry = KeysAnswer["entries"][number];
export type FetchRequest = Static<typeof FetchRequest>;
export type ScanRequest = Static<typeof ScanRequest>;
export type ScanAnswer = Static<typeof ScanAnswer>;
export type ListRequest = Static<typeof ListRequest>;
export type ListAnswer = Static<typeof ListAnswer>;
export type RecordRef = Static<typeof RecordRef>;
export type ForwardRequest = Static<typeof ForwardRequest>;
export type ForwardAnswer = Static<typeof ForwardAnswer>;
export type ForwardBatchRequest = Static<typeof ForwardBatchRequest>;
export type ForwardSlot = Static<typeof ForwardSlot>;
export type ForwardBatchAnswer = Static<typeof ForwardBatchAnswer>;

/** A compiled checker: returns the value typed, or throws VALIDATION naming the first problem. */
export function checker<T extends TSchema>(schema: T, what: string): (value: unknown) => Static<T> {
  const compiled = TypeCompiler.Compile(schema);
  return (value) => {
    if (compiled.Check(value)) return value as Static<T>;
    const first = compiled.Errors(value).First();
    const where = first?.path ? first.path.replace(/^\//, "").replaceAll("/", ".") : "body";
    throw new MakhzenError("VALIDATION", `${what}: ${where || "body"}: ${first?.message ?? "is invalid"}`);
  };
}
