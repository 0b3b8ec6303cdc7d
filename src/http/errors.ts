import { HTTP_STATUS, type MakhzenError } from "../errors.ts";

const JSON_HEADERS = { "content-type": "application/json" };

export function errorResponse(status: number, code: string, message: string): Response {
  return new Response(JSON.stringify({ error: { code, message } }), { status, headers: JSON_HEADERS });
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
