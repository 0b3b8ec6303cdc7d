/**
 * Domain errors. Every failure a caller can cause has a stable string `code`;
 * the HTTP layer maps codes to statuses in one place (src/http/errors.ts) and the
 * CLI prints `message` on one line. Anything that is not a MakhzenError is a bug.
 */
export type ErrorCode =
  | "BAD_REQUEST" // malformed JSON, undecodable key, bad query
  | "VALIDATION" // a body or query that parsed but has the wrong shape
  | "INVALID_UNICODE" // a key or value with a lone surrogate: it has no UTF-8 form (see text.ts)
  | "INVALID_KEY"
  | "INVALID_BUCKET"
  | "KEY_TOO_LARGE"
  | "VALUE_TOO_LARGE"
  | "BODY_TOO_LARGE"
  | "NOT_FOUND"
  | "PRECONDITION_FAILED"
  | "OUT_OF_MEMORY"
  | "INVALID_CONFIG"
  | "DATA_DIR" // the data dir cannot be used: the node refuses to start
  | "UNAVAILABLE" // not enough replicas answered or are known (w=/r=), or not ready
  | "REPLICATION_TIMEOUT" // w=/r= waited its timeout; the local write stands
  | "NAME_TAKEN" // a joining node's name is held by another live URL
  | "CLOCK_OFFSET" // this node's clock is too far from the cluster's: it refuses writes (see clock-guard.ts)
  | "PROTOCOL_VERSION" // a peer speaks a protocol version this node does not
  | "UNAUTHORIZED" // no client token, or one that matches neither --token nor --read-token
  | "FORBIDDEN" // a read token on a write route
  | "CLUSTER_AUTH" // a peer request or answer without a valid signature under the cluster secret
  | "REQUEST_TIMEOUT" // a request body did not arrive within the body timeout
  | "PROTECTED_MODE"; // the node refuses to listen beyond loopback without credentials (see security.ts)

export class MakhzenError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "MakhzenError";
    this.code = code;
  }
}

export const isMakhzenError = (e: unknown): e is MakhzenError => e instanceof MakhzenError;
