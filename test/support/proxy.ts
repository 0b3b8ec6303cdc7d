/** The TCP proxy the cluster tests put in front of a node to cut its links (harness.ts re-exports it). */

/**
 * A TCP proxy in front of a node, which a test can cut and heal. While cut, it is
 * a black hole, as a real partition is: connections are accepted (or kept) but no
 * byte crosses, so peers run into their request timeouts rather than a quick
 * "connection refused". Healing closes the connections that lived through the cut.
 */
export class TcpProxy {
  readonly port: number;
  private cutOff = false;
  private readonly pairs = new Set<Conn["pair"]>();
  private readonly server: Bun.TCPSocketListener<Conn>;

  constructor(readonly targetPort: number) {
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
          void Bun.connect<Conn>({
            hostname: "127.0.0.1",
            port: targetPort,
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
}

interface Conn {
  pair: { client: Bun.Socket<Conn>; upstream?: Bun.Socket<Conn>; pending: Uint8Array[]; poisoned: boolean };
}

