import { describe, expect, test } from "bun:test";
import { closestNames, didYouMean, editDistance } from "../../src/ops/suggest.ts";

const NAMES = ["port", "host", "maxMemoryBytes", "maxValueBytes", "maxKeyBytes", "requestTimeoutMs", "bodyTimeoutMs", "idleTimeoutMs", "clusterSecret"];

describe("closestNames", () => {
  test("case and separators do not matter", () => {
    expect(closestNames("max-memory-bytes", NAMES)).toEqual(["maxMemoryBytes"]);
    expect(closestNames("PORT", NAMES)).toEqual(["port"]);
  });

  test("a unit left off or added is a prefix", () => {
    expect(closestNames("maxMemory", NAMES)).toEqual(["maxMemoryBytes"]);
    expect(closestNames("portNumber", NAMES)).toEqual(["port"]);
  });

  test("typos: one edit per four characters, a swap of neighbours counting one", () => {
    expect(closestNames("prot", NAMES)).toEqual(["port"]);
    expect(closestNames("maxMemroyBytes", NAMES)).toEqual(["maxMemoryBytes"]);
    expect(closestNames("hots", NAMES)).toEqual(["host"]);
    expect(closestNames("pxyz", NAMES)).toEqual([]);
  });

  test("a word inside a name, closest length first, at most three", () => {
    expect(closestNames("secret", NAMES)).toEqual(["clusterSecret"]);
    expect(closestNames("timeout", NAMES)).toEqual(["bodyTimeoutMs", "idleTimeoutMs", "requestTimeoutMs"]);
  });

  test("an earlier rule wins over a later one", () => {
    // "maxKey" is a prefix of maxKeyBytes (rule 2) and within edit distance of nothing else that matters.
    expect(closestNames("maxKey", NAMES)).toEqual(["maxKeyBytes"]);
  });

  test("nothing for nothing", () => {
    expect(closestNames("", NAMES)).toEqual([]);
    expect(closestNames("--", NAMES)).toEqual([]);
  });
});

test("didYouMean phrases one, several or none", () => {
  expect(didYouMean("prot", NAMES)).toBe('; did you mean "port"?');
  expect(didYouMean("timeout", NAMES)).toBe('; did you mean "bodyTimeoutMs", "idleTimeoutMs" or "requestTimeoutMs"?');
  expect(didYouMean("zzz", NAMES)).toBe("");
});

test("editDistance: insertions, deletions, substitutions and swaps", () => {
  expect(editDistance("", "abc")).toBe(3);
  expect(editDistance("abc", "abc")).toBe(0);
  expect(editDistance("abc", "acb")).toBe(1);
  expect(editDistance("kitten", "sitting")).toBe(3);
});
