import { MakhzenError, type ErrorCode } from "../errors.ts";

/** The one place domain error codes become HTTP statuses. */
export const STATUS: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  VALIDATION: 422,
  INVALID_UNICODE: 422,
  INVALID_KEY: 400,
  INVALID_BUCKET: 400,
  KEY_TOO_LARGE: 413,
  VALUE_TOO_LARGE: 413,
  BODY_TOO_LARGE: 413,
  NOT_FOUND: 404,
  PRECONDITION_FAILED: 412,
  OUT_OF_MEMORY: 507,
  INVALID_CONFIG: 400,
  DATA_DIR: 500,
  UNAVAILABLE: 503,
  REPLICATION_TIMEOUT: 504,
  NAME_TAKEN: 409,
  CLOCK_OFFSET: 503,
  PROTOCOL_VERSION: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  CLUSTER_AUTH: 401,
  REQUEST_TIMEOUT: 408,
  // Never an HTTP answer: listen() refuses before there is a server.
  PROTECTED_MODE: 500,
};

const JSON_HEADERS = { "content-type": "application/json" };

export function errorResponse(status: number, code: string, message: string): Response {
  return new Response(JSON.stringify({ error: { code, message } }), { status, headers: JSON_HEADERS });
}

export function domainErrorResponse(e: MakhzenError): Response {
  return errorResponse(STATUS[e.code] ?? 400, e.code, e.message);
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
