import { Elysia } from "elysia";
import type { Cluster } from "../cluster/cluster.ts";
import { HTTP_STATUS, MakhzenError, isMakhzenError } from "../errors.ts";
import { PROTOCOL_HEADER, PROTOCOL_VERSION } from "../cluster/protocol/messages.ts";
import { PEER_OPS, checkRequest, type PeerOp } from "../cluster/protocol/peer-ops.ts";
import type { PeerGuard } from "../cluster/protocol/signing.ts";
import type { Refusals } from "../ops/security.ts";
import { parseJsonText, readBodyText } from "./body.ts";
import { bodyError, describeValidation, domainErrorResponse, errorBody, errorResponse, MadeAnswer } from "./errors.ts";
import { QUERY, queryRule } from "./query.ts";
import { silentLogger, type Logger } from "../ops/log.ts";

export interface PeerRoutesDeps {
  cluster: Cluster;
  /** Largest peer request body, in bytes. */
  maxBodyBytes: number;
  /** How long a peer request body may take to arrive, in ms. */
  bodyTimeoutMs?: number;
  /** With a cluster secret: every request is checked before its body is parsed, every answer signed. */
  guard?: PeerGuard;
  /** Shown in GET /cluster beside the members. */
  refusals?: Refusals;
  remoteAddress?: (request: Request) => string | undefined;
  /** Where unexpected errors are reported. Default: silent. */
  logger?: Logger;
}

const JSON_HEADERS = { "content-type": "application/json" };

/**
 * Ops whose body parseFor's compiled check is all the validation: Elysia's second
 * pass over the same model is skipped. These are the ops that carry records or
 * client requests in bulk (a replication batch is ~150 records under load, and each
 * pass is ~0.1 µs a record on every replica), and their services read only what the
 * models check: each record and forwarded request is a closed object
 * (additionalProperties: false), and of the envelope only `records` or `requests`
 * is read, so what Elysia's normalizing would strip is never looked at.
 */
const CHECKED_ONCE: ReadonlySet<PeerOp> = new Set(["records", "forward", "forwardBatch"]);
const json = (body: unknown): Response => new Response(JSON.stringify(body), { headers: JSON_HEADERS });

/** How many largest peer bodies may be read at once before their signatures are checked. */
const UNVERIFIED_BODIES = 8;

/**
 * The bytes of peer request bodies being read before their signature can be checked
 * (it covers the body). Headers that only look signed (a well-formed signature, the
 * current time, a new nonce) cost a stranger nothing: each such request had a body
 * of up to the peer limit (~6 MiB) read and held for --body-timeout, with no bound on
 * how many. Past the budget a request is refused at once (503; a peer's sender
 * retries), counted at its Content-Length, or the limit when it has none.
 */
function unverifiedBodies(budget: number, maxBody: number) {
  let held = 0;
  return {
    take(contentLength: string | null): number {
      const declared = contentLength !== null && /^\d+$/.test(contentLength) ? Number(contentLength) : maxBody;
      const bytes = Math.min(declared, maxBody);
      if (held + bytes > budget) throw new MakhzenError("UNAVAILABLE", "too many peer requests are being read at once; send it again");
      held += bytes;
      return bytes;
    },
    give(bytes: number): void {
      held -= bytes;
    },
  };
}

/**
 * The peer API under /internal/ (one POST route per operation of PEER_OPS, bodies
 * validated with the protocol's TypeBox models) and the public GET /cluster. The
 * handlers only translate; the cluster does the work.
 */
