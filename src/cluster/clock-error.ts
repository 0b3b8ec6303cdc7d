import { MakhzenError } from "../errors.ts";
import type { ClockState } from "./clock-offset.ts";
import { FENCE_SHARE } from "./clock-guard.ts";

/** The error of a client write refused by the fence (503), and of /readyz while fenced. */
export function clockOffsetError(clock: ClockState): MakhzenError {
  const limit = `--max-clock-offset ${clock.maxOffsetMs} ms`;
  const share = clock.share ?? FENCE_SHARE;
  const fence = share * clock.maxOffsetMs;
  // With one peer measured, the two clocks are fenced on how far apart they are: the median is their middle.
  const pair = clock.reason === "offset" && Math.abs(clock.offsetMs) <= fence;
  const ahead =
    clock.reason === "stamps"
      ? "the versions this node would stamp still run ahead of the cluster's median clock"
      : pair
        ? `this node's clock and its one measured peer's are ${Math.abs(2 * clock.offsetMs)} ms apart, and neither can tell which is right`
        : `this node's clock is ${clock.offsetMs} ms from the cluster's median`;
  // Unmeasured is not past the limit: nothing says where its clock is yet.
  const why =
    clock.reason === "unmeasured"
      ? `this node has not measured any peer's clock yet (its join or first heartbeat is still on its way, or no peer has answered: see the log), so it cannot tell whether its own is within ${limit}`
      : clock.reason === "stalled"
        ? `this node's monotonic clock stood still or went back while its wall clock moved, so it cannot tell whether its own clock is within ${limit} until it measures a peer's again`
        : // The fence stands at FENCE_SHARE of the limit: "past the limit" from a node 421 ms off under 500 misled.
        `${ahead}, past ${Math.round(fence)} ms, ${Math.round(share * 100)}% of ${limit} (the margin keeps what it stamps inside the limit)`;
  return new MakhzenError("CLOCK_OFFSET", `${why}: it refuses writes until that is settled (see docs/replication.md)`);
}
