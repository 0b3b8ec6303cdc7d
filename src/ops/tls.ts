import { readFileSync } from "node:fs";
import type { NodeConfig } from "../config.ts";
import { MakhzenError } from "../errors.ts";

export interface TlsMaterial {
  /** PEM certificate chain and key served by this node; absent: plain http. */
  cert?: string;
  key?: string;
  /** PEM CA bundle trusted for peers' certificates; absent: the system's CAs. */
  ca?: string;
}

/** Reads the TLS files named in the config; throws INVALID_CONFIG naming the option and the path. */
export function loadTls(config: Pick<NodeConfig, "tlsCertFile" | "tlsKeyFile" | "tlsCaFile">): TlsMaterial {
  const read = (field: string, path: string | undefined): string | undefined => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path, "utf8");
    } catch (e) {
      throw new MakhzenError("INVALID_CONFIG", `${field} "${path}" cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  };
  return { cert: read("tlsCertFile", config.tlsCertFile), key: read("tlsKeyFile", config.tlsKeyFile), ca: read("tlsCaFile", config.tlsCaFile) };
}