export function peerRoutes(deps: PeerRoutesDeps) {
  const { cluster, guard } = deps;
  /**
   * Under a cluster secret the signature covers the raw body, so it is checked on
   * the text before anything parses it, and an unsigned request is refused before
   * its body is even read. The body is then checked against the operation's model
   * here, with the protocol's compiled checker, before Elysia's validation sees it:
   * Elysia's validation error renders the value it refused, which for a deeply
   * nested body blocked the event loop for seconds and ended in a 500.
   */
  /*
   * The protocol version is checked before anything that depends on it: a node of
   * another release sees 400 PROTOCOL_VERSION, not a 422 for a body shaped as its
   * release shapes it (which its sender takes as "refused for good" and drops).
   * Without a secret that is the first check, before the body is read. Under one it
   * comes right after the signature is proved: a request that proves nothing learns
   * nothing more than before (not even the version this node speaks), and the peer
   * that proved it gets the error signed (MadeAnswer), as a peer trusts no unsigned one.
   */
  const parseFor =
    (op: PeerOp, path: string) =>
    async ({ request }: { request: Request }): Promise<unknown> => {
      if (!guard) {
        checkVersion(request.headers);
        return checkRequest(op, parseJsonText(await readBodyText(request, deps.maxBodyBytes, deps.bodyTimeoutMs)));
      }
      const from = deps.remoteAddress?.(request);
      guard.checkSigned(path, request.headers, from);
      const held = unverified.take(request.headers.get("content-length"));
      try {
        const text = await readBodyText(request, deps.maxBodyBytes, deps.bodyTimeoutMs);
        guard.checkRequest(path, text, request.headers, from);
        try {
          checkVersion(request.headers);
          const body = checkRequest(op, parseJsonText(text));
          return CHECKED_ONCE.has(op) ? body : closedRequest(op, body);
        } catch (e) {
          // It proved the secret: its refusal (another version, a body this release does not take) is
          // signed too. Unsigned, the asker took a 422 for a stranger's answer: logged and counted as an
          // auth refusal, with the refusal's own words lost (a field a release before refuses, say).
          if (!isMakhzenError(e)) throw e;
          throw new MadeAnswer(signedError(e, request, path));
        }
      } finally {
        unverified.give(held);
      }
    };
  const unverified = unverifiedBodies(UNVERIFIED_BODIES * deps.maxBodyBytes, deps.maxBodyBytes);
  /** The answer, signed under a cluster secret and bound to the request it answers. */
  const answer = (path: string, request: Request, body: unknown): Response => {
    const text = JSON.stringify(body);
    if (!guard) return new Response(text, { headers: JSON_HEADERS });
    return new Response(text, { headers: { ...JSON_HEADERS, ...guard.signAnswer(path, request.headers, text) } });
  };
  /** An error answer signed for the request it answers (one that proved the secret). */
  const signedError = (e: MakhzenError, request: Request, path: string): Response => {
    const text = errorBody(e.code, e.message);
    return new Response(text, { status: HTTP_STATUS[e.code] ?? 400, headers: { ...JSON_HEADERS, ...guard!.signAnswer(path, request.headers, text) } });
  };
  const app = new Elysia({ name: "makhzen-peer" })
    // Inside createApp the app's own onError answers first (Elysia runs the parent's); this one serves the routes alone.
    .onError(({ code, error }) => {
      if (isMakhzenError(error)) return domainErrorResponse(error);
      if (code === "VALIDATION") return errorResponse(422, "VALIDATION", describeValidation(error));
      if (code === "PARSE" && (isMakhzenError(error.cause) || error.cause instanceof MadeAnswer)) return bodyError(error.cause);
      if (code === "PARSE") return errorResponse(400, "BAD_REQUEST", "request body could not be parsed");
      (deps.logger ?? silentLogger).error("unexpected error in the peer API", { error, stack: (error as Error)?.stack });
      return errorResponse(500, "INTERNAL", "internal error; see the node's log");
    })
    // Its body is the ClusterStatus model (documented in openapi.ts).
    .get("/cluster", () => json(deps.refusals ? { ...cluster.status(), refusals: deps.refusals } : cluster.status()), { transform: queryRule(QUERY.cluster) });

  // Elysia registers routes on the instance itself; the loop needs no reassignment.
  for (const op of Object.keys(PEER_OPS) as PeerOp[]) {
    const path = `/internal/${op}`;
    app.post(
      path,
      async ({ body, request }) => {
        try {
          return answer(path, request, await cluster.service[op](body as never));
        } catch (e) {
          // Under a cluster secret a peer trusts no unsigned answer, errors included (a
          // forged NAME_TAKEN must not stop a join), so the errors of a request that
          // proved the secret (the body parser checked it) are signed like answers.
          // Errors before that point (a refused signature, a bad body) stay unsigned.
          if (!guard || !isMakhzenError(e)) throw e;
          return signedError(e, request, path);
        }
      },
      // Elysia validates again (and normalizes as before); it only ever sees a body that passed parseFor.
      // Not for the ops of CHECKED_ONCE (see there).
      CHECKED_ONCE.has(op) ? { parse: parseFor(op, path) } : { parse: parseFor(op, path), body: PEER_OPS[op].request },
    );
  }
  return app;
}

/**
 * Refuses a property the op's request does not name, in Elysia's words, as its
 * second pass over the body would (the ops outside CHECKED_ONCE): here, after the
 * signature is proved, the refusal is signed. Elysia's was not, and a field a later
 * release adds (`values` in `list`) came back as an unsigned 422, which the asker
 * logged and counted as an auth refusal. Top-level properties: the new fields are.
 */
function closedRequest<T>(op: PeerOp, body: T): T {
  const named = (PEER_OPS[op].request as { properties?: Record<string, unknown> }).properties;
  if (named === undefined || body === null || typeof body !== "object") return body;
  for (const key of Object.keys(body)) {
    if (!Object.hasOwn(named, key)) throw new MakhzenError("VALIDATION", `${key}: Unexpected property`);
  }
  return body;
}

/** Throws PROTOCOL_VERSION unless the request says it speaks this node's peer protocol. */
function checkVersion(headers: Headers): void {
  const version = headers.get(PROTOCOL_HEADER);
  if (version === PROTOCOL_VERSION) return;
  throw new MakhzenError(
    "PROTOCOL_VERSION",
    version === null
      ? `peer requests need the ${PROTOCOL_HEADER} header (this node speaks version ${PROTOCOL_VERSION})`
      : `peer protocol version "${version}" is not supported; this node speaks ${PROTOCOL_VERSION}`,
  );
}
