/**
 * Whether a node's GET /cluster body (or Cluster.status()) says it is settled (each
 * partition it owns filled, nothing left to hand off) and that it has heard every
 * other member say it fills nothing. A node routes reads and writes, and decides
 * what a listing covers, by what its peers last said, which lags their own state by
 * a heartbeat: tests that check routing wait for both.
 */
export const settledAndSure = (status: { settled?: boolean; members: { state: string; filling?: number | null }[] }): boolean =>
  status.settled === true && status.members.every((m) => m.state === "left" || m.filling === 0);
