import { describe, expect, test } from "bun:test";
import { PeerSigner, SIGNATURE_HEADERS } from "../../../src/cluster/protocol/signing.ts";

describe("PeerSigner", () => {
  const now = 1_800_000_000_000;
  const signer = () => new PeerSigner({ secret: "cluster-secret", replayWindowMs: 30_000, maxNonces: 3 });
  const headersOf = (h: Record<string, string>) => new Headers(h);

  test("a signed request verifies once; its replay is refused", () => {
    const a = signer();
    const b = signer();
    const h = a.sign("POST", "/internal/replicate", '{"records":[]}', now);
    expect(b.verify("POST", "/internal/replicate", '{"records":[]}', headersOf(h), now + 1000)).toEqual({ ok: true });
    expect(b.verify("POST", "/internal/replicate", '{"records":[]}', headersOf(h), now + 1000)).toEqual({
      ok: false,
      reason: "replayed request",
    });
  });

  test("any change to method, path, body or timestamp breaks the signature", () => {
    const a = signer();
    const h = a.sign("POST", "/internal/replicate", "body", now);
    const v = signer();
    expect(v.verify("PUT", "/internal/replicate", "body", headersOf(h), now).ok).toBe(false);
    expect(v.verify("POST", "/internal/other", "body", headersOf(h), now).ok).toBe(false);
    expect(v.verify("POST", "/internal/replicate", "bodY", headersOf(h), now).ok).toBe(false);
    const shifted = { ...h, [SIGNATURE_HEADERS.timestamp]: String(now + 1) };
    expect(v.verify("POST", "/internal/replicate", "body", headersOf(shifted), now).ok).toBe(false);
  });

  test("a different secret, missing headers and stale timestamps are refused", () => {
    const rogue = new PeerSigner({ secret: "wrong" });
    const v = signer();
    expect(v.verify("POST", "/p", "", headersOf(rogue.sign("POST", "/p", "", now)), now)).toEqual({
      ok: false,
      reason: "bad signature (different cluster secret?)",
    });
    expect(v.verify("POST", "/p", "", new Headers(), now)).toEqual({ ok: false, reason: "missing signature headers" });
    const old = signer().sign("POST", "/p", "", now - 31_000);
    expect(v.verify("POST", "/p", "", headersOf(old), now)).toEqual({ ok: false, reason: "timestamp outside the replay window" });
  });

  test("precheck refuses malformed, stale and replayed headers before any body is read", () => {
    const a = signer();
    const v = signer();
    const h = a.sign("POST", "/p", "body", now);
    expect(v.precheck(headersOf(h), now)).toEqual({ ok: true });
    expect(v.precheck(headersOf({ ...h, [SIGNATURE_HEADERS.signature]: "x" }), now)).toEqual({ ok: false, reason: "malformed signature headers" });
    expect(v.precheck(headersOf(h), now + 31_000)).toEqual({ ok: false, reason: "timestamp outside the replay window" });
    expect(v.precheck(new Headers(), now)).toEqual({ ok: false, reason: "missing signature headers" });
    expect(v.verify("POST", "/p", "body", headersOf(h), now)).toEqual({ ok: true });
    expect(v.precheck(headersOf(h), now)).toEqual({ ok: false, reason: "replayed request" });
  });

  test("the signature is proved from the headers alone, before the body; the body is then held to its signed hash", () => {
    const a = signer();
    const v = signer();
    const h = a.sign("POST", "/p", "body", now);
    // Headers that only look signed (a stranger's) are refused without a body.
    const forged = { ...h, [SIGNATURE_HEADERS.signature]: "ab".repeat(32) };
    expect(v.verifyHead("POST", "/p", headersOf(forged), now)).toEqual({ ok: false, reason: "bad signature (different cluster secret?)" });
    // Another body under a peer's headers: its hash header cannot be changed without breaking the signature.
    expect(v.verifyHead("POST", "/p", headersOf({ ...h, [SIGNATURE_HEADERS.bodyHash]: "cd".repeat(32) }), now).ok).toBe(false);
    expect(v.verifyHead("POST", "/p", headersOf(h), now)).toEqual({ ok: true });
    expect(v.verifyBody("bodY", headersOf(h))).toEqual({ ok: false, reason: "the body does not match its signed hash" });
    expect(v.verifyBody("body", headersOf(h))).toEqual({ ok: true });
    // The nonce is spent at the head: the same headers cannot hold a second read.
    expect(v.verifyHead("POST", "/p", headersOf(h), now)).toEqual({ ok: false, reason: "replayed request" });
    // A signature without the hash header (a node of an older release) is named so.
    const { [SIGNATURE_HEADERS.bodyHash]: _, ...older } = a.sign("POST", "/p", "body", now);
    expect(v.verifyHead("POST", "/p", headersOf(older), now)).toEqual({ ok: false, reason: "signature without a body hash (a node of an older release?)" });
  });

  test("the nonce memory stays bounded", () => {
    const v = signer();
    const a = signer();
    for (let i = 0; i < 10; i++) {
      expect(v.verify("POST", "/p", String(i), headersOf(a.sign("POST", "/p", String(i), now + i)), now + i).ok).toBe(true);
    }
    expect((v as unknown as { seen: Map<string, number> }).seen.size).toBeLessThanOrEqual(3);
  });
});
