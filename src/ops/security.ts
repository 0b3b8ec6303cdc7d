import type { NodeConfig } from "../config.ts";

/**
 * What a node refuses and why: protected mode (what it will not listen on without
 * credentials) and the counters of refused requests. Client tokens are matched in
 * tokens.ts, peer requests signed and checked in src/cluster/protocol/signing.ts
 * (PeerGuard), TLS files read in tls.ts. Nothing here knows HTTP frameworks.
 */

/** Live refusal counters, read by /cluster and by metrics. Only ever incremented. */
export interface Refusals {
  /** Client requests answered 401: no token, or a token that matches neither --token nor --read-token. */
  clientUnauthorized: number;
  /** Client requests answered 403: a read token on a write route. */
  clientForbidden: number;
  /** Peer requests refused: unsigned, badly signed (another secret), outside the replay window, or replayed. */
  peerRequests: number;
  /** Peer answers refused: a peer that answered without proving the cluster secret. */
  peerAnswers: number;
}

export const newRefusals = (): Refusals => ({ clientUnauthorized: 0, clientForbidden: 0, peerRequests: 0, peerAnswers: 0 });

// ---- protected mode ----

/** What protected mode looks at. */
export type ProtectedModeConfig = Pick<NodeConfig, "insecure" | "host" | "token" | "clusterSecret" | "peers" | "advertise">;

/**
 * Loopback as protected mode means it: 127.0.0.0/8, ::1 and localhost, also as
 * IPv4-mapped IPv6 (`::ffff:127.0.0.1`, which a URL writes `::ffff:7f00:1`).
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  const mappedHex = /^::ffff:([0-9a-f]{1,4}):[0-9a-f]{1,4}$/.exec(h);
  if (mappedHex) return parseInt(mappedHex[1]!, 16) >> 8 === 127;
  if (h.startsWith("::ffff:")) return isLoopbackHost(h.slice(7));
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Whether a URL's host is loopback (protected mode's sense); a URL that does not parse is not. */
export const urlIsLoopback = (u: string): boolean => {
  try {
    return isLoopbackHost(new URL(u).hostname);
  } catch {
    return false;
  }
};

/**
 * Redis's protected mode, made stricter for a cluster. Returns why the node must
 * not start, or undefined. A node reachable beyond loopback without --token would
 * let anyone read and write every key; one whose peer API is reachable (or whose
 * peers are) beyond loopback without --cluster-secret would let anyone join it,
 * feed it writes through /internal/records, or read it all through /internal/scan.
 * `insecure` accepts both risks. Pure: tested without sockets.
 */
export function protectedModeProblem(config: ProtectedModeConfig): string | undefined {
  if (config.insecure) return undefined;
  const risk = protectedModeRisks(config)[0];
  return risk === undefined ? undefined : `refusing to ${risk.refused}: ${risk.exposure}. ${risk.remedy}`;
}

/**
 * What a node beyond loopback without a token or a cluster secret is exposed to,
 * each risk once (a node started with insecure logs them all; protectedModeProblem
 * refuses the first). Worded with option names (token, clusterSecret, insecure),
 * which the CLI turns into its flags (namingFlags): so no option's name as a plain
 * word (port, host, peers), and the host and URLs quoted (a quoted value is never
 * reworded).
 */
export function protectedModeRisks(config: Omit<ProtectedModeConfig, "insecure">): { refused: string; exposure: string; remedy: string; taken: string }[] {
  const risks = [];
  const exposed = !isLoopbackHost(config.host);
  if (exposed && config.token === undefined) {
    risks.push({
      refused: `listen on ${JSON.stringify(config.host)} without token`,
      taken: `listening on ${JSON.stringify(config.host)} without token`,
      exposure: "anyone who can reach the node could read and write every key",
      remedy: "Set token, listen on 127.0.0.1, or accept the risk with insecure",
    });
  }
  if (config.clusterSecret !== undefined) return risks;
  const peer = config.peers.find((u) => !urlIsLoopback(u));
  const advertised = config.advertise !== undefined && !urlIsLoopback(config.advertise);
  if (exposed || peer !== undefined || advertised) {
    const where = exposed
      ? `listening on ${JSON.stringify(config.host)}`
      : peer !== undefined
        ? `with the peer ${JSON.stringify(peer)} beyond loopback`
        : `advertising ${JSON.stringify(config.advertise)}, beyond loopback,`;
    risks.push({
      refused: `start ${where} without clusterSecret`,
      taken: `${where.replace(/,$/, "")} without clusterSecret`,
      exposure: "anyone who can reach the peer API could join the cluster, inject writes and read every key",
      remedy: "Set the same clusterSecret on every node, or accept the risk with insecure",
    });
  }
  return risks;
}
