import { Elysia } from "elysia";
import type { Cluster } from "../cluster/cluster.ts";
import { partitionOf } from "../cluster/placement.ts";
import { BUCKET_NAME_RULE, BUCKET_PATTERN } from "../core/record.ts";
import { MakhzenError } from "../errors.ts";
import { checkQuery, QUERY, queryRule } from "./query.ts";

export interface ClusterRoutesDeps {
  cluster: Cluster;
  /** --max-key-bytes: a key no node could store has no placement worth asking for. */
  maxKeyBytes: number;
}

const JSON_HEADERS = { "content-type": "application/json" };
const json = (body: unknown): Response => new Response(JSON.stringify(body), { headers: JSON_HEADERS });

/**
 * The operator's cluster routes beside GET /cluster (peer.ts): where a key lives, and
 * forgetting a dead member. Handlers only translate; placement.ts and forget.ts
 * decide. Both sit behind the client token like every route (auth.ts): the DELETE is
 * a write, so a read token is refused it (403).
 */
export function clusterRoutes(deps: ClusterRoutesDeps) {
  const { cluster } = deps;
  return (
    new Elysia({ name: "makhzen-cluster" })
      // `{"partition", "owners"}`: the owners as every node computes them from its member list, heaviest first.
      .get("/cluster/placement", ({ request }) => {
        const key = placementQuery(new URL(request.url).searchParams, deps.maxKeyBytes);
        const partition = partitionOf(key);
        return json({ partition, owners: cluster.placement.owners(partition) });
      })
      // A member that no longer answers, removed for good (forget.ts); the answer says what moved.
      .delete(
        "/cluster/members/:name",
        ({ params }) => {
          // Elysia decodes the segment, and answers null for one that does not decode (`%ZZ`): no member has that name.
          const name = params.name ?? "";
          return json(cluster.forget(name));
        },
        { transform: queryRule(QUERY.forget) },
      )
  );
}

/**
 * The key of GET /cluster/placement, checked: `key` once, non-empty and no longer
 * than --max-key-bytes; `bucket`, if given, a bucket name (it plays no part in
 * placement, but a name no bucket can have is a mistake worth saying). Any other
 * parameter is refused rather than ignored. Throws BAD_REQUEST or INVALID_BUCKET (400).
 */
export function placementQuery(q: URLSearchParams, maxKeyBytes: number): string {
  // An unknown parameter is 400 here, as it always was (the other routes' is 422: query.ts).
  checkQuery(q, QUERY.placement);
  const key = q.get("key");
  if (key === null || key === "") throw new MakhzenError("BAD_REQUEST", "GET /cluster/placement needs a key: ?key=K");
  // As for a key in an items path: bytes that are not UTF-8 arrive as U+FFFD, so a key holding it is ambiguous.
  if (key.includes("\uFFFD")) {
    throw new MakhzenError("BAD_REQUEST", "key holds U+FFFD, which is also what bytes that are not UTF-8 arrive as: refused, as GET /items/:key refuses it");
  }
  // Refused everywhere (a URL path cannot name them), so no placement either.
  if (key === "." || key === "..") throw new MakhzenError("INVALID_KEY", `the key "${key}" cannot be stored: a URL path cannot name it`);
  const bytes = Buffer.byteLength(key, "utf8");
  if (bytes > maxKeyBytes) throw new MakhzenError("BAD_REQUEST", `key is ${bytes} bytes, longer than --max-key-bytes (${maxKeyBytes})`);
  const bucket = q.get("bucket");
  if (bucket !== null && !BUCKET_PATTERN.test(bucket)) throw new MakhzenError("INVALID_BUCKET", `bucket name must match ${BUCKET_NAME_RULE}`);
  return key;
}
