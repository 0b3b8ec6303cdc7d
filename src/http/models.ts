import { t } from "elysia";
import { MAX_LIST_LIMIT, MAX_TTL_SECONDS } from "../core/items.ts";

/**
 * Every TypeBox model of the public API, in one place. Bodies and queries are
 * validated against these; response models document the API in /openapi (the hot
 * routes answer prebuilt Responses, so responses are not re-validated at run time).
 */

export const ItemBody = t.Object(
  {
    value: t.String({ description: "The value, up to --max-value-bytes of UTF-8; with `encoding`, the base64 of up to --max-value-bytes bytes" }),
    encoding: t.Optional(
      t.Literal("base64", { description: "`value` is base64 (RFC 4648, padded) of raw bytes: a binary value", error: 'encoding must be "base64"' }),
    ),
    ttl: t.Optional(
      t.Number({
        exclusiveMinimum: 0,
        maximum: MAX_TTL_SECONDS,
        description: "Seconds until the item expires",
        error: `ttl must be a number of seconds > 0 and <= ${MAX_TTL_SECONDS}`,
      }),
    ),
  },
  { additionalProperties: false },
);

export const Item = t.Object({
  key: t.String(),
  value: t.String(),
  version: t.String({ description: "HLC version; also the ETag" }),
  expiresAt: t.Optional(t.Number({ description: "Expiry, epoch ms" })),
  encoding: t.Optional(t.Literal("base64", { description: "Present only for a value whose bytes are not UTF-8: `value` is their base64" })),
});

export const ListQuery = t.Object({
  prefix: t.Optional(t.String()),
  limit: t.Optional(
    t.Numeric({ minimum: 1, maximum: MAX_LIST_LIMIT, multipleOf: 1, error: `limit must be an integer from 1 to ${MAX_LIST_LIMIT}` }),
  ),
  cursor: t.Optional(t.String({ description: "The cursor of the previous page" })),
});

export const ItemList = t.Object({
  items: t.Array(Item),
  cursor: t.Union([t.String(), t.Null()], { description: "Pass back to get the next page; null at the end" }),
  incomplete: t.Optional(
    t.Object(
      { partitions: t.Integer({ minimum: 1 }), members: t.Array(t.String()) },
      { description: "Only in a partitioned cluster: this many partitions had no reachable owner or holder (`members`: their owners), so their keys are missing from the page" },
    ),
  ),
});

export const BucketList = t.Object({
  buckets: t.Array(t.Object({ name: t.String(), keys: t.Number(), bytes: t.Number() })),
});

export const ErrorEnvelope = t.Object({
  error: t.Object({ code: t.String(), message: t.String() }),
});

export const Health = t.Object({ status: t.String() });

export const BucketParams = t.Object({ bucket: t.String() });

const MemberStateModel = t.Union([t.Literal("alive"), t.Literal("suspect"), t.Literal("dead"), t.Literal("left")]);
const Names = t.Array(t.String(), { description: "Member names, heaviest first (the first live one takes the key's requests)" });

/** The body of GET /cluster/placement. */
export const Placement = t.Object({
  partition: t.Integer({ minimum: 0, maximum: 255, description: "The key's partition: its CRC16 slot (honouring {hash tags}) / 64" }),
  owners: Names,
});

/** The body of DELETE /cluster/members/{name}: who was forgotten, and the partitions that changed owners. */
export const Forgotten = t.Object({
  member: t.Object({
    name: t.String(),
    url: t.String(),
    state: t.Literal("left"),
    // dead, or left when it had been forgotten already.
    was: MemberStateModel,
  }),
  partitions: t.Array(t.Object({ partition: t.Integer({ minimum: 0, maximum: 255 }), owners: Names, before: Names }), {
    description: "Every partition whose owners changed, ascending; none when nothing changed",
  }),
});

/** The body of GET /cluster (the route answers a prebuilt Response). */
export const ClusterStatus = t.Object({
  self: t.String({ description: "The name of the node that answered" }),
  settled: t.Boolean({
    description: "Every partition this node holds it owns, every one it owns it holds in full, and no hand-off is pending (see docs/replication.md)",
  }),
  clock: t.Object(
    {
      offsetMs: t.Number({ description: "This node's clock minus the cluster's median clock, in ms (0 alone)" }),
      fenced: t.Boolean({ description: "Whether it refuses client writes and is not ready (503 CLOCK_OFFSET)" }),
      maxOffsetMs: t.Number({ description: "--max-clock-offset, in ms" }),
      reason: t.Optional(t.Union([t.Literal("offset"), t.Literal("stamps"), t.Literal("unmeasured"), t.Literal("stalled")], { description: "Why it is fenced" })),
    },
    { description: "This node's clock against the cluster's median" },
  ),
  replicas: t.Integer({ description: "Owners of each key (--replicas)" }),
  partitions: t.Integer({ description: "Partitions the keyspace is split into (256)" }),
  members: t.Array(
    t.Object({
      name: t.String(),
      url: t.String(),
      state: MemberStateModel,
      partitions: t.Integer({ description: "Partitions it owns under this node's placement (0 once it left)" }),
      queue: t.Number({ description: "Records the member has not acknowledged yet (queued or in flight)" }),
      lastSeenMs: t.Number({ description: "Milliseconds since this node last heard from the member" }),
      clockOffsetMs: t.Union([t.Number(), t.Null()], {
        description: "The member's clock minus this node's, in ms, measured by heartbeats; null before the first",
      }),
      held: t.Optional(t.Union([t.Number(), t.Null()], { description: "Partitions the member holds records of, as it last said; null before it said" })),
      filling: t.Optional(t.Union([t.Number(), t.Null()], { description: "Partitions the member owns but is still filling, as it last said; null before it said" })),
    }),
  ),
  refusals: t.Optional(
    t.Object(
      {
        clientUnauthorized: t.Number({ description: "Client requests answered 401 (no or wrong token)" }),
        clientForbidden: t.Number({ description: "Client requests answered 403 (a read token on a write route)" }),
        peerRequests: t.Number({ description: "Peer requests refused (unsigned, other secret, stale or replayed)" }),
        peerAnswers: t.Number({ description: "Peer answers refused (a peer that could not prove the cluster secret)" }),
      },
      { description: "Requests this node refused since it started" },
    ),
  ),
});

/** The body of POST /load. */
export const LoadCounts = t.Object({
  loaded: t.Number({ description: "Records merged: they were newer than what this node held" }),
  skipped: t.Number({ description: "Records this node already held, or held newer" }),
});

/** The body of GET /: where to go from here. */
export const Index = t.Object({
  name: t.Literal("makhzen"),
  version: t.String({ description: "The version of makhzen this node runs" }),
  node: t.String({ description: "The name of the node that answered" }),
  links: t.Record(t.String(), t.String(), {
    description: "Routes by name (openapi, healthz, readyz, cluster, buckets, items, item, bucketItems, bucketItem); {key} and {bucket} are percent-encoded path segments",
  }),
});
