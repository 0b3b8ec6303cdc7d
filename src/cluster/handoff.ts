import type { AntiEntropy } from "./antientropy.ts";
import type { Logger } from "../ops/log.ts";
import type { Membership } from "./membership.ts";
import type { Replicator } from "./replicator.ts";

export interface HandOffDeps {
  membership: Membership;
  replicator: Replicator;
  antiEntropy: AntiEntropy;
  wallMs: () => number;
  /** The most the hand-off may take, in ms (--drain-timeout). */
  drainTimeoutMs: number;
  /** Whether a data dir keeps what no live peer holds (then it is only worth an info line). */
  hasDataDir: boolean;
  logger: Logger;
}

/**
 * Before a node stops (a leave, or yielding its name): hands what only it holds to
 * the live peers, within drainTimeoutMs, and says how much may be lost.
 *
 * Three sources of records no live peer may hold, and what covers each:
 *  - records queued only for members that are down (read repair queues for one
 *    peer; a peer died with its queue full): queued for every live peer too;
 *  - records queued for live peers: the queues drain;
 *  - records an overflow dropped from a live peer's queue (anti-entropy's): one
 *    complete anti-entropy round with a live peer leaves it holding all we hold.
 * What is still held by no live peer when time is up is counted at warn, or at info
 * when the data dir keeps it. Never throws.
 */
export async function handOff(deps: HandOffDeps): Promise<void> {
  const { membership, replicator, antiEntropy } = deps;
  const live = membership.reachable();
  const liveNames = live.map((m) => m.name);
  const down = membership.peers().filter((m) => !liveNames.includes(m.name)).map((m) => m.name);
  if (live.length > 0) for (const r of replicator.unacknowledged(down)) for (const name of liveNames) replicator.enqueueTo(name, r);
  const deadline = deps.wallMs() + deps.drainTimeoutMs;
  const left = () => deadline - deps.wallMs();
  while (live.length > 0 && !replicator.drained(liveNames) && left() > 0) await Bun.sleep(10);
  for (const p of live) {
    if (left() <= 0) break;
    const round = await Promise.race([antiEntropy.syncWith(p).catch(() => undefined), Bun.sleep(left()).then(() => undefined)]);
    if (round?.complete) return;
  }
  // Held by no live peer: queued still for every live one, or for a down one with nobody to hand it to.
  const atRisk = live.length > 0 ? replicator.heldByNone(liveNames) : replicator.unacknowledged(down).length;
  if (atRisk === 0) return;
  const fields = { records: atRisk, livePeers: live.length, drainTimeoutMs: deps.drainTimeoutMs };
  if (deps.hasDataDir) deps.logger.info("leaving before a live peer acknowledged everything; the data dir keeps it", fields);
  else deps.logger.warn("leaving with acknowledged writes that no live peer is known to hold: they may be lost", fields);
}
