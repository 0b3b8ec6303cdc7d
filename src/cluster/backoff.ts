/**
 * Retry delays for a failing peer: exponential backoff with "full jitter" (AWS
 * Architecture Blog, 2015). The delay before retry n (n = 1 after the first
 * failure) is uniform in [0, min(max, base * 2^(n-1))]. Jitter spreads the retries
 * of many senders that failed together, so a peer coming back is not hit by all of
 * them in the same millisecond. Pure: the random source is a parameter.
 */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

/** The ceiling of the delay before retry `failures` (>= 1), before jitter. */
export function backoffCeilingMs(failures: number, policy: BackoffPolicy): number {
  if (failures <= 0) return 0;
  // 2^30 already exceeds any sane max; clamping the exponent avoids Infinity.
  const exp = Math.min(failures - 1, 30);
  return Math.min(policy.maxMs, policy.baseMs * 2 ** exp);
}

/** The delay before retry `failures`, in ms; `random` returns [0, 1). */
export function backoffDelayMs(failures: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeilingMs(failures, policy));
}
