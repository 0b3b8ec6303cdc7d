import { defineCommand } from "citty";
import { MakhzenClient } from "../client.ts";
import { flag } from "./_flags.ts";

const url = { type: "string", description: "Node URL (default http://127.0.0.1:3000; env MAKHZEN_URL)" } as const;

export const dump = defineCommand({
  meta: { name: "dump", description: "Write every record (versions, deletes, expiries) as NDJSON to stdout" },
  args: {
    bucket: { type: "string", description: "Only this bucket (default: all buckets)" },
    url,
  },
  async run({ args }) {
    const client = new MakhzenClient({ url: flag(args, "url") });
    const body = await client.dump({ bucket: args.bucket });
    // Stream straight through: memory stays flat however large the store.
    for await (const chunk of body) await writeAll(chunk);
  },
});

export const load = defineCommand({
  meta: { name: "load", description: "Merge NDJSON records from stdin (as dump writes them); newer versions win" },
  args: { url },
  async run({ args }) {
    const client = new MakhzenClient({ url: flag(args, "url") });
    const result = await client.load(Bun.stdin.stream());
    process.stdout.write(`loaded ${result.loaded}, skipped ${result.skipped} (already as new or newer)\n`);
  },
});

function writeAll(chunk: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(chunk, (e) => (e ? reject(e) : resolve())));
}
