/**
 * Output that is out before the process exits. Into a pipe, a write completes
 * later, and `process.exit` (which the CLI calls once a command returns) drops what
 * is still pending: the tail of a long `makhzen ls`, seen under load. A write's
 * callback fires once it and every earlier write are out, so each command awaits
 * what it prints.
 */
const writeTo = (stream: NodeJS.WriteStream, text: string | Uint8Array): Promise<void> =>
  new Promise((resolve, reject) => stream.write(text, (e) => (e ? reject(e) : resolve())));

/** Writes to stdout; resolves once it is out. */
export const print = (text: string | Uint8Array): Promise<void> => writeTo(process.stdout, text);

/** Writes to stderr; resolves once it is out. */
export const printError = (text: string): Promise<void> => writeTo(process.stderr, text);
