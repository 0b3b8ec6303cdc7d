/**
 * An error answered by a node (`status` and `code` from its error envelope), or
 * `UNREACHABLE` with status 0 when no answer came at all. Status 0 also marks a
 * request the client refused to send (`INVALID_KEY`, `INVALID_UNICODE`,
 * `VALIDATION`: a call's argument or option it cannot be given), and a client it
 * refused to make (`INVALID_CONFIG`, `INVALID_URL`, `INVALID_TOKEN`,
 * `INVALID_BUCKET`). `BAD_RESPONSE`: a success that was not what a node answers
 * (the URL reaches something else).
 */
export class MakhzenClientError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "MakhzenClientError";
  }
}
