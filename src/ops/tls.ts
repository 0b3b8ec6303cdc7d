import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import type { NodeConfig } from "../config.ts";
import { MakhzenError } from "../errors.ts";

/**
 * The PEM files a node serves and trusts, read and parsed when the node is created,
 * so a bad one is refused at once as the option and the file the user gave
 * (`tlsKeyFile "node.key" is not the key of the certificate in tlsCertFile
 * "node.crt"`), not by the TLS stack at listen() time with an OpenSSL code naming
 * neither (ERR_OSSL_X509_KEY_VALUES_MISMATCH). The CLI runs the same checks with its
 * flags as the labels (cli/_pem.ts). Errors never print a file's contents.
 */

export interface TlsMaterial {
  /** PEM certificate chain and key served by this node; absent: plain http. */
  cert?: string;
  key?: string;
  /** When the served certificate stops being valid, epoch ms (certificateWarning). */
  certValidToMs?: number;
  /** PEM CA bundle trusted for peers' certificates; absent: the system's CAs. */
  ca?: string;
}

export type TlsFiles = Pick<NodeConfig, "tlsCertFile" | "tlsKeyFile" | "tlsCaFile">;

/** How an error names a file's setting: the option by default, a flag for the CLI. */
export type TlsLabel = (field: keyof TlsFiles) => string;

/**
 * Reads and checks the TLS files named in the config: each readable and a PEM file
 * of its kind, and the key the certificate's. Throws INVALID_CONFIG naming the
 * setting (`label`) and the path.
 */
export function loadTls(config: TlsFiles, label: TlsLabel = (f) => f): TlsMaterial {
  const { tlsCertFile: certFile, tlsKeyFile: keyFile } = config;
  const cert = certFile === undefined ? undefined : readPem(label("tlsCertFile"), certFile);
  const c = cert === undefined ? undefined : parseCertificate(label("tlsCertFile"), certFile!, cert);
  const key = keyFile === undefined ? undefined : readPem(label("tlsKeyFile"), keyFile);
  const k = key === undefined ? undefined : parsePrivateKey(label("tlsKeyFile"), keyFile!, key);
  if (c !== undefined && k !== undefined) {
    if (!c.checkPrivateKey(k)) {
      throw new MakhzenError(
        "INVALID_CONFIG",
        `${label("tlsKeyFile")} ${JSON.stringify(config.tlsKeyFile)} is not the key of the certificate in ${label("tlsCertFile")} ${JSON.stringify(config.tlsCertFile)}`,
      );
    }
  }
  const ca = config.tlsCaFile === undefined ? undefined : readCa(label("tlsCaFile"), config.tlsCaFile);
  return { cert, key, ca, certValidToMs: c === undefined ? undefined : Date.parse(c.validTo) };
}

/** Within this much of its end a certificate is warned of at start: renewal is a rolling restart (docs/security.md). */
const CERT_WARN_MS = 14 * 24 * 3600 * 1000;

/**
 * What to warn of at start about the served certificate: expired (clients and peers
 * that verify it refuse every connection, which the node itself cannot see), or
 * expiring within 14 days. Served either way, as nginx serves one: refusing to start
 * would turn a renewal missed by a day into an outage of every node at its restart.
 */
export function certificateWarning(validToMs: number | undefined, nowMs: number): string | undefined {
  if (validToMs === undefined || !Number.isFinite(validToMs)) return undefined;
  const at = new Date(validToMs).toISOString();
  if (validToMs <= nowMs) return `the served TLS certificate expired at ${at}: clients and peers that verify it refuse every connection`;
  if (validToMs - nowMs <= CERT_WARN_MS) return `the served TLS certificate expires at ${at}: renew it, then restart the nodes one at a time`;
  return undefined;
}

/** A PEM file of CA certificates, checked to hold one, as text (what fetch's `tls.ca` takes). */
export function readCa(label: string, path: string): string {
  const text = readPem(label, path);
  parseCertificate(label, path, text);
  return text;
}

/** More than any certificate chain, key or CA bundle: a file past it is no PEM file (`/dev/zero` was read into GBs of memory). */
const PEM_MAX_BYTES = 4 * 1024 * 1024;

/** A PEM file's text, read up to PEM_MAX_BYTES, once (a pipe, `<(...)`, can be read only once: cli/serve.ts leaves it to the node). */
function readPem(label: string, path: string): string {
  const chunks: Buffer[] = [];
  let total = 0;
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    for (;;) {
      const chunk = Buffer.allocUnsafe(64 * 1024);
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      total += n;
      if (total > PEM_MAX_BYTES) {
        throw new MakhzenError("INVALID_CONFIG", `${label} ${JSON.stringify(path)} is larger than ${PEM_MAX_BYTES / 1024 / 1024} MiB, more than any certificate chain, key or CA bundle holds`);
      }
      chunks.push(chunk.subarray(0, n));
    }
  } catch (e) {
    if (e instanceof MakhzenError) throw e;
    throw new MakhzenError("INVALID_CONFIG", `${label} ${JSON.stringify(path)} cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Why a text that should be PEM is not: blocks that do not parse, or none at all (the client's `ca` says it too). */
export const whyNotPem = (text: string): string =>
  text.includes("-----BEGIN ") ? "none of its PEM blocks parses as one" : "it holds no PEM block (-----BEGIN ...)";

function notPem(label: string, path: string, what: string, text: string): never {
  throw new MakhzenError("INVALID_CONFIG", `${label} ${JSON.stringify(path)} is not a PEM ${what}: ${whyNotPem(text)}`);
}

/** The first certificate of a PEM text (a chain's leaf, a bundle's first CA). */
function parseCertificate(label: string, path: string, text: string): X509Certificate {
  try {
    return new X509Certificate(text);
  } catch {
    notPem(label, path, "certificate", text);
  }
}

function parsePrivateKey(label: string, path: string, text: string): KeyObject {
  try {
    return createPrivateKey(text);
  } catch {
    // A key under a passphrase parses as nothing without it: said as what it is.
    // PKCS#8 (ENCRYPTED PRIVATE KEY) or a traditional RSA/EC key with its Proc-Type header.
    if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) {
      throw new MakhzenError("INVALID_CONFIG", `${label} ${JSON.stringify(path)} is encrypted (under a passphrase), which the node cannot use: decrypt it (openssl pkey -in key.pem -out plain.pem)`);
    }
    notPem(label, path, "private key", text);
  }
}
