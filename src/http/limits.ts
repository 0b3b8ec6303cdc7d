import type { NodeConfig } from "../config.ts";

/**
 * The request-size policy, derived in one place from the key, value and batch
 * limits: Bun.serve, the item routes, /load and the peer API all read it here.
 *
 * The problem it solves: a value is limited in UTF-8 bytes, but it travels as
 * JSON, and JSON may spell one byte as six (`\u0001`; any character may be written
 * as a `\uXXXX` escape, and a control character must be). A body limit of "twice
 * the value" refused a 1 MiB value of control characters over HTTP that the
 * embedded API took, and peers then refused the same record forever. So every
 * limit here is six times what it must carry, plus room for the rest of the JSON.
 *
 * Bun's own cap (`maxRequestBodySize`) applies to streamed (chunked) bodies as
 * well as declared ones (measured with Bun 1.4: a 5 MB chunked body over a 1 MiB
 * cap is answered 413 by Bun), so it cannot be the limit of /load, which streams a
 * backup of any size. Bun is therefore given no cap, and every route that reads a
 * body caps it itself: the item routes and the peer API before buffering it
 * (readBodyText), /load per line. A route that does not read its body costs
 * nothing: Bun stops reading the socket (backpressure) and discards the rest once
 * the answer is sent (measured: RSS flat under a 300 MB body to such a route).
 */
export interface RequestLimits {
  /** Largest body of an item PUT, in bytes: a value at the limit in the worst JSON spelling, and the rest. */
  itemBodyBytes: number;
  /** Longest NDJSON line of /load, in bytes: one record with key and value at their limits, worst spelling. */
  loadLineBytes: number;
  /**
   * Largest peer request, in bytes. A batch is up to batchMaxBytes of keys and
   * values (counted in characters by the sender), a single larger record goes alone,
   * and either may be spelled six times over: a replica must take any record its
   * peers took.
   */
  peerBodyBytes: number;
  /** What Bun.serve is told: no cap (see above). */
  serverBodyBytes: number;
  /**
   * How long a body may take to arrive (item and peer routes), and, for /load, the
   * longest silence between two reads: a restore may take as long as it needs as
   * long as it keeps moving.
   */
  bodyTimeoutMs: number;
}

/** The most bytes JSON may spend on one byte of a string: `\u0000`. */
export const JSON_ESCAPE_FACTOR = 6;
/** Room for everything around the escaped key and value: field names, version, expiresAt, ttl, whitespace. */
const ENVELOPE_BYTES = 64 * 1024;
/** A record's fields besides key and value, as approxWireBytes counts them. */
const RECORD_FIELDS_BYTES = 96;

export function requestLimits(config: Pick<NodeConfig, "maxKeyBytes" | "maxValueBytes" | "batchMaxBytes" | "bodyTimeoutMs">): RequestLimits {
  const record = config.maxKeyBytes + config.maxValueBytes + RECORD_FIELDS_BYTES;
  return {
    itemBodyBytes: JSON_ESCAPE_FACTOR * config.maxValueBytes + ENVELOPE_BYTES,
    loadLineBytes: JSON_ESCAPE_FACTOR * record + ENVELOPE_BYTES,
    peerBodyBytes: JSON_ESCAPE_FACTOR * Math.max(config.batchMaxBytes, record) + ENVELOPE_BYTES,
    serverBodyBytes: Number.MAX_SAFE_INTEGER,
    bodyTimeoutMs: config.bodyTimeoutMs,
  };
}
