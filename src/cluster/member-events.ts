import type { AntiEntropy } from "./antientropy.ts";
import type { ClockGuard } from "./clock-guard.ts";
import type { MakhzenError } from "../errors.ts";
import type { MembershipEvents } from "./membership-types.ts";
import type { PartitionViews } from "./partition-views.ts";
import type { Rebalancer } from "./rebalance.ts";
import type { Replicator } from "./replicator.ts";
import type { Stability } from "./stability.ts";

/** The parts of a Cluster that follow its membership (cluster.ts). */
export interface MemberEventParts {
  replicator: Replicator;
  antiEntropy: AntiEntropy;
  clockGuard: ClockGuard;
  stability: Stability;
  views: PartitionViews;
  rebalancer: Rebalancer;
  /** The member list changed: placement follows it, and partitions move. */
  placementChanged(): void;
  /** Another process took this node's name: stop (Cluster.yieldName). */
  yieldName(error: MakhzenError): void;
  /** A member was added (Cluster.peerAdded: the data dir remembers the node was in a cluster). */
  peerAdded(): void;
}

/**
 * What every part of the cluster does when membership changes, in one place:
 * a member that joins (or comes back in a new life) gets a queue and a round and
 * counts as filling until it reports its partitions; one that recovers is sent to
 * at once; one that leaves (or is reaped, or forgotten) loses its queue and its
 * partitions; one that moves keeps its queue under its new URL. `parts` is read at
 * each event: the parts are built after Membership, which takes these events.
 */
export function memberEvents(parts: () => MemberEventParts): MembershipEvents {
  // A member that left, or is in a new life: what it said of its partitions no longer counts.
  const forgetViews = (p: MemberEventParts, name: string) => {
    p.views.forget(name);
    p.rebalancer.forget(name);
  };
  return {
    added: (m) => {
      const p = parts();
      forgetViews(p, m.name);
      p.stability.joined(m.name); // a new member (or a new life of one) holds nothing we know of yet
      // Its queue first: the records queued when the placement changes are filed again for the new owners, it among them.
      p.replicator.addPeer(m.name, m.url);
      p.placementChanged();
      // A known peer back in a new life (a restart) may have a sender in backoff.
      p.replicator.wake(m.name);
      p.antiEntropy.request(m.name);
      p.peerAdded();
    },
    recovered: (m) => {
      const p = parts();
      p.replicator.wake(m.name);
      p.antiEntropy.request(m.name);
    },
    left: (m) => {
      const p = parts();
      forgetViews(p, m.name);
      p.placementChanged();
      p.stability.left(m.name);
      p.replicator.removePeer(m.name);
    },
    moved: (m) => {
      const p = parts();
      forgetViews(p, m.name);
      p.stability.reset(m.name);
      p.replicator.addPeer(m.name, m.url);
      p.clockGuard.forget(m.name);
    },
    measured: (name, sample) => parts().clockGuard.record(name, sample),
    reported: (name, report) => {
      const p = parts();
      p.stability.reported(name, report);
      p.views.report(name, report.holds, report.filling);
      p.rebalancer.reported(name, report);
    },
    nameTaken: (_holder, error) => parts().yieldName(error),
    joinRefused: (error) => parts().yieldName(error),
    newcomer: () => parts().rebalancer.joinedAsNewcomer(),
  };
}
