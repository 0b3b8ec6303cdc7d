import { describe, expect, test } from "bun:test";
import { Digest, differing, GROUPS, LEAVES, leafOf, recordId, splitId } from "../src/digest.ts";

const v = (n: number) => `${String(n).padStart(15, "0")}-000000-a`;

describe("digest", () => {
  test("equal record sets give equal digests whatever the order of updates", () => {
    const a = new Digest();
    const b = new Digest();
    for (let i = 0; i < 500; i++) a.update("b", `k${i}`, undefined, v(i));
    for (let i = 499; i >= 0; i--) b.update("b", `k${i}`, undefined, v(0));
    for (let i = 0; i < 500; i++) b.update("b", `k${i}`, v(0), v(i)); // replaced in place
    expect(a.groupHashes()).toEqual(b.groupHashes());
  });

  test("one changed record changes exactly one group and one leaf", () => {
    const a = new Digest();
    const b = new Digest();
    for (let i = 0; i < 1000; i++) {
      a.update("b", `k${i}`, undefined, v(1));
      b.update("b", `k${i}`, undefined, v(1));
    }
    b.update("b", "k7", v(1), v(2));
    const groups = differing(a.groupHashes(), b.groupHashes());
    expect(groups).toHaveLength(1);
    const leaf = leafOf("b", "k7");
    expect(groups[0]).toBe(Math.floor(leaf / (LEAVES / GROUPS)));
    const [la] = a.leafHashes(groups);
    const [lb] = b.leafHashes(groups);
    expect(differing(la!, lb!)).toEqual([leaf % (LEAVES / GROUPS)]);
    expect([...b.idsIn(leaf)]).toContain(recordId("b", "k7"));
  });

  test("a purge removes the record's hash and its id", () => {
    const d = new Digest();
    d.update("b", "k", undefined, v(1));
    expect(d.leafSize(leafOf("b", "k"))).toBe(1);
    d.update("b", "k", v(1), undefined);
    expect(d.leafSize(leafOf("b", "k"))).toBe(0);
    expect([...d.idsIn(leafOf("b", "k"))]).toEqual([]);
    expect(new Set(d.groupHashes())).toEqual(new Set(["0000000000000000"]));
  });

  test("record ids split back into bucket and key, whatever the key holds", () => {
    expect(splitId(recordId("bkt", "a\u0000b/c"))).toEqual({ bucket: "bkt", key: "a\u0000b/c" });
  });
});
