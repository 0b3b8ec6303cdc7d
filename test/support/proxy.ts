/** The TCP proxy the cluster tests put in front of a node to cut its links (harness.ts re-exports it). */

/**
 * A TCP proxy in front of a node, which a test can cut and heal. While cut, it is
 * a black hole, as a real partition is: connections are accepted (or kept) but no
 * byte crosses, so peers run into their request timeouts rather than a quick
 * "connection refused". Healing closes the connections that lived through the cut.
 *
 * It listens on port 0 at once, so its URL can be the node's --advertise before the
 * node has a port; `connect(port)` names the target once the node says where it
 * listens. Connections that arrive before that wait for it.
 */
export class TcpProxy implements Disposable {
  readonly port: number;
  targetPort: number | undefined;
  private readonly target = Promise.withResolvers<number>();
  private cutOff = false;
  private readonly pairs = new Set<Conn["pair"]>();
  private readonly server: Bun.TCPSocketListener<Conn>;

  constructor(targetPort?: number) {
    if (targetPort !== undefined) this.connect(targetPort);
    const self = this;
    this.server = Bun.listen<Conn>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(client) {
          const pair: Conn["pair"] = {
            client,
            pending: [],
            poisoned: self.cutOff,
          };
          client.data = { pair };
          self.pairs.add(pair);
          // Connected upstream once the target is named; a client gone by then needs none.
          void self.target.promise.then((port) => {
            if (self.pairs.has(pair)) self.dial(pair, port);
          });
        },
        data(client, chunk) {
          const pair = client.data.pair;
          if (self.cutOff || pair.poisoned) {
            pair.poisoned = true;
            return;
          }
          if (pair.upstream) pair.upstream.write(chunk);
          else pair.pending.push(new Uint8Array(chunk));
        },
        close(client) {
          client.data.pair.upstream?.end();
          self.pairs.delete(client.data.pair);
        },
        error() {},
      },
    });
    this.port = this.server.port;
  }

  private dial(pair: Conn["pair"], port: number): void {
    const self = this;
    const client = pair.client;
    Bun.connect<Conn>({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(up) {
          up.data = { pair };
          pair.upstream = up;
          for (const chunk of pair.pending) up.write(chunk);
          pair.pending = [];
        },
        data(_up, chunk) {
          if (self.cutOff) pair.poisoned = true;
          if (!pair.poisoned) client.write(chunk);
        },
        close() {
          client.end();
          self.pairs.delete(pair);
        },
        error() {
          client.end();
        },
      },
    }).catch(() => client.end());
  }

  /** Sends what arrives to `port` from now on (and what waited for a target). A proxy has one target. */
  connect(port: number): void {
    if (this.targetPort !== undefined && this.targetPort !== port) throw new Error(`proxy ${this.port} already targets ${this.targetPort}`);
    this.targetPort = port;
    this.target.resolve(port);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  cut(): void {
    this.cutOff = true;
  }

  heal(): void {
    this.cutOff = false;
    for (const pair of [...this.pairs]) {
      if (pair.poisoned) {
        pair.client.end();
        pair.upstream?.end();
        this.pairs.delete(pair);
      }
    }
  }

  close(): void {
    for (const pair of this.pairs) {
      pair.client.end();
      pair.upstream?.end();
    }
    this.server.stop(true);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

interface Conn {
  pair: { client: Bun.Socket<Conn>; upstream?: Bun.Socket<Conn>; pending: Uint8Array[]; poisoned: boolean };
}

