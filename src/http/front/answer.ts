import { isMakhzenError } from "../../errors.ts";
import type { NodeConfig } from "../../config.ts";
import type { Logger } from "../../ops/log.ts";
import { bearerToken, tokenAccess } from "../../ops/tokens.ts";
import { BUCKET_ITEM_ROUTE, ITEM_ROUTE, OTHER_ROUTE, type RequestStats } from "../../ops/request-stats.ts";
import { isOctetStream, wantsBytes } from "../binary.ts";
import { INTERNAL_MESSAGE } from "../errors.ts";
import { itemOps, wantsText, type ItemBody, type ItemHandlerDeps } from "../items.ts";
import { DELETE, GET, METHOD_NAMES, type Head } from "./head.ts";
import { deletedWire, domainErrorWire, errorWire, itemWire, textWire, viewWire } from "./wire.ts";

/**
 * What the wire front end answers for a request parseHead took: whether it takes it
 * at all (`takes`, on the head alone, so a request it leaves to Bun is handed over
 * before its body is waited for), and the bytes of the answer, at once or when the
 * service settles. The meaning of a request is items.ts's (itemOps), so this only
 * reads the head's fields where itemHandlers reads a Request's.
 *
 * Handed over rather than answered here: a request the client token does not
 * allow (Bun's path refuses it, counts it and logs it, rate-limited, as always),
 * and the two rare media types, raw bytes in (a PUT of application/octet-stream)
 * and out (Accept: application/octet-stream).
 */
export interface FrontAnswer {
  /** Whether the front end answers this head: decided on the head alone, before its body is waited for. */
  takes: (head: Head) => boolean;
  /** The answer to a request `takes` took, its body in `bytes`. */
  answer: (head: Head, bytes: Buffer) => string | Promise<string>;
  /** A head the front end refused itself (refuse.ts: malformed, too large): counted under route `other`, as Bun's refusals of junk are. */
  refused: (status: number) => void;
}

export function frontAnswers(deps: ItemHandlerDeps & { requests: RequestStats; logger: Logger }): FrontAnswer {
  const ops = itemOps(deps);
  const allowed = accessCheck(deps.config);
  const bodyOf = jsonFirst(ops);
  const { requests, logger } = deps;

  const failed = (head: Head, e: unknown): string => {
    if (isMakhzenError(e)) return domainErrorWire(e);
    logger.error("unexpected error", { method: METHOD_NAMES[head.method], url: head.path, error: e, stack: (e as Error)?.stack });
    return errorWire(500, "INTERNAL", INTERNAL_MESSAGE);
  };
  // Counted as servingFetch counts Bun's requests: by route, method and status, with the time to the answer.
  const counted = (head: Head, t0: number, wire: string): string => {
    const route = head.path.charCodeAt(1) === 105 /* i: /items/, else /buckets/ */ ? ITEM_ROUTE : BUCKET_ITEM_ROUTE;
    requests.recordAt(route, METHOD_NAMES[head.method], Number(wire.slice(9, 12)), performance.now() - t0);
    return wire;
  };

  const takes = (head: Head): boolean => {
    if (allowed !== undefined && !allowed(head)) return false;
    return head.method === GET ? head.accept === null || !wantsBytes(head.accept) : head.contentType === JSON_TYPE || !isOctetStream(head.contentType);
  };

  const answer = (head: Head, bytes: Buffer): string | Promise<string> => {
    const t0 = performance.now();
    let answer: string | Promise<string>;
    try {
      if (head.method === GET) {
        answer = wantsText(head.accept)
          ? settle(ops.readPlain(head.bucket, head.rawKey, undefined, "text"), textWire)
          : settle(ops.readView(head.bucket, head.rawKey, undefined), viewWire);
      } else if (head.method === DELETE) {
        answer = settle(ops.remove(head.bucket, head.rawKey, head.ifMatch, head.ifNoneMatch, noConcern), deletedWire);
      } else {
        // The body before the key, as Elysia parses a body before its handler runs.
        const body = bodyOf(head, bytes);
        answer = settle(ops.write(head.bucket, head.rawKey, body, head.ifMatch, head.ifNoneMatch, noConcern), itemWire);
      }
    } catch (e) {
      answer = failed(head, e);
    }
    if (typeof answer === "string") return counted(head, t0, answer);
    return answer.then(
      (wire) => counted(head, t0, wire),
      (e: unknown) => counted(head, t0, failed(head, e)),
    );
  };
  return { takes, answer, refused: (status) => requests.recordAt(OTHER_ROUTE, "OTHER", status, 0) };
}

const noConcern = () => undefined;
const JSON_TYPE = "application/json";

/**
 * A PUT's body, as itemOps.bodyOf reads it. A JSON body is decoded by Buffer's
 * UTF-8 slice (no view, no TextDecoder) unless it holds what that decoder treats
 * unlike bodyOf's: a U+FFFD (a replaced byte, or a real one) or a leading BOM. Those,
 * and text/plain, go through bodyOf itself, so the answers are bodyOf's.
 */
function jsonFirst(ops: ReturnType<typeof itemOps>) {
  return (head: Head, bytes: Buffer): ItemBody => {
    if (head.contentType === JSON_TYPE || head.contentType === null) {
      const plain = plainValue(bytes, head.bodyStart, head.next);
      if (plain !== undefined) return { value: plain };
      const text = bytes.toString("utf8", head.bodyStart, head.next);
      if (text.indexOf("\uFFFD") === -1 && text.charCodeAt(0) !== 0xfeff) return ops.jsonBodyOf(text);
    }
    return ops.bodyOf(head.contentType, undefined, bytes.subarray(head.bodyStart, head.next));
  };
}
/**
 * The value of the body most writes send, `{"value":"..."}` exactly, when the value
 * is printable ASCII with no `"` or `\`: what JSON.parse and the body check would
 * make of it, without either (no object parsed, no UTF-8 decode: ASCII reads the
 * same as latin1). Anything else (another field, a space, an escape, a byte past
 * 0x7e) is undefined, and goes the general way.
 */
function plainValue(bytes: Buffer, start: number, end: number): string | undefined {
  if (end - start < PLAIN_OPEN.length + 2 || bytes[end - 1] !== 0x7d /* } */ || bytes[end - 2] !== 0x22 /* " */) return undefined;
  for (let i = 0; i < PLAIN_OPEN.length; i++) if (bytes[start + i] !== PLAIN_OPEN[i]) return undefined;
  const value = bytes.toString("latin1", start + PLAIN_OPEN.length, end - 2);
  return PLAIN_CHARS.test(value) ? value : undefined;
}
const PLAIN_OPEN = Buffer.from('{"value":"', "latin1");
/** Printable ASCII but `"` and `\`: a JSON string's characters that stand for themselves. */
const PLAIN_CHARS = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

const settle = <T>(v: T | Promise<T>, wire: (v: T) => string): string | Promise<string> => (v instanceof Promise ? v.then(wire) : wire(v));

/**
 * Whether the client token lets this request through, or undefined without a token:
 * the write token anything, the read token a GET. Anything else is Bun's to refuse.
 */
function accessCheck(config: NodeConfig): ((head: Head) => boolean) | undefined {
  if (config.token === undefined) return undefined;
  const accessOf = tokenAccess(config.token, config.readToken);
  return (head) => {
    const access = accessOf(bearerToken(head.authorization));
    return access === "write" || (access === "read" && head.method === GET);
  };
}
