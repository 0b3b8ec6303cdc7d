import { defineCommand } from "citty";
import { clientFor, connectionArgs } from "./_connection.ts";
import { parseBucket } from "./_flags.ts";
import { print } from "./_output.ts";

export const dump = defineCommand({
  meta: { name: "dump", description: "Write every record of the cluster (versions, deletes, expiries), each key once, as NDJSON to stdout" },
  args: {
    bucket: { type: "string", description: "Only this bucket (default: all buckets)" },
    local: { type: "boolean", description: "Only the records the node itself holds (GET /dump), not the whole cluster's" },
    ...connectionArgs,
  },
  async run({ args }) {
    const bucket = args.bucket === undefined ? undefined : parseBucket("bucket", args.bucket);
    const client = clientFor(args);
    const body = await client.dump({ bucket, scope: args.local ? "node" : "cluster" });
    // Stream straight through: memory stays flat however large the store.
    for await (const chunk of body) await writeAll(chunk);
  },
});

export const load = defineCommand({
  meta: { name: "load", description: "Merge NDJSON records from stdin (as dump writes them); newer versions win" },
  args: { ...connectionArgs },
  async run({ args }) {
    const client = clientFor(args);
    const result = await client.load(Bun.stdin.stream());
    await print(`loaded ${result.loaded}, skipped ${result.skipped} (already as new or newer)\n`);
  },
});

const writeAll = (chunk: Uint8Array): Promise<void> => print(chunk);
