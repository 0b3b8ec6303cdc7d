import { MakhzenClient } from "../client/client.ts";
import { flagFrom, kinds, parseUrl } from "./_flags.ts";
import { usageError } from "./_errors.ts";
import { readCaFile } from "./_pem.ts";

/** The flags every client command takes to reach a node. */
export const connectionArgs = {
  url: { type: "string", description: "Node URL, or host:port for http (default http://127.0.0.1:3000; env MAKHZEN_URL)" },
  token: { type: "string", description: "Token the node requires (its --token or --read-token; env MAKHZEN_TOKEN, which keeps it out of ps)" },
  "tls-ca": { type: "string", description: "PEM file of the CA to trust for an https node (env MAKHZEN_TLS_CA)" },
  timeout: {
    type: "string",
    description: "Give up when the node has not answered for this long: 500ms, 10s, 1m (default 10s; env MAKHZEN_TIMEOUT). dump and load: the longest stall, not a bound on the whole transfer",
  },
} as const;

/** The flags of a client command that a MAKHZEN_* variable can set (read with flagFrom in this file and client-commands.ts). */
export const CLIENT_VARIABLE_FLAGS = ["url", "token", "tls-ca", "timeout", "bucket"] as const;

/**
 * A token goes in a header as it is: a newline, a space or a non-ASCII character
 * failed inside fetch as "cannot reach ...: Header 'Authorization' has invalid
 * value", exit 1, as if the node were down. A node's tokens are visible ASCII
 * (serve checks its --token the same way), so anything else is a usage error.
 */
const token = kinds.secret();
/** setTimeout's bound is 2^31-1 ms (about 24.8 days); past it a timer fires at once. */
const timeout = kinds.duration("1ms", "24h");

/** A client for the node the flags (or MAKHZEN_* variables) name. */
export function clientFor(args: Record<string, unknown>, bucket?: string): MakhzenClient {
  // Errors name the flag, or the variable the value came from (MAKHZEN_URL).
  const caFile = flagFrom(args, "tls-ca");
  const url = flagFrom(args, "url");
  const tokenFlag = flagFrom(args, "token");
  const timeoutFlag = flagFrom(args, "timeout");
  const nodeUrl = url === undefined ? undefined : parseUrl(url.from, url.value);
  const https = nodeUrl?.startsWith("https:") ?? false; // the default node is http
  // A typed --tls-ca is read (a bad file is named first); MAKHZEN_TLS_CA is a standing
  // default, used (and so read) only when the node is https.
  const ca = caFile !== undefined && (caFile.from === "tls-ca" || https) ? readCaFile(caFile.from, kinds.file.parse(caFile.from, caFile.value)) : undefined;
  // A CA typed for a node spoken to over http would be silently unused.
  if (caFile?.from === "tls-ca" && !https) {
    throw usageError(`--tls-ca has no effect with an http URL (${nodeUrl ?? "http://127.0.0.1:3000"}): give the node's https URL with --url, or leave --tls-ca out`);
  }
  const client = new MakhzenClient({
    url: nodeUrl,
    bucket,
    token: tokenFlag === undefined ? undefined : token.parse(tokenFlag.from, tokenFlag.value),
    timeoutMs: timeoutFlag === undefined ? undefined : timeout.parse(timeoutFlag.from, timeoutFlag.value),
    ca,
  });
  return client;
}
