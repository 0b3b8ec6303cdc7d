import { MakhzenError } from "../errors.ts";

/**
 * Why a listener could not be bound, as a MakhzenError naming the option and the
 * address. Bun's own errors name neither (`EADDRINUSE: Failed to listen at
 * 127.0.0.1`, with no port; Bun.serve's not even the host), and a node has two
 * listeners: an embedder cannot tell `port` from `respPort`, nor an operator
 * `--port` from `--resp-port`. The message names options (`(port)`); the CLI turns
 * them into flags (serve-flags.ts, namingFlags), so it must not use an option's
 * name as a plain word: `cannot listen on 127.0.0.1:3000: address in use (port)`.
 *
 * A TLS stack's refusal of the certificate or key (what loadTls's checks did not
 * catch) is INVALID_CONFIG naming both files; anything else is LISTEN with Bun's
 * message. Never throws; answers the error to throw.
 */
export function listenRefusal(
  e: unknown,
  option: "port" | "respPort",
  config: { host: string; port: number; respPort?: number; tlsCertFile?: string; tlsKeyFile?: string },
): MakhzenError {
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  if (option === "port" && typeof code === "string" && code.startsWith("ERR_OSSL") && config.tlsCertFile !== undefined) {
    return new MakhzenError(
      "INVALID_CONFIG",
      `tlsCertFile ${JSON.stringify(config.tlsCertFile)} and tlsKeyFile ${JSON.stringify(config.tlsKeyFile)} were refused by TLS: ${message}`,
    );
  }
  const why = code === "EADDRINUSE" ? "address in use" : code === "EADDRNOTAVAIL" ? "address not available on this machine" : code === "EACCES" ? "permission denied" : message;
  const port = option === "port" ? config.port : config.respPort;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  return new MakhzenError("LISTEN", `cannot listen on ${host}:${port}: ${why} (${option})`);
}
