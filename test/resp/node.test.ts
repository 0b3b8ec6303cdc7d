/**
 * The Redis listener's place in a node: off unless asked, bound and reported by
 * listen(), validated with the rest of the config, and stopped by close().
 */
import { describe, expect, test } from "bun:test";
import { resolveConfig } from "../../src/config.ts";
import { createNode } from "../../src/node.ts";
import { closeAfterEach } from "../support/cleanup.ts";
import { frame, RawConnection, respNode } from "./support.ts";

const track = closeAfterEach();

describe("respPort", () => {
  test("is off unless given: listen() reports no Redis URL", async () => {
    const node = track(createNode({ port: 0 }));
    const answer = await node.listen();
    expect(answer.respPort).toBeUndefined();
    expect(answer.respUrl).toBeUndefined();
  });

  test("is validated with the config, naming the field", () => {
    expect(() => resolveConfig({ respPort: 70000 })).toThrow("respPort must be an integer from 0 to 65535, not 70000");
    expect(() => resolveConfig({ port: 7000, respPort: 7000 })).toThrow("respPort must differ from port");
    expect(resolveConfig({ port: 0, respPort: 0 }).respPort).toBe(0);
  });

  test("listen() reports the bound port and URL; close() stops the listener", async () => {
    const r = await respNode();
    track(r.node);
    expect(r.respPort).toBeGreaterThan(0);
    const c = track(await RawConnection.open(r.respPort));
    c.send(frame("PING"));
    await c.expect("+PONG\r\n");
    await r.node.close();
    await c.waitClosed();
    await expect(RawConnection.open(r.respPort)).rejects.toThrow();
  });
});
