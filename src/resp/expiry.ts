import { MAX_TTL_SECONDS, type SetOptions } from "../core/items.ts";
import type { StoredValue } from "../core/binary.ts";
import type { Item } from "../core/record.ts";
import type { Awaitable } from "../service.ts";
import { clampedInteger, type Ctx } from "./command.ts";
import { invalidExpire, RespError } from "./errors.ts";

/**
 * Expiry as Redis's commands spell it (EX seconds, PX ms, EXAT unix seconds, PXAT
 * unix ms), turned into makhzen's absolute `expiresAt` (epoch ms) on this node's
 * clock: the same rule as a TTL over HTTP, so every replica expires the key at
 * one moment (Redis replicates PXAT for the same reason).
 */
export type ExpiryUnit = "EX" | "PX" | "EXAT" | "PXAT";

/**
 * The expiresAt of `amount` in `unit`, for `command`'s error message. A relative
 * time must be > 0 (Redis: `invalid expire time`); an absolute one may lie in the
 * past, which the caller turns into a delete. Beyond the longest TTL (MAX_TTL_SECONDS,
 * 1e10 s, about 317 years) is refused with Redis's `invalid expire time`, which
 * Redis itself answers only past int64 milliseconds (docs/resp.md).
 */
export function expiresAtOf(ctx: Ctx, unit: ExpiryUnit, amount: Buffer, command: string): number {
  const n = clampedInteger(amount);
  const nowMs = ctx.service.wallMs();
  let at: number;
  if (unit === "EX" || unit === "PX") {
    if (n <= 0) throw new RespError(invalidExpire(command));
    at = nowMs + (unit === "EX" ? n * 1000 : n);
  } else {
    if (n <= 0) throw new RespError(invalidExpire(command));
    at = unit === "EXAT" ? n * 1000 : n;
  }
  if (!Number.isSafeInteger(at) || at > nowMs + MAX_TTL_SECONDS * 1000) throw new RespError(invalidExpire(command));
  return at;
}

/** Whether `at` has passed on this node's clock: a write with that expiry is a delete. */
export const isPast = (ctx: Ctx, at: number): boolean => at <= ctx.service.wallMs();

/**
 * Writes `value` to `key` with `expiresAt` (none: no expiry), or deletes the key
 * when `expiresAt` has already passed, as Redis does for a SET ... PXAT in the past.
 */
export function write(ctx: Ctx, key: string, v: StoredValue, expiresAt: number | undefined, bucket = ctx.bucket): Awaitable<unknown> {
  if (expiresAt !== undefined && isPast(ctx, expiresAt)) return ctx.service.delete(bucket, key);
  return ctx.service.set(bucket, key, v.value, setOptions(v, expiresAt));
}

/**
 * The service's options for a value in stored form with an expiry: none at all for
 * text without one (the hot path). An expiry goes with `pastExpiryDeletes`: it was
 * in the future on this node's clock a moment ago (else `write` deleted the key),
 * and if it has passed by the time the write is applied (a later reading here, or
 * the owner's clock after a hop), the key is simply expired, as on Redis, and the
 * command still answers what it would have (SET's OK, PEXPIRE's 1).
 */
export function setOptions(v: StoredValue, expiresAt: number | undefined): SetOptions {
  if (!v.bytes) return expiresAt === undefined ? NO_OPTIONS : { expiresAt, pastExpiryDeletes: true };
  return expiresAt === undefined ? BYTES : { bytes: true, expiresAt, pastExpiryDeletes: true };
}
const NO_OPTIONS: SetOptions = Object.freeze({});
const BYTES: SetOptions = Object.freeze({ bytes: true });

/** The expiry an item keeps through a read-modify-write (INCR, APPEND keep the TTL, as in Redis). */
export const keptExpiry = (item: Item | undefined): number | undefined => item?.expiresAt;
