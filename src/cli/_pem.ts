import { MakhzenError } from "../errors.ts";
import { readCa } from "../ops/tls.ts";
import { usageError } from "./_errors.ts";
import { shownFlag } from "./_flags.ts";

/**
 * The CA file a client command names (--tls-ca), read and checked by the node's own
 * checks (ops/tls.ts), labelled with the flag the user gave and refused as a usage
 * error. serve's files are read by the node itself, once (cli/serve.ts).
 */

function asUsage<T>(check: () => T): T {
  try {
    return check();
  } catch (e) {
    throw e instanceof MakhzenError ? usageError(e.message) : e;
  }
}

/** A PEM file of CA certificates, checked to hold one, as text (what fetch's `tls.ca` takes). */
export const readCaFile = (flag: string, path: string): string => asUsage(() => readCa(shownFlag(flag), path));
