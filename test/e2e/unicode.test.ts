/**
 * Property: any well-formed string (every JSON escape, every control character,
 * astral characters, U+2028/9, BOM, U+FFFD) survives PUT → replication → data dir
 * → restart → `makhzen dump` → `makhzen load` byte for byte, on every replica;
 * any ill-formed one (a lone surrogate) is refused, and the same way, over PUT and
 * over /load.
 *
 * Real processes are expensive, so the property is checked over one generated set
 * (a few hundred values, written in one go) that goes through each step once.
 */
import { afterEach, expect, test } from "bun:test";
import fc from "fast-check";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { StoredRecord } from "../../src/core/record.ts";
import { run } from "../support/proc.ts";
import { Harness, converged, dump, put, type NodeProcess } from "../support/harness.ts";
import { tempDirs } from "../support/cleanup.ts";

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
const SEED = Number(process.env.MAKHZEN_SEED ?? Math.floor(Math.random() * 2 ** 31));
let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
});
// Removed after each test, after the afterEach above has killed the nodes that use them.
const tempDir = tempDirs("makhzen-unicode-");

// ---- arbitraries ----
const codePoint = (min: number, max: number) => fc.integer({ min, max }).map((c) => String.fromCodePoint(c));
/** One character: weighted towards what JSON and UTF-8 make hard. */
const unit = fc.oneof(
  { arbitrary: codePoint(0, 0x1f), weight: 3 }, // every control character: \n \t … and \u0000-style escapes
  { arbitrary: fc.constantFrom('"', "\\", "/", "\u007f", "\u2028", "\u2029", "\ufeff", "\ufffd", "%", "+", "?", "#", " "), weight: 3 },
  { arbitrary: codePoint(0x20, 0x7e), weight: 2 },
  { arbitrary: codePoint(0x80, 0xd7ff), weight: 1 },
  { arbitrary: codePoint(0xe000, 0xffff), weight: 1 },
  { arbitrary: codePoint(0x10000, 0x10ffff), weight: 3 }, // astral: a surrogate pair in UTF-16
);
const wellFormed = fc.string({ unit, maxLength: 64 });
/** A well-formed string with a lone surrogate put somewhere in it. */
const illFormed = fc
  .tuple(wellFormed, fc.integer({ min: 0xd800, max: 0xdfff }), fc.nat())
  .map(([s, c, at]) => {
    const i = at % (s.length + 1);
    return s.slice(0, i) + String.fromCharCode(c) + s.slice(i);
  })
  .filter((s) => !s.isWellFormed());
// Path keys: "" "." ".." cannot be spelled in a URL path, and U+FFFD in a path key is refused (see decodeKey).
const key = wellFormed.filter((k) => k.length > 0 && !k.includes("\ufffd"));

test(`any well-formed string survives PUT → replication → data dir → restart → dump → load (seed ${SEED})`, async () => {
  h = new Harness();
  const dataDirs = { a: tempDir(), b: tempDir() };
  const args = (name: string) => ["--data-dir", dataDirs[name as "a" | "b"]];
  const [a, b] = await h.cluster(2, { extraArgsFor: args });

  const values = fc.sample(fc.tuple(key, wellFormed), { numRuns: 300, seed: SEED });
  const expected = new Map<string, string>();
  values.forEach(([k, v], i) => expected.set(`${i}:${k}`, v));

  // PUT with w=all, half through each node: the answer is what was sent, and every replica holds it.
  const entries = [...expected];
  for (let i = 0; i < entries.length; i += 25) {
    await Promise.all(
      entries.slice(i, i + 25).map(async ([k, v], j) => {
        const res = await put((i + j) % 2 === 0 ? a! : b!, k, v, "?w=all&timeout=5000");
        const body = (await res.json()) as { key: string; value: string };
        expect({ seed: SEED, k, status: res.status, key: body.key, same: body.value === v }).toEqual({ seed: SEED, k, status: 200, key: k, same: true });
      }),
    );
  }
  const held = await converged([a!, b!]);
  expectExactly(held, expected);

  // Ill-formed strings are refused the same way, as values and as /load records.
  for (const bad of fc.sample(illFormed, { numRuns: 40, seed: SEED })) {
    const res = await put(a!, "bad", bad);
    expect({ bad: JSON.stringify(bad), status: res.status, code: ((await res.json()) as any).error.code }).toEqual({
      bad: JSON.stringify(bad),
      status: 422,
      code: "INVALID_UNICODE",
    });
    for (const record of [
      { bucket: "default", key: "bad", value: bad, version: held[0]!.version },
      { bucket: "default", key: bad, value: "v", version: held[0]!.version },
    ]) {
      const load = await fetch(`${a!.url}/load`, { method: "POST", body: JSON.stringify(record) + "\n" });
      expect({ bad: JSON.stringify(bad), status: load.status }).toEqual({ bad: JSON.stringify(bad), status: 422 });
    }
  }

  // Both nodes down; each comes back from its data dir alone (a first, with no peer to refill it).
  await stop(a!);
  await stop(b!);
  // No member list is kept on disk, and both are down: new ports will do.
  const a2 = await h.start("a", { extraArgs: args("a") });
  expect(JSON.stringify(await dump(a2))).toBe(JSON.stringify(held));
  const b2 = await h.start("b", { peers: [a2.url], extraArgs: args("b") });
  expect(JSON.stringify(await dump(b2))).toBe(JSON.stringify(held));

  // Through the CLI: dump a node, load the file into a fresh one.
  const dumped = await run([process.execPath, MAIN, "dump", "--url", a2.url]);
  expect(dumped.code).toBe(0);
  expect(dumped.stdout.trimEnd().split("\n").map((l) => JSON.parse(l))).toEqual(held);
  const file = join(tempDir(), "backup.ndjson");
  writeFileSync(file, dumped.stdout);
  const fresh = await h.start("c");
  const loaded = await run([process.execPath, MAIN, "load", "--url", fresh.url], { stdin: Bun.file(file) });
  expect(loaded.stdout).toBe(`loaded ${held.length}, skipped 0 (already as new or newer)\n`);
  expect(JSON.stringify(await dump(fresh))).toBe(JSON.stringify(held));
}, 60_000);

/** Every generated key holds exactly its value (compared as strings, code unit for code unit), and nothing else is held. */
function expectExactly(records: StoredRecord[], expected: Map<string, string>): void {
  const live = records.filter((r) => r.value !== null);
  expect(live.length).toBe(expected.size);
  for (const r of live) {
    const want = expected.get(r.key);
    if (r.value !== want) throw new Error(`seed ${SEED}: ${JSON.stringify(r.key)} holds ${JSON.stringify(r.value)}, not ${JSON.stringify(want)}`);
  }
}

async function stop(node: NodeProcess): Promise<void> {
  node.signal("SIGTERM");
  expect(await node.exited).toBe(0);
}
