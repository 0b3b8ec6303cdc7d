import type { ErrorCode } from "../errors.ts";

/** The shapes openapi.ts builds its document from, shared with the files that add operations to it (openapi-cluster.ts). */

export type Json = Record<string, unknown>;

export interface Operation {
  method: "get" | "put" | "delete" | "post";
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  /** Names of components.parameters. */
  parameters?: string[];
  requestBody?: Json;
  /** What it answers other than errors, by status. */
  responses: Record<string, Json>;
  /** The domain errors it answers, each with the envelope at HTTP_STATUS[code]. */
  errors?: ErrorCode[];
  /** Whole error responses that do not follow HTTP_STATUS (readiness is always 503). */
  otherErrors?: Record<string, Json>;
  /** Answered without a token (the probes of load balancers and orchestrators). */
  open?: boolean;
}

export const ref = (kind: "schemas" | "parameters" | "headers", name: string) => ({ $ref: `#/components/${kind}/${name}` });
export const jsonContent = (name: string) => ({ "application/json": { schema: ref("schemas", name) } });
