import { readFileSync } from "node:fs";
import { MakhzenClient } from "../client/client.ts";
import { usageError } from "./_errors.ts";
import { flag } from "./_flags.ts";

/** The flags every client command takes to reach a node. */
export const connectionArgs = {
  url: { type: "string", description: "Node URL (default http://127.0.0.1:3000; env MAKHZEN_URL)" },
  token: { type: "string", description: "Token the node requires (its --token or --read-token; env MAKHZEN_TOKEN, which keeps it out of ps)" },
  "tls-ca": { type: "string", description: "PEM file of the CA to trust for an https node (env MAKHZEN_TLS_CA)" },
} as const;

/** A client for the node the flags (or MAKHZEN_* variables) name. */
export function clientFor(args: Record<string, unknown>, bucket?: string): MakhzenClient {
  const caFile = flag(args, "tls-ca");
  let ca: string | undefined;
  if (caFile !== undefined) {
    try {
      ca = readFileSync(caFile, "utf8");
    } catch (e) {
      throw usageError(`--tls-ca "${caFile}" cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  }
  return new MakhzenClient({ url: flag(args, "url"), bucket, token: flag(args, "token"), ca });
}
