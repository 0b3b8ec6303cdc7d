/**
 * Stall detection for the client's streaming calls (dump, load).
 *
 * A dump of a large store, or a load of one, may take minutes in all, so a total
 * timeout would cut a healthy transfer short; with none at all, a node that hangs
 * (SIGSTOPped, wedged, a port that accepts and never answers) kept `makhzen dump`
 * and `load` waiting for ever. What tells a hung node from a slow transfer is
 * progress: a watchdog is armed only while the client waits on the node (for the
 * answer's headers, for the next chunk of a dump, for the node to take the next
 * chunk of an upload) and is fed by every chunk. Time spent waiting on our own side
 * (stdin that is slow to fill, a stdout pipe that is slow to drain) never counts,
 * so `dump | load` across two nodes stalls only when a node does.
 *
 * Both wrappers pull one chunk at a time (highWaterMark 0): reading ahead would arm
 * the watchdog while the consumer, not the node, is the slow side.
 */
export class Watchdog {
  private timer: ReturnType<typeof setTimeout> | undefined;

  /** `stall` is called once `ms` pass with the watchdog armed and not fed. */
  constructor(
    readonly ms: number,
    private readonly stall: () => void,
  ) {}

  /** Starts (or restarts) the countdown: the client now waits on the node. */
  arm(): void {
    this.disarm();
    this.timer = setTimeout(this.stall, this.ms);
  }

  /** Stops the countdown: the node answered, or the wait is on our side. */
  disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * `body` (a response being downloaded), with `dog` armed while each chunk is
 * awaited. A read that fails (the stall's abort, a reset connection) is rethrown
 * as `fail(error)`, so the caller says what broke in its own words.
 */
export function watchedDownload(body: ReadableStream<Uint8Array>, dog: Watchdog, fail: (e: unknown) => Error): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        dog.arm();
        let next: Awaited<ReturnType<typeof reader.read>>;
        try {
          next = await reader.read();
        } catch (e) {
          throw fail(e);
        } finally {
          dog.disarm();
        }
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
      cancel(reason) {
        dog.disarm();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * `source` (a body being uploaded), with `dog` armed from the moment a chunk is
 * handed over until the sender asks for the next: a sender that stops asking is a
 * node that stopped reading. After the last chunk (`onEnd` is called then) it
 * stays armed, so the wait for the answer is watched too; the caller disarms it
 * when the answer comes.
 */
export function watchedUpload(source: ReadableStream<Uint8Array>, dog: Watchdog, onEnd: () => void): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        dog.disarm();
        const next = await reader.read();
        dog.arm();
        if (next.done) {
          onEnd();
          controller.close();
        } else controller.enqueue(next.value);
      },
      cancel(reason) {
        dog.disarm();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
