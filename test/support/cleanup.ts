/**
 * Closing what a test opened, whether it passed or not: a failed assertion must
 * leak no timer, socket or process into the tests after it.
 */
import { afterEach } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

type Closable = { close(): unknown } | AsyncDisposable | Disposable;

export interface Track {
  /** Closes `thing` after the test (Symbol.asyncDispose, Symbol.dispose or close()); returns it. */
  <T extends Closable>(thing: T): T;
  /** Closes `thing` after the test with `close`; returns it. */
  <T>(thing: T, close: (thing: T) => unknown): T;
}

/**
 * Registers an afterEach (call it once, at the top of a file or a describe) that
 * closes everything given to the returned `track` during the test, newest first.
 * Closing twice must be harmless: a test may close a thing itself, at the moment it
 * tests. Every close runs even when one throws; the first error is rethrown.
 */
export function closeAfterEach(): Track {
  const open: (() => unknown)[] = [];
  afterEach(async () => {
    let failed: { error: unknown } | undefined;
    for (const close of open.splice(0).reverse()) {
      try {
        await close();
      } catch (error) {
        failed ??= { error };
      }
    }
    if (failed) throw failed.error;
  });
  return (<T>(thing: T, close?: (thing: T) => unknown): T => {
    open.push(() => (close ? close(thing) : closeOf(thing as Closable)));
    return thing;
  }) as Track;
}

/** `make`, with everything it makes closed by `close` after each test (see closeAfterEach). */
export function closedAfterEach<A extends unknown[], T>(make: (...args: A) => T, close: (thing: T) => unknown): (...args: A) => T {
  const track = closeAfterEach();
  return (...args) => track(make(...args), close);
}

function closeOf(thing: Closable): unknown {
  if (Symbol.asyncDispose in thing) return thing[Symbol.asyncDispose]();
  if (Symbol.dispose in thing) return thing[Symbol.dispose]();
  return thing.close();
}

/**
 * A maker of temporary directories (under the OS's tmpdir, named `prefix` and a
 * random suffix), each removed with its contents after the test that made it.
 */
export function tempDirs(prefix: string): () => string {
  const track = closeAfterEach();
  return () => track(mkdtempSync(join(tmpdir(), prefix)), (dir) => rmSync(dir, { recursive: true, force: true }));
}
