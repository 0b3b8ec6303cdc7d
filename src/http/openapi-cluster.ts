import { BUCKET_NAME_RULE } from "../core/record.ts";
import { jsonContent, type Json, type Operation } from "./openapi-parts.ts";

/**
 * The cluster's operations in the OpenAPI document (openapi.ts), present when the
 * node has a cluster: the members (GET /cluster), where a key lives (GET
 * /cluster/placement) and an operator's forget (DELETE /cluster/members/{name}),
 * served by peer.ts and cluster-routes.ts.
 */
export function clusterOperations(): Operation[] {
  return [
    {
      method: "get",
      path: "/cluster",
      operationId: "getCluster",
      summary: "Cluster members as this node sees them, with the partitions each owns",
      tag: "cluster",
      responses: { 200: { description: "This node, its clock, --replicas and every member", content: jsonContent("ClusterStatus") } },
      errors: ["VALIDATION"], // a query parameter: it takes none
    },
    {
      method: "get",
      path: "/cluster/placement",
      operationId: "getPlacement",
      summary: "Where a key lives: its partition and that partition's owners, heaviest first",
      description: "Every node computes the same owners from the same member list (rendezvous hashing); dead and suspect members keep theirs until they leave, are reaped or forgotten.",
      tag: "cluster",
      parameters: ["placementKey", "placementBucket"],
      responses: { 200: { description: "The key's partition and owners", content: jsonContent("Placement") } },
      errors: ["BAD_REQUEST", "INVALID_BUCKET"],
    },
    {
      method: "delete",
      path: "/cluster/members/{name}",
      operationId: "forgetMember",
      summary: "Forget a dead member for good (Cassandra's removenode): its partitions get new owners at once",
      description:
        "Only a member this node sees as dead (or already left) may be forgotten: an alive or suspect one, and this node itself, are refused (409 `MEMBER_ALIVE`). Records whose only copies were on that member are lost; see docs/operations.md.",
      tag: "cluster",
      parameters: ["memberName"],
      responses: { 200: { description: "Forgotten; the partitions whose owners changed", content: jsonContent("Forgotten") } },
      errors: ["NOT_FOUND", "MEMBER_ALIVE", "VALIDATION"], // VALIDATION: a query parameter
    },
  ];
}

/** The parameters of the cluster's operations (components.parameters). */
export function clusterParameters(): Record<string, Json> {
  return {
    placementKey: {
      name: "key",
      in: "query",
      required: true,
      schema: { type: "string", minLength: 1 },
      description: "The key, any UTF-8 of 1 to --max-key-bytes (1024 by default) bytes; a `{tag}` in it places it by the tag alone, as in Redis Cluster",
    },
    placementBucket: {
      name: "bucket",
      in: "query",
      required: false,
      schema: { type: "string", pattern: `^${BUCKET_NAME_RULE}$` },
      description: "The key's bucket; checked, but it plays no part in placement",
    },
    memberName: {
      name: "name",
      in: "path",
      required: true,
      schema: { type: "string", minLength: 1 },
      description: "The member's name (--name); a name no member has is 404",
    },
  };
}
