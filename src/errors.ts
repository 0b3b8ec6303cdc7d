/**
 * Domain errors. Every failure a caller can cause has a stable string `code`;
 * HTTP_STATUS below maps codes to statuses in one place, src/http/errors.ts renders
 * them as the JSON envelope, and the CLI prints `message` on one line. Anything
 * that is not a MakhzenError is a bug.
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
  | "PERSISTENCE_FAILED" // the data dir's commits fail (a full disk): writes are refused until one succeeds (Redis's MISCONF)
  | "INVALID_CONFIG"
  | "DATA_DIR" // the data dir cannot be used: the node refuses to start
  | "UNAVAILABLE" // not enough replicas answered or are known (w=/r=), or not ready
  | "REPLICATION_TIMEOUT" // w=/r= waited its timeout; the local write stands
  | "OUTCOME_UNKNOWN" // a forwarded conditional write whose owner did not answer: it may or may not have been applied (not TRYAGAIN: clients retry that)
  | "NAME_TAKEN" // a joining node's name is held by another live URL
  | "REPLICAS_MISMATCH" // a joining node's --replicas differs from the cluster's
  | "CLOCK_OFFSET_MISMATCH" // a joining node's --max-clock-offset differs from the cluster's
  | "SCHEME_MISMATCH" // a joining node speaks http where the cluster speaks https (TLS), or the other way round
  | "ADDRESS_TAKEN" // a joining node advertises the URL of another member that still answers
  | "MEMBER_ALIVE" // a forget of a member that still answers (or of the node itself)
  | "NOT_LOCAL" // embedded bucket(): a key this node does not serve in a partitioned cluster (use items())
  | "CLOCK_OFFSET" // this node's clock is too far from the cluster's: it refuses writes (see clock-guard.ts)
  | "LEAVING" // this node is leaving the cluster: it takes no write (it could not hand it off); another owner may
  | "PROTOCOL_VERSION" // a peer speaks a protocol version this node does not
  | "UNAUTHORIZED" // no client token, or one that matches neither --token nor --read-token
  | "FORBIDDEN" // a read token on a write route
  | "CLUSTER_AUTH" // a peer request or answer without a valid signature under the cluster secret
  | "REQUEST_TIMEOUT" // a request body did not arrive within the body timeout
  | "METHOD_NOT_ALLOWED" // a known path with a method it does not take (HTTP answers with Allow)
  | "UNSUPPORTED_MEDIA_TYPE" // a body in a form the route does not read (text/plain in a charset other than UTF-8)
  | "NOT_ACCEPTABLE" // an answer in a form the value has not (a binary value asked for as text/plain)
  | "UNKNOWN_METHOD" // an HTTP method the server does not know, or CONNECT (400: a client's bytes, never a 5xx)
  | "HTTP_VERSION" // an HTTP version other than 1.1 and 1.0, or none (400, where Bun answered 505)
  | "HEADERS_TOO_LARGE" // a request head over the server's limits (431)
  | "TOO_MANY_CLIENTS" // a connection past --max-clients: answered and closed (503, as nginx's limit_conn; Redis's "max number of clients reached")
  | "PROTECTED_MODE" // the node refuses to listen beyond loopback without credentials (see security.ts)
  | "LISTEN" // the node cannot listen on its host and port (in use, not this machine's address): listen() names the option
  | "CLOSED"; // the node is closed: an embedded call after close(), or one the close cut short

export class MakhzenError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "MakhzenError";
    this.code = code;
  }
}

/**
 * The HTTP status each code is answered with: the one place codes become statuses.
 * It sits beside the codes rather than in src/http/ because the peer protocol needs
 * it too (the in-memory transport fails a call with the status the HTTP one would
 * see, PeerError.status), and the cluster never imports a front end.
 */
export const HTTP_STATUS: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  VALIDATION: 422,
  INVALID_UNICODE: 422,
  INVALID_KEY: 400,
  INVALID_BUCKET: 400,
  KEY_TOO_LARGE: 413,
  VALUE_TOO_LARGE: 413,
  BODY_TOO_LARGE: 413,
  NOT_FOUND: 404,
  PRECONDITION_FAILED: 412,
  OUT_OF_MEMORY: 507,
  PERSISTENCE_FAILED: 507,
  INVALID_CONFIG: 400,
  DATA_DIR: 500,
  UNAVAILABLE: 503,
  REPLICATION_TIMEOUT: 504,
  OUTCOME_UNKNOWN: 504,
  NAME_TAKEN: 409,
  REPLICAS_MISMATCH: 409,
  CLOCK_OFFSET_MISMATCH: 409,
  SCHEME_MISMATCH: 409,
  ADDRESS_TAKEN: 409,
  MEMBER_ALIVE: 409,
  // Never an HTTP answer today (only the embedded bucket() throws it); 421 Misdirected
  // Request is what it would be: the right request, sent to a node that cannot answer it.
  NOT_LOCAL: 421,
  CLOCK_OFFSET: 503,
  LEAVING: 503,
  PROTOCOL_VERSION: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  CLUSTER_AUTH: 401,
  REQUEST_TIMEOUT: 408,
  METHOD_NOT_ALLOWED: 405,
  UNSUPPORTED_MEDIA_TYPE: 415,
  NOT_ACCEPTABLE: 406,
  UNKNOWN_METHOD: 400,
  HTTP_VERSION: 400,
  HEADERS_TOO_LARGE: 431,
  TOO_MANY_CLIENTS: 503,
  // Never an HTTP answer: listen() refuses before there is a server.
  PROTECTED_MODE: 500,
  LISTEN: 500,
  // handle() on a closed node: the service is gone, as a stopped server's would be.
  CLOSED: 503,
};

export const isMakhzenError = (e: unknown): e is MakhzenError => e instanceof MakhzenError;

/**
 * Why a seed refuses a join that no retry can mend (a taken --name, another
 * --replicas, another --max-clock-offset): the joiner stops trying and its CLI exits
 * 1 with the seed's reason, and peers pass the codes through as they are.
 */
export const JOIN_REFUSALS = ["NAME_TAKEN", "REPLICAS_MISMATCH", "CLOCK_OFFSET_MISMATCH", "SCHEME_MISMATCH", "ADDRESS_TAKEN"] as const satisfies readonly ErrorCode[];
export type JoinRefusal = (typeof JOIN_REFUSALS)[number];
export const isJoinRefusal = (e: unknown): e is MakhzenError & { code: JoinRefusal } =>
  e instanceof MakhzenError && (JOIN_REFUSALS as readonly string[]).includes(e.code);
