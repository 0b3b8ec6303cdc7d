import { isMakhzenError, type MakhzenError } from "../../src/errors.ts";

/** The MakhzenError `fn` throws or rejects with; fails the test when it succeeds or throws something else. */
export async function failure(fn: () => unknown): Promise<MakhzenError> {
  try {
    await fn();
  } catch (e) {
    if (isMakhzenError(e)) return e;
    throw e;
  }
  throw new Error("expected a MakhzenError, nothing was thrown");
}
