/**
 * Domain errors. Every failure a caller can cause has a stable string `code`;
 * the HTTP layer maps codes to statuses in one place (src/http/errors.ts) and the
 * CLI prints `message` on one line. Anything that is not a MakhzenError is a bug.
 */
export type ErrorCode =
  | "BAD_REQUEST" // malformed JSON, undecodable key, bad query
  | "VALIDATION" // a body or query that parsed but has the wrong shape
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
  | "PROTOCOL_VERSION"; // a peer speaks a protocol version this node does not

export class MakhzenError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "MakhzenError";
    this.code = code;
  }
}

export const isMakhzenError = (e: unknown): e is MakhzenError => e instanceof MakhzenError;
