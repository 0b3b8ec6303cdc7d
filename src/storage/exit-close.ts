import { writeSync } from "node:fs";

/**
 * Closes what is still open when the process ends without closing it: a data dir's
 * close() commits what is pending, and an embedded script that simply ended (or
 * called process.exit()) without node.close() lost every write of its last second
 * under `everysec` and `no` (the flush timer is unref'd, so it never ran again).
 * Only an end the runtime sees: a signal's default action or a crash runs nothing,
 * which is what the fsync policies already promise about.
 */

interface Closable {
  close(): void;
}

const open = new Set<Closable>();
let hooked = false;

/** Registers `c` to be closed at the process's `exit` event; the function returned takes it off again. */
export function closeAtExit(c: Closable): () => void {
  if (!hooked) {
    hooked = true;
    // One listener, however many are open (one each would warn past ten, as nodes in a test suite do).
    process.on("exit", () => {
      for (const c of [...open]) {
        try {
          c.close();
        } catch (e) {
          // Writes lost (a full disk): an embedded app's logger is silent by default, and the process
          // ended 0 with nothing said. One line on stderr (synchronous: the process is ending), and a
          // failing exit code unless the app chose one.
          writeSync(2, `makhzen: ${e instanceof Error ? e.message : String(e)}\n`);
          if (!process.exitCode) process.exitCode = 1;
        }
      }
    });
  }
  open.add(c);
  return () => open.delete(c);
}
