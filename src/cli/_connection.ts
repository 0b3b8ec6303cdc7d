import { MakhzenClient } from "../client/client.ts";
import { flag, flagFrom, parseUrl } from "./_flags.ts";
import { usageError } from "./_errors.ts";
import { readCaFile } from "./_pem.ts";

/** The flags every client command takes to reach a node. */
export const connectionArgs = {
  url: { type: "string", description: "Node URL, or host:port for http (default http://127.0.0.1:3000; env MAKHZEN_URL)" },
  token: { type: "string", description: "Token the node requires (its --token or --read-token; env MAKHZEN_TOKEN, which keeps it out of ps)" },
  "tls-ca": { type: "string", description: "PEM file of the CA to trust for an https node (env MAKHZEN_TLS_CA)" },
} as const;

/** A client for the node the flags (or MAKHZEN_* variables) name. */
export function clientFor(args: Record<string, unknown>, bucket?: string): MakhzenClient {
  // Errors name the flag, or the variable the value came from (MAKHZEN_URL).
  const caFile = flagFrom(args, "tls-ca");
  const url = flagFrom(args, "url");
  const client = new MakhzenClient({
    url: url === undefined ? undefined : parseUrl(url.from, url.value),
    bucket,
    token: flag(args, "token"),
    ca: caFile === undefined ? undefined : readCaFile(caFile.from, caFile.value),
  });
  // A CA typed for a node spoken to over http would be silently unused. From
  // MAKHZEN_TLS_CA it is a standing default, used whenever the node is https.
  if (caFile?.from === "tls-ca" && !client.url.startsWith("https:")) {
    throw usageError(`--tls-ca has no effect with an http URL (${client.url}): give the node's https URL with --url, or leave --tls-ca out`);
  }
  return client;
}
