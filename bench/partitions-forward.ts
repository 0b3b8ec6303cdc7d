/**
 * Where a partitioned cluster's write throughput goes (issue 11), run by hand:
 * PUTs into node a of a 5-node cluster with --replicas 2, with wrk (-t1 -c32),
 * rounds alternating between keys a owns (applied there, replicated to the one
 * other owner) and keys a does not own (each forwarded one hop to an owner, which
 * applies it and replicates it to the other owner), against a lone node.
 *
 *   bun bench/partitions-forward.ts [--rounds 3] [--seconds 5]
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { partitionOf, rankOwners } from "../src/cluster/placement.ts";
import { Harness, eventually, type NodeProcess } from "../test/support/harness.ts";
import { median, option, requireWrk, wrk } from "./_lib.ts";

const ROUNDS = Number(option("rounds", "3"));
const SECONDS = Number(option("seconds", "5"));
const NAMES = ["a", "b", "c", "d", "e"];

requireWrk();
const h = new Harness();
process.on("SIGINT", () => void h.cleanup().then(() => process.exit(130)));

/** A wrk script that PUTs the given keys in turn. */
function script(name: string, keys: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), "makhzen-forward-bench-"));
  const path = join(dir, `${name}.lua`);
  writeFileSync(
    path,
    `local keys = {${keys.map((k) => `"${k}"`).join(",")}}
local i = 0
local body = '{"value":"${"x".repeat(100)}"}'
request = function()
  i = i + 1
  return wrk.format("PUT", "/items/" .. keys[(i % #keys) + 1], {["Content-Type"] = "application/json"}, body)
end
`,
  );
  return path;
}

const queuesEmpty = async (nodes: NodeProcess[]) =>
  eventually(
    async () => {
      for (const n of nodes) {
        const view = (await (await fetch(`${n.url}/cluster`)).json()) as { members: { queue: number }[] };
        if (view.members.some((m) => m.queue > 0)) return false;
      }
      return true;
    },
    { timeoutMs: 120_000, what: "queues drained" },
  );

try {
  const lone = await h.start("lone", { timings: "fast" });
  const nodes = await h.cluster(5, { timings: "fast", extraArgs: ["--replicas", "2"] });
  const owned: string[] = [];
  const foreign: string[] = [];
  for (let i = 0; owned.length < 20_000 || foreign.length < 20_000; i++) {
    const key = `k${i}`;
    (rankOwners(partitionOf(key), NAMES, 2).includes("a") ? owned : foreign).push(key);
  }
  const all = { lone: [] as number[], owned: [] as number[], foreign: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    all.lone.push(await wrk(lone.url, script(`lone${r}`, owned.slice(0, 20_000)), SECONDS));
    all.owned.push(await wrk(nodes[0]!.url, script(`owned${r}`, owned.slice(0, 20_000)), SECONDS));
    await queuesEmpty(nodes);
    all.foreign.push(await wrk(nodes[0]!.url, script(`foreign${r}`, foreign.slice(0, 20_000)), SECONDS));
    await queuesEmpty(nodes);
    console.log(`round ${r + 1}: lone ${all.lone[r]!.toFixed(0)}, owned by a ${all.owned[r]!.toFixed(0)}, forwarded ${all.foreign[r]!.toFixed(0)} req/s`);
  }
  const l = median(all.lone);
  console.log(`median: lone ${l.toFixed(0)}, owned ${median(all.owned).toFixed(0)} (${(median(all.owned) / l).toFixed(2)}x), forwarded ${median(all.foreign).toFixed(0)} (${(median(all.foreign) / l).toFixed(2)}x)`);
} finally {
  await h.cleanup();
}
