import { MakhzenError } from "../errors.ts";
import { loadTls, readCa } from "../ops/tls.ts";
import { usageError } from "./_errors.ts";
import { shownFlag } from "./_flags.ts";

/**
 * The PEM files named by --tls-cert, --tls-key and --tls-ca, checked before the node
 * is created by the checks the node makes itself (ops/tls.ts), labelled with the
 * flags the user gave (`--tls-key "node.key" is not a PEM private key`) and refused
 * as usage errors. The node reads the files again itself: this is a check, not a cache.
 */

const FLAGS = { tlsCertFile: "tls-cert", tlsKeyFile: "tls-key", tlsCaFile: "tls-ca" } as const;

function asUsage<T>(check: () => T): T {
  try {
    return check();
  } catch (e) {
    throw e instanceof MakhzenError ? usageError(e.message) : e;
  }
}

/** A PEM file of CA certificates, checked to hold one, as text (what fetch's `tls.ca` takes). */
export const readCaFile = (flag: string, path: string): string => asUsage(() => readCa(shownFlag(flag), path));

/** Checks serve's TLS files: each readable and parsable, and the key the certificate's. */
export function checkServeTls(files: { cert?: string; key?: string; ca?: string }): void {
  asUsage(() => loadTls({ tlsCertFile: files.cert, tlsKeyFile: files.key, tlsCaFile: files.ca }, (field) => shownFlag(FLAGS[field])));
}
