import { describe, expect, test } from "bun:test";
import { bearerToken, secretMatches, tokenAccess } from "../../src/ops/tokens.ts";

describe("tokens", () => {
  test("bearer parsing", () => {
    expect(bearerToken("Bearer abc")).toBe("abc");
    expect(bearerToken("bearer   abc ")).toBe("abc");
    expect(bearerToken("Basic abc")).toBeUndefined();
    expect(bearerToken(null)).toBeUndefined();
    expect(bearerToken("Bearer")).toBeUndefined();
  });

  test("secretMatches compares whole secrets", () => {
    expect(secretMatches("s3cret", "s3cret")).toBe(true);
    expect(secretMatches("s3cre", "s3cret")).toBe(false);
    expect(secretMatches("s3cretx", "s3cret")).toBe(false);
    expect(secretMatches(undefined, "s3cret")).toBe(false);
    expect(secretMatches("", "s3cret")).toBe(false);
  });

  test("tokenAccess tells the write token from the read token, and neither from a stranger", () => {
    const access = tokenAccess("write-token", "read-token");
    expect(access("write-token")).toBe("write");
    expect(access("read-token")).toBe("read");
    expect(access("read-toke")).toBeUndefined();
    expect(access("write-tokenx")).toBeUndefined();
    expect(access("")).toBeUndefined();
    expect(access(undefined)).toBeUndefined();
    const writeOnly = tokenAccess("write-token");
    expect(writeOnly("write-token")).toBe("write");
    expect(writeOnly("read-token")).toBeUndefined();
  });
});
