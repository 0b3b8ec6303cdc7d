import { defineCommand } from "citty";
import type { MakhzenClient } from "../client/client.ts";
import { connectionArgs, clientFor as connect } from "./_connection.ts";
import { CliError, usageError } from "./_errors.ts";
import { print } from "./_output.ts";
import { flagFrom, parseBucket, parseInteger, parseTtlSeconds } from "./_flags.ts";

const connection = {
  ...connectionArgs,
  bucket: { type: "string", description: "Bucket (default: default; env MAKHZEN_BUCKET)" },
} as const;

function clientFor(args: Record<string, unknown>): MakhzenClient {
  const bucket = flagFrom(args, "bucket");
  return connect(args, bucket === undefined ? undefined : parseBucket(bucket.from, bucket.value));
}

const out = (line: string): Promise<void> => print(line + "\n");

export const get = defineCommand({
  meta: { name: "get", description: "Print the value of KEY (exit 1 if absent)" },
  args: {
    key: { type: "positional", required: true, description: "The key" },
    json: { type: "boolean", description: "Print the whole record as JSON" },
    ...connection,
  },
  async run({ args }) {
    const item = await clientFor(args).get(args.key);
    if (!item) throw new CliError(`key ${JSON.stringify(args.key)} not found`);
    if (args.json) return out(JSON.stringify(item));
    // A value that is bytes goes out as its bytes, with nothing added (`get k > file`
    // gives them back), as redis-cli prints them: its base64 would pass for text.
    if (item.encoding === "base64") return print(Buffer.from(item.value, "base64"));
    await out(item.value);
  },
});

export const put = defineCommand({
  meta: { name: "put", description: "Set KEY to VALUE (- reads the value from stdin)" },
  args: {
    key: { type: "positional", required: true, description: "The key" },
    value: { type: "positional", required: true, description: "The value; - reads it from stdin, as it is (a final newline included)" },
    ttl: { type: "string", description: "Expire after this long: 10s, 5m, 1h, 7d; a bare number is seconds" },
    json: { type: "boolean", description: "Print the stored record as JSON" },
    ...connection,
  },
  async run({ args }) {
    const ttl = args.ttl === undefined ? undefined : parseTtlSeconds("ttl", args.ttl);
    const client = clientFor(args);
    // The command line reaches the process decoded as UTF-8, each byte that is not replaced by U+FFFD: the
    // bytes typed are gone, and storing the replacement acknowledged a value nobody sent. Stdin keeps bytes.
    if (args.value !== "-" && args.value.includes("\uFFFD")) {
      throw usageError("VALUE holds U+FFFD, what a byte that is not UTF-8 becomes on the command line, so the bytes typed cannot be known: give the value on stdin (put KEY - < file), which keeps bytes as they are");
    }
    const value = args.value === "-" ? await readStdin() : args.value;
    const item = await client.put(args.key, value, { ttl });
    await out(args.json ? JSON.stringify(item) : "OK");
  },
});

export const del = defineCommand({
  meta: { name: "del", description: "Delete KEY (exit 1 if absent)" },
  args: {
    key: { type: "positional", required: true, description: "The key" },
    ...connection,
  },
  async run({ args }) {
    if (!(await clientFor(args).delete(args.key))) throw new CliError(`key ${JSON.stringify(args.key)} not found`);
    await out("OK");
  },
});

export const ls = defineCommand({
  meta: { name: "ls", description: "List keys in order, following pages to the end" },
  args: {
    prefix: { type: "string", description: "Only keys starting with this" },
    limit: { type: "string", description: "Stop after this many keys" },
    json: { type: "boolean", description: "Print one JSON record per line" },
    ...connection,
  },
  async run({ args }) {
    const max = args.limit === undefined ? Infinity : parseInteger("limit", args.limit, 1, Number.MAX_SAFE_INTEGER);
    let printed = 0;
    // A partitioned cluster with partitions out of reach lists what it can read: print
    // that, then fail, so a script does not take it for every key.
    let missed = 0;
    const owners = new Set<string>();
    const onIncomplete = (i: { partitions: number; members: string[] }) => {
      missed = Math.max(missed, i.partitions);
      for (const m of i.members) owners.add(m);
    };
    // Lines go out a thousand at a time, each batch awaited (see _output.ts).
    let lines = "";
    let buffered = 0;
    for await (const item of clientFor(args).listAll({ prefix: args.prefix, limit: Math.min(1000, max) }, onIncomplete)) {
      if (printed++ >= max) break;
      lines += (args.json ? JSON.stringify(item) : item.key) + "\n";
      if (++buffered === 1000) {
        await print(lines);
        lines = "";
        buffered = 0;
      }
    }
    if (lines) await print(lines);
    if (missed > 0) {
      throw new CliError(`the listing is incomplete: up to ${missed} partitions had no reachable owner or holder (owners: ${[...owners].sort().join(", ")})`);
    }
  },
});

/**
 * All of stdin as the value, byte for byte, as `redis-cli -x` takes it (a final
 * newline stays: `printf` or `echo -n` leave it out). Bytes that are not UTF-8 are
 * stored as a binary value (as a Redis client's would be), never as U+FFFD.
 */
async function readStdin(): Promise<string | Uint8Array> {
  const bytes = await Bun.stdin.bytes();
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return bytes;
  }
}
