import { afterAll, describe, expect, test } from "bun:test";
import { createNode } from "../../../src/node.ts";
import { HttpTransport } from "../../../src/cluster/protocol/http-transport.ts";
import { MemoryTransport } from "../../../src/cluster/protocol/memory-transport.ts";
import { PeerError, type PeerService, type PeerTransport } from "../../../src/cluster/protocol/peer-ops.ts";
import { core } from "../../support/core.ts";
import { recordTupleJson } from "../../../src/cluster/protocol/record-wire.ts";
import { GROUPS } from "../../../src/cluster/digest.ts";

/**
 * One contract, two transports: what the core relies on from a PeerTransport holds
 * for the real HTTP one (against a listening node) and for the in-memory one the
 * unit tests use.
 */
const httpNode = createNode({ name: "http-peer", port: 0 });
/** A peer that takes every request and never answers (a process stuck in a loop, or SIGSTOPped). */
const hungServer = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Promise<Response>(() => {}) });
afterAll(async () => {
  await httpNode.close();
  await hungServer.stop(true);
});

const never = () => new Promise<never>(() => {});
const hungService = new Proxy({}, { get: () => never }) as PeerService;

/** A node's core on the in-memory network (test/support/core.ts), as the memory side of the contract. */
function memoryPeer(): { transport: MemoryTransport; url: string; hung: string } {
  const transport = new MemoryTransport();
  transport.register("mem://hung", hungService);
  return { transport, url: core("mem-peer", transport).url, hung: "mem://hung" };
}

const setups: [string, () => Promise<{ transport: PeerTransport; url: string; dead: string; hung: string }>][] = [
  [
    "http",
    async () => ({
      transport: new HttpTransport(),
      url: (await httpNode.listen()).url,
      dead: "http://127.0.0.1:1",
      hung: `http://127.0.0.1:${hungServer.port}`,
    }),
  ],
  ["memory", async () => ({ ...memoryPeer(), dead: "mem://nobody" })],
];

for (const [name, setup] of setups) {
  describe(`PeerTransport contract: ${name}`, () => {
    test("records pushed as a ready JSON string can be fetched and scanned back", async () => {
      const { transport, url } = await setup();
      const version = `${String(Date.now()).padStart(15, "0")}-000000-z`;
      const rec = { bucket: "default", key: "contract", value: "v", version, expiresAt: Date.now() + 60_000 };
      expect(await transport.call(url, "records", `{"records":[${recordTupleJson(rec)}]}`, 1000)).toEqual({
        applied: 1,
        refused: 0,
      });
      expect((await transport.call(url, "fetch", { keys: [{ bucket: "default", key: "contract" }] }, 1000)).records).toEqual([rec]);
      const page = await transport.call(url, "scan", { limit: 10 }, 1000);
      expect(page.records).toContainEqual(rec);
      expect((await transport.call(url, "groups", {}, 1000)).groups).toHaveLength(GROUPS);
    });

    test("an invalid request is refused with VALIDATION, as a PeerError with the HTTP status", async () => {
      const { transport, url } = await setup();
      const err = await transport.call(url, "leaves", { groups: [GROUPS] }, 1000).catch((e) => e);
      expect(err).toBeInstanceOf(PeerError);
      expect(err).toMatchObject({ status: 422, code: "VALIDATION" });
    });

    // `records` (replication batches) and the other ops go different ways over http (http-client.ts, fetch): both are held to these.
    for (const [op, body] of [
      ["groups", {}],
      ["records", '{"records":[]}'],
    ] as const) {
      test(`${op}: an aborted call rejects with ABORTED`, async () => {
        const { transport, url } = await setup();
        const abort = new AbortController();
        abort.abort();
        const err = await transport.call(url, op, body, 1000, abort.signal).catch((e) => e);
        expect(err).toBeInstanceOf(PeerError);
        expect(err).toMatchObject({ status: 0, code: "ABORTED" });
      });

      test(`${op}: an unreachable peer rejects with status 0`, async () => {
        const { transport, dead } = await setup();
        const err = await transport.call(dead, op, body, 500).catch((e) => e);
        expect(err).toBeInstanceOf(PeerError);
        expect((err as PeerError).status).toBe(0);
      });

      test(`${op}: a peer that never answers fails the call at its timeout with UNREACHABLE, not later`, async () => {
        const { transport, hung } = await setup();
        const t0 = performance.now();
        const err = await transport.call(hung, op, body, 200).catch((e) => e);
        const tookMs = performance.now() - t0;
        expect(err).toBeInstanceOf(PeerError);
        expect(err).toMatchObject({ status: 0, code: "UNREACHABLE" });
        expect((err as PeerError).message).toBe(`${hung} ${op}: no answer within 200 ms`);
        expect(tookMs).toBeGreaterThanOrEqual(190);
        expect(tookMs).toBeLessThan(2000);
      });

      test(`${op}: an abort ends the wait for a peer that never answers`, async () => {
        const { transport, hung } = await setup();
        const abort = new AbortController();
        setTimeout(() => abort.abort(), 50);
        const err = await transport.call(hung, op, body, 10_000, abort.signal).catch((e) => e);
        expect(err).toBeInstanceOf(PeerError);
        expect(err).toMatchObject({ status: 0, code: "ABORTED" });
      });
    }
  });
}
