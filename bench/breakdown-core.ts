/**
 * Where the time of a PUT and a GET goes, piece by piece, in process: ns per call of
 * each step of the write and read paths (the body reader, TypeBox, the HLC, the map,
 * the digest, the view, a Response), each timed alone in a loop, so a change to one
 * piece shows without sockets or wrk. Each figure is the median of `--rounds` runs of
 * `--n` calls; the machine's other load moves all of them alike.
 *
 *   bun bench/breakdown-core.ts [--rounds 5] [--n 200000]
 */
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { createCore } from "../src/create-core.ts";
import { resolveConfig } from "../src/config.ts";
import { contentHash, recordId, toItem, type StoredRecord } from "../src/core/record.ts";
import { ItemBody } from "../src/http/models.ts";
import { ItemsService } from "../src/service.ts";
import { Digest } from "../src/cluster/digest.ts";
import { KEYS, VALUE, machine, median, option } from "./_lib.ts";

const ROUNDS = Number(option("rounds", "5"));
const N = Number(option("n", "200000"));

const config = resolveConfig({ name: "bench" });
const core = createCore({ config, onWrite: () => {} });
const service = new ItemsService({ items: core.items, store: core.store, config });
for (let i = 0; i < KEYS; i++) core.items.set("default", `key-${i}`, VALUE);
const keys = Array.from({ length: KEYS }, (_, i) => `key-${i}`);
const body = JSON.stringify({ value: VALUE });
const bytes = new TextEncoder().encode(body);
const utf8 = new TextDecoder("utf-8", { fatal: true });
const check = TypeCompiler.Compile(ItemBody);
const record: StoredRecord = { bucket: "default", key: "key-1", value: VALUE, version: core.clock.now() };
const headers = new Headers({ "content-type": "application/json", etag: `"${record.version}"` });
const json = JSON.stringify(toItem(record));
const digest = new Digest();
const stamp = { version: record.version, hash: contentHash(record) };
let fresh = 0;
let sink: unknown;

const steps: Record<string, (i: number) => unknown> = {
  "new Request (PUT, string body)": (i) => new Request(`http://127.0.0.1/items/${keys[i % KEYS]}`, { method: "PUT", body }),
  "new URL(request.url)": (i) => new URL(`http://127.0.0.1/items/${keys[i % KEYS]}?w=1`),
  "TextDecoder.decode + JSON.parse (body)": () => JSON.parse(utf8.decode(bytes)),
  "TypeBox compiled Check (ItemBody)": () => check.Check({ value: VALUE }),
  "setTimeout + clearTimeout (body timer)": () => clearTimeout(setTimeout(() => {}, 30000)),
  "clock.now() (HLC + formatVersion)": () => core.clock.now(),
  "recordId(bucket, key)": (i) => recordId("default", keys[i % KEYS]!).length,
  "contentHash(record)": () => contentHash(record),
  "digest.update (overwrite: a version read, recordSum)": (i) => digest.update("default", keys[i % KEYS]!, stamp, stamp),
  "Buffer.byteLength(value)": () => Buffer.byteLength(VALUE, "utf8"),
  "value.isWellFormed()": () => VALUE.isWellFormed(),
  "store.get (map lookup, LRU off)": (i) => core.store.get("default", keys[i % KEYS]!),
  "items.set overwrite (checks, HLC, apply, digest)": (i) => core.items.set("default", keys[i % KEYS]!, VALUE),
  "items.set fresh key (+ map insert, sorted keys, digest set)": () => core.items.set("default", `fresh-${fresh++}`, VALUE),
  "service.set overwrite": (i) => service.set("default", keys[i % KEYS]!, VALUE),
  "toItem + JSON.stringify (PUT answer body)": () => JSON.stringify(toItem(record)),
  "new Response(json, {headers: object})": () => new Response(json, { headers: { "content-type": "application/json", etag: `"${record.version}"` } }),
  "new Response(json, {headers: Headers})": () => new Response(json, { headers }),
  "service.getView (cached)": (i) => service.getView("default", keys[i % KEYS]!, (r) => r),
};

function time(fn: (i: number) => unknown): number {
  const t0 = Bun.nanoseconds();
  for (let i = 0; i < N; i++) sink = fn(i);
  return (Bun.nanoseconds() - t0) / N;
}

const results: Record<string, number[]> = {};
for (const [name, fn] of Object.entries(steps)) time(fn); // warm-up
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, fn] of Object.entries(steps)) {
    if (name.includes("fresh")) Bun.gc(false);
    (results[name] ??= []).push(time(fn));
  }
}
void sink;
console.log(`Command: \`bun bench/breakdown-core.ts --rounds ${ROUNDS} --n ${N}\` (ns per call, medians of ${ROUNDS})\nMachine: ${machine()}\n\n| step | ns/call |\n|---|---:|`);
for (const [name, xs] of Object.entries(results)) console.log(`| ${name} | ${median(xs).toFixed(0)} |`);
