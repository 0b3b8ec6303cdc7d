/**
 * Helpers for in-process HTTP tests: one exchange through `node.handle`, the error
 * envelope assertion, and a seeded PRNG for randomized tests.
 */
import { expect } from "bun:test";
import type { MakhzenNode } from "../../src/node.ts";

/** Everything a test usually wants from one in-process HTTP exchange. */
export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed body, or undefined when it is not JSON. */
  json: any;
}

export interface CallOptions {
  /** A string is sent as is; any other value is JSON-encoded. */
  body?: unknown;
  headers?: Record<string, string>;
}

/** Sends one request through `node.handle`, no socket. The host must look real (Elysia's router). */
export async function call(node: MakhzenNode, method: string, path: string, opts: CallOptions = {}): Promise<Answer> {
  const init: RequestInit & { duplex?: string } = { method, headers: opts.headers };
  if (opts.body !== undefined) {
    const b = opts.body;
    if (typeof b === "string" || b instanceof Uint8Array) init.body = b;
    else if (b instanceof ReadableStream) {
      init.body = b;
      init.duplex = "half"; // a streamed request body needs it
    } else init.body = JSON.stringify(b);
  }
  const res = await node.handle(new Request(`http://localhost${path}`, init));
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** Asserts a 4xx answer carrying exactly the envelope {"error":{"code","message"}}. */
export function expectClientError(a: Answer, status?: number, code?: string): void {
  expect(a.status).toBeGreaterThanOrEqual(400);
  expect(a.status).toBeLessThan(500);
  expectErrorEnvelope(a, status, code);
}

/** Asserts an error answer carrying exactly the envelope {"error":{"code","message"}}, any status. */
export function expectErrorEnvelope(a: Answer, status?: number, code?: string): void {
  if (status !== undefined) expect(a.status).toBe(status);
  expect(a.headers.get("content-type") ?? "").toContain("application/json");
  expect(Object.keys(a.json ?? {})).toEqual(["error"]);
  expect(Object.keys(a.json.error).sort()).toEqual(["code", "message"]);
  expect(typeof a.json.error.code).toBe("string");
  expect(a.json.error.code.length).toBeGreaterThan(0);
  expect(typeof a.json.error.message).toBe("string");
  expect(a.json.error.message.length).toBeGreaterThan(0);
  if (code !== undefined) expect(a.json.error.code).toBe(code);
}

/** A small seeded PRNG (mulberry32): randomized tests reproduce from their seed. */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
