/**
 * What README's HTTP API section says about queries and /load, held to the code:
 * the section had said `?ttl=` beside JSON was "refused rather than ignored" while
 * item routes dropped any parameter they did not read, and listed a /load line of
 * the wrong shape as 422 where the route answers 400.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { QUERY } from "../../src/http/query.ts";
import { createNode } from "../../src/node.ts";
import { call } from "../support/http.ts";
import { closeAfterEach } from "../support/cleanup.ts";

const README = readFileSync(resolve(import.meta.dir, "../../README.md"), "utf8");
const bullet = (title: string): string => {
  const line = README.split("\n").find((l) => l.startsWith(`- **${title}`));
  if (line === undefined) throw new Error(`README has no "${title}" bullet`);
  return line;
};
const track = closeAfterEach();

describe("README's HTTP API section", () => {
  test("the query bullet lists what each route takes, as the routes' rules (query.ts) have it, and says nothing is ignored", () => {
    const text = bullet("Query parameters");
    expect(text).toContain("nothing is ignored");
    for (const rule of Object.values(QUERY)) {
      if (rule.names.length > 0) expect({ route: rule.route, text }).toEqual({ route: rule.route, text: expect.stringContaining(rule.names.map((n) => `\`${n}\``).join(", ")) });
    }
    expect(text).toContain("422 `VALIDATION`");
  });

  test("the keys bullet says buckets `.` and `..` are refused beside keys `.` and `..` (test/http/dot-bucket.test.ts holds the routes to it)", () => {
    const text = bullet("Keys");
    expect(text).toContain("The keys `.` and `..` are refused everywhere");
    expect(text).toContain("cannot name the buckets `.` and `..` either");
    expect(text).toContain("400 `INVALID_BUCKET`");
  });

  test("the errors bullet gives a /load line of the wrong shape the status the route answers", async () => {
    const node = track(createNode({ name: "readme" }));
    const line = JSON.stringify({ bucket: "default", key: "k" }); // no value, no version
    const a = await call(node, "POST", "/load", { body: `${line}\n` });
    expect([a.status, a.json.error.code]).toEqual([400, "BAD_REQUEST"]);
    expect(bullet("Errors")).toContain("`POST /load` answers a bad line 400 `BAD_REQUEST` naming the line, a line of the wrong shape included");
  });
});
