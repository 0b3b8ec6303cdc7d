import { HTTP_STATUS, isMakhzenError, type MakhzenError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";

const JSON_HEADERS = { "content-type": "application/json" };

/** The body of every error answer: `{"error":{"code","message"}}` (Responses here, the wire front end's in front/wire.ts). */
export const errorBody = (code: string, message: string): string => JSON.stringify({ error: { code, message } });

/** What a 500 says; the error itself goes to the node's log. */
export const INTERNAL_MESSAGE = "internal error; see the node's log";

export function errorResponse(status: number, code: string, message: string): Response {
  return new Response(errorBody(code, message), { status, headers: JSON_HEADERS });
}

export function domainErrorResponse(e: MakhzenError): Response {
  return errorResponse(HTTP_STATUS[e.code] ?? 400, e.code, e.message);
}

/** A validation failure as one readable line: where, and what was expected. */
export function describeValidation(error: {
  all?: { path?: string; message?: string }[];
  customError?: unknown;
}): string {
  if (typeof error.customError === "string") return error.customError;
  const first = error.all?.[0];
  if (!first) return "request did not match the schema";
  const where = first.path ? first.path.replace(/^\//, "").replaceAll("/", ".") : "body";
  return `${where || "body"}: ${first.message ?? "is invalid"}`;
}

/**
 * An error whose answer is already made, thrown where only a throw gets out (an
 * Elysia parse hook): a peer's signed PROTOCOL_VERSION (peer.ts). Elysia hands
 * whatever a parse hook throws to the app's onError as a PARSE error, whose
 * `cause` bodyError answers; this one, with its own answer.
 */
export class MadeAnswer extends Error {
  constructor(readonly response: Response) {
    super(`answered ${response.status}`);
  }
}

/** The answer when reading a body failed: our reader's own error, or a 400 for anything else. */
export function bodyError(error: unknown): Response {
  if (error instanceof MadeAnswer) return error.response;
  if (isMakhzenError(error)) return domainErrorResponse(error);
  return errorResponse(400, "BAD_REQUEST", "request body could not be parsed");
}

/** The answer to an error nothing turned into one (a bug): logged, and a 500 that says where to look. */
export function internalError(log: Logger, request: Request, error: unknown): Response {
  log.error("unexpected error", { method: request.method, url: request.url, error, stack: (error as Error)?.stack });
  return errorResponse(500, "INTERNAL", INTERNAL_MESSAGE);
}
