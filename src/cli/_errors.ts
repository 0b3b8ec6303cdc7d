/**
 * An expected CLI failure: printed as one line on stderr, never with a stack.
 * `exitCode` 2 is a usage error (bad flag or argument), 1 a failed operation.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
    /** Already said, as a log line of the node's (serve under --log-format json): not printed again. */
    readonly said = false,
  ) {
    super(message);
    this.name = "CliError";
  }
}

export const usageError = (message: string): CliError => new CliError(message, 2);
