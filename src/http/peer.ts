import { Elysia, t } from "elysia";
import type { Cluster } from "../cluster.ts";
import { MakhzenError, isMakhzenError } from "../errors.ts";
import { PROTOCOL_HEADER, PROTOCOL_VERSION } from "../peer-protocol.ts";
import { PEER_OPS, type PeerOp } from "../transport.ts";
import { readJsonBody } from "./body.ts";
import { describeValidation, domainErrorResponse, errorResponse } from "./errors.ts";

export interface PeerRoutesDeps {
  cluster: Cluster;
  /** Largest peer request body, in bytes. */
  maxBodyBytes: number;
}

/** The body of GET /cluster, for /openapi (the route answers a prebuilt Response). */
const ClusterStatus = t.Object({
  self: t.String({ description: "The name of the node that answered" }),
  members: t.Array(
    t.Object({
      name: t.String(),
      url: t.String(),
      state: t.Union([t.Literal("alive"), t.Literal("suspect"), t.Literal("dead"), t.Literal("left")]),
      queue: t.Number({ description: "Records the member has not acknowledged yet (queued or in flight)" }),
      lastSeenMs: t.Number({ description: "Milliseconds since this node last heard from the member" }),
    }),
  ),
});

const json = (body: unknown): Response =>
  new Response(JSON.stringify(body), { headers: { "content-type": "application/json" } });

/**
 * The peer API under /internal/ (one POST route per operation of PEER_OPS, bodies
 * validated with the protocol's TypeBox models) and the public GET /cluster. The
 * handlers only translate; the cluster does the work.
 */
export function peerRoutes(deps: PeerRoutesDeps) {
  const { cluster } = deps;
  const parse = ({ request }: { request: Request }) => readJsonBody(request, deps.maxBodyBytes);
  const app = new Elysia({ name: "makhzen-peer" })
    .onError(({ code, error }) => {
      if (isMakhzenError(error)) return domainErrorResponse(error);
      if (code === "VALIDATION") return errorResponse(422, "VALIDATION", describeValidation(error));
      if (code === "PARSE" && isMakhzenError(error.cause)) return domainErrorResponse(error.cause);
      if (code === "PARSE") return errorResponse(400, "BAD_REQUEST", "request body could not be parsed");
      console.error("[http] unexpected error in peer API:", error);
      return errorResponse(500, "INTERNAL", "internal error; see the node's log");
    })
    .get("/cluster", () => json(cluster.status()), {
      response: ClusterStatus,
      detail: { summary: "Cluster members as this node sees them", tags: ["cluster"] },
    });

  // Elysia registers routes on the instance itself; the loop needs no reassignment.
  for (const op of Object.keys(PEER_OPS) as PeerOp[]) {
    app.post(
      `/internal/${op}`,
      async ({ body, request }) => {
        const version = request.headers.get(PROTOCOL_HEADER);
        if (version !== PROTOCOL_VERSION) {
          throw new MakhzenError(
            "PROTOCOL_VERSION",
            version === null
              ? `peer requests need the ${PROTOCOL_HEADER} header (this node speaks version ${PROTOCOL_VERSION})`
              : `peer protocol version "${version}" is not supported; this node speaks ${PROTOCOL_VERSION}`,
          );
        }
        return json(await cluster.service[op](body as never));
      },
      { parse, body: PEER_OPS[op].request, detail: { hide: true } },
    );
  }
  return app;
}
