/**
 * The peer-protocol models take exactly what a node produces and validates
 * elsewhere: node names as --name takes them, versions as the clock stamps them,
 * buckets as the items API takes them, keys up to the largest --max-key-bytes, and
 * the digest's groups, leaves and hashes in its own sizes. A model that drifted
 * from the module owning the concept would refuse good peers or let bad input in.
 */
import { afterAll, describe, expect, test } from "bun:test";
import {
  checker,
  FetchRequest,
  GroupsAnswer,
  KeysAnswer,
  KeysRequest,
  LeaveRequest,
  LeavesAnswer,
  LeavesRequest,
} from "../../../src/cluster/protocol/messages.ts";
import { Digest, GROUPS, GROUP_SIZE, LEAVES, leafOf } from "../../../src/cluster/digest.ts";
import { formatVersion, isVersion, MAX_COUNTER, NODE_NAME_MAX } from "../../../src/core/version.ts";
import { contentHash, contentHex, KEY_BYTES_CEILING } from "../../../src/core/record.ts";
import { hexHalves } from "../../../src/core/fingerprint.ts";
import { resolveConfig } from "../../../src/config.ts";
import { createNode } from "../../../src/node.ts";

/** Whether `check(value)` returns rather than throws. */
const accepts = (check: (v: never) => unknown, value: unknown): boolean => {
  try {
    check(value as never);
    return true;
  } catch {
    return false;
  }
};
const leave = checker(LeaveRequest, "leave");
const keys = checker(KeysAnswer, "keys");
const fetchRequest = checker(FetchRequest, "fetch");

const node = createNode({ port: 0, name: "models" });
afterAll(() => node.close());

describe("patterns: the wire agrees with the module that owns each", () => {
  test("node names: a member's name is taken exactly when --name would be", () => {
    const names = ["a", "node-1", "10.0.0.1:3000", "[::1]:3000", "me@host", "n".repeat(NODE_NAME_MAX), "n".repeat(NODE_NAME_MAX + 1), "", "a b", 'a"b', "a,b", "é"];
    for (const name of names) {
      const byConfig = accepts(() => resolveConfig({ name }), undefined);
      expect({ name, wire: accepts(leave, { name, incarnation: 1 }) }).toEqual({ name, wire: byConfig });
    }
  });

  test("versions: what the clock stamps is taken, what isVersion refuses is refused", () => {
    const longest = formatVersion(10 ** 15 - 1, MAX_COUNTER, "n".repeat(NODE_NAME_MAX));
    const samples = [longest, formatVersion(1, 0, "a"), `${longest}n`, "1-0-a", "001764021234567-000000-", "001764021234567-000000-a b", "x".repeat(200)];
    for (const version of samples) {
      const wire = accepts(keys, { entries: [{ bucket: "default", key: "k", version }] });
      expect({ version, wire }).toEqual({ version, wire: isVersion(version) });
    }
    expect(isVersion(longest)).toBe(true);
  });

  test("buckets: a bucket is taken exactly when the items API takes it", () => {
    for (const bucket of ["default", "a.b_c-d", "b".repeat(64), "b".repeat(65), "", "a/b", "a b", "ä"]) {
      const local = accepts(() => node.bucket(bucket).get("k"), undefined);
      expect({ bucket, wire: accepts(fetchRequest, { keys: [{ bucket, key: "k" }] }) }).toEqual({ bucket, wire: local });
    }
  });

  test("keys: up to the largest --max-key-bytes a node may be given, and no further", () => {
    expect(resolveConfig({ maxKeyBytes: KEY_BYTES_CEILING }).maxKeyBytes).toBe(KEY_BYTES_CEILING);
    expect(() => resolveConfig({ maxKeyBytes: KEY_BYTES_CEILING + 1 })).toThrow();
    expect(accepts(fetchRequest, { keys: [{ bucket: "default", key: "k".repeat(KEY_BYTES_CEILING) }] })).toBe(true);
    expect(accepts(fetchRequest, { keys: [{ bucket: "default", key: "k".repeat(KEY_BYTES_CEILING + 1) }] })).toBe(false);
  });
});

describe("sizes: the digest's messages carry the digest's shapes", () => {
  const digest = new Digest();
  for (let i = 0; i < 1000; i++) digest.update("default", `k${i}`, undefined, { version: formatVersion(1, i, "a"), hash: contentHash({ value: `v${i}` }) });
  const allGroups = Array.from({ length: GROUPS }, (_, g) => g);

  test("a real digest's group hashes and leaf hashes pass; one more or one less does not", () => {
    const groups = checker(GroupsAnswer, "groups");
    const leaves = checker(LeavesAnswer, "leaves");
    expect(accepts(groups, { groups: digest.groupHashes() })).toBe(true);
    expect(accepts(groups, { groups: digest.groupHashes().slice(1) })).toBe(false);
    expect(accepts(groups, { groups: [...digest.groupHashes(), "0"] })).toBe(false);
    expect(accepts(leaves, { leaves: digest.leafHashes(allGroups) })).toBe(true);
    expect(accepts(leaves, { leaves: [digest.leafHashes([0])[0]!.slice(1)] })).toBe(false);
    expect(digest.leafHashes([0])[0]).toHaveLength(GROUP_SIZE);
  });

  test("every group and every leaf a digest has can be asked for, and none past them", () => {
    const leavesRequest = checker(LeavesRequest, "leaves");
    const keysRequest = checker(KeysRequest, "keys");
    expect(accepts(leavesRequest, { groups: allGroups })).toBe(true);
    expect(accepts(leavesRequest, { groups: [GROUPS] })).toBe(false);
    expect(accepts(keysRequest, { leaves: [0, LEAVES - 1, leafOf("default", "k1")] })).toBe(true);
    expect(accepts(keysRequest, { leaves: [LEAVES] })).toBe(false);
  });

  test("record hashes as the digest writes them pass, in any value", () => {
    for (const hash of [hexHalves(0, 0), hexHalves(1, 0), contentHex({ value: "v" }), contentHex({ value: null }), hexHalves(0xffff_ffff, 0xffff_ffff)]) {
      expect(accepts(keys, { entries: [{ bucket: "default", key: "k", version: formatVersion(1, 0, "a"), hash }] })).toBe(true);
    }
    expect(accepts(keys, { entries: [{ bucket: "default", key: "k", version: formatVersion(1, 0, "a"), hash: "ABCDEF0123456789" }] })).toBe(false);
  });
});
