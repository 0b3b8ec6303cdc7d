import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { usageError } from "./_errors.ts";
import { shownFlag } from "./_flags.ts";

/**
 * The PEM files named by --tls-cert, --tls-key and --tls-ca, read and parsed before
 * the node is created, so a bad one is reported as the flag and the file the user
 * gave (`--tls-key "node.key" is not a PEM private key`) rather than by the TLS
 * stack at listen time, or as a config field. The node reads the files again
 * itself: this is a check, not a cache. Errors never print a file's contents.
 */

function read(flag: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw usageError(`${shownFlag(flag)} "${path}" cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

function notPem(flag: string, path: string, what: string, text: string): never {
  const why = text.includes("-----BEGIN ") ? "none of its PEM blocks parses as one" : "it holds no PEM block (-----BEGIN ...)";
  throw usageError(`${shownFlag(flag)} "${path}" is not a PEM ${what}: ${why}`);
}

/** The first certificate of a PEM file (a chain's leaf, a bundle's first CA). */
function readCertificate(flag: string, path: string): X509Certificate {
  return parseCertificate(flag, path, read(flag, path));
}

function parseCertificate(flag: string, path: string, text: string): X509Certificate {
  try {
    return new X509Certificate(text);
  } catch {
    notPem(flag, path, "certificate", text);
  }
}

/** A PEM file of CA certificates, checked to hold one, as text (what fetch's `tls.ca` takes). */
export function readCaFile(flag: string, path: string): string {
  const text = read(flag, path);
  parseCertificate(flag, path, text);
  return text;
}

function readPrivateKey(flag: string, path: string): KeyObject {
  const text = read(flag, path);
  try {
    return createPrivateKey(text);
  } catch {
    notPem(flag, path, "private key", text);
  }
}

/** Checks serve's TLS files: each readable and parsable, and the key the certificate's. */
export function checkServeTls(files: { cert?: string; key?: string; ca?: string }): void {
  if (files.cert !== undefined && files.key !== undefined) {
    const cert = readCertificate("tls-cert", files.cert);
    const key = readPrivateKey("tls-key", files.key);
    if (!cert.checkPrivateKey(key)) throw usageError(`--tls-key "${files.key}" is not the key of the certificate in --tls-cert "${files.cert}"`);
  }
  if (files.ca !== undefined) readCertificate("tls-ca", files.ca);
}
