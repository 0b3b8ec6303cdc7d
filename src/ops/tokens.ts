import { timingSafeEqual } from "node:crypto";

/**
 * Client tokens (--token, --read-token): how a presented token is read and
 * matched. Nothing here knows a front end: HTTP passes its Authorization header
 * in and gets an access level out, and so can any other front end's AUTH.
 */

/** What a client token allows: everything, or reads only. */
export type Access = "write" | "read";

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | null | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  return m ? m[1]!.trim() : undefined;
}

/**
 * Compares a presented secret with the expected one in time that does not depend
 * on where they differ. Both are hashed first so their lengths match and the
 * length of the real secret does not leak either.
 */
export function secretMatches(given: string | undefined, expected: string): boolean {
  return secretMatcher(expected)(given);
}

/**
 * secretMatches with the expected secret hashed once: what a check on every
 * request uses (~0.08 µs a call instead of ~0.5 µs).
 */
export function secretMatcher(expected: string): (given: string | undefined) => boolean {
  const want = sha256(expected);
  return (given) => given !== undefined && timingSafeEqual(sha256(given), want);
}

/**
 * What a presented token grants under the write `token` and the optional
 * `readToken`, or undefined when it matches neither (or none was presented). The
 * presented token is hashed once and compared with both in constant time.
 */
export function tokenAccess(token: string, readToken?: string): (given: string | undefined) => Access | undefined {
  const write = sha256(token);
  const read = readToken === undefined ? undefined : sha256(readToken);
  return (given) => {
    if (given === undefined) return undefined;
    const h = sha256(given);
    if (timingSafeEqual(h, write)) return "write";
    if (read !== undefined && timingSafeEqual(h, read)) return "read";
    return undefined;
  };
}

const sha256 = (s: string): Uint8Array => Bun.SHA256.hash(s) as Uint8Array;
