import { approxWireBytes, type StoredRecord } from "../core/record.ts";
import type { Logger } from "../ops/log.ts";
import { MAX_FORWARD_BATCH, type ForwardAnswer, type ForwardBatchAnswer, type ForwardRequest, type ForwardSlot } from "./protocol/messages.ts";
import { PeerError, type PeerTransport } from "./protocol/peer-ops.ts";

/**
 * Forwards travel in batches. A node that takes client requests for keys it does
 * not own sends each one hop to an owner (routing.ts); one peer request per client
 * request made forwarded writes cost about three times what a write of a key the
 * node owns costs (docs/benchmarks.md), the owner spending its time on the HTTP
 * exchange rather than on the write. So, as replication does with records, the
 * forwards of one event-loop turn to one owner go in one `forwardBatch` request,
 * sent at the end of the turn (setImmediate) or as soon as the batch is full
 * (MAX_FORWARD_BATCH requests, or the batch byte budget of keys and values). The
 * owner runs them concurrently, each exactly as `forward` runs one, and answers
 * each in its slot; every caller gets its own answer.
 *
 * Only requests that answer at once on the owner are batched: those without `w=`
 * or `r=`. A batch answers when its slowest member does, and one waiting for
 * replicas would hold every other. A batch of one goes as a plain `forward`, and
 * so does a request larger than the byte budget.
 *
 * What a batch's failure means is what a forward's failure means, for each of its
 * members (Router.forward applies the rules): a batch that got no answer, or a 5xx,
 * is for each member a forward that got no answer (its outcome is unknown); a 4xx
 * refusal of the hop is a refusal of each (nothing ran). One exception keeps
 * mixed versions working: an owner without the op (404) ran nothing, so the members
 * go to it again, each alone, as `forward`. A batch's timeout is the request
 * timeout, a forward's without `w=`/`r=`.
 */

/** Bytes a request counts for in the budget: its key and value, and room for its other fields. */
const requestBytes = (req: ForwardRequest): number => req.key.length + (req.value?.length ?? 0) + (req.held?.value?.length ?? 0) + 128;

interface Member {
  req: ForwardRequest;
  resolve: (answer: ForwardAnswer) => void;
  reject: (error: unknown) => void;
}

interface Batch {
  members: Member[];
  bytes: number;
}

export interface ForwardBatcherDeps {
  transport: PeerTransport;
  /** How long a batch may take: the request timeout. */
  timeoutMs: number;
  /** The most bytes of keys and values one batch carries (batchMaxBytes). */
  maxBytes: number;
  /** The most requests one batch carries; MAX_FORWARD_BATCH by default. */
  maxRequests?: number;
}

/** The calling side: per owner URL, the batch of this turn. */
export class ForwardBatcher {
  private readonly pending = new Map<string, Batch>();
  private readonly maxRequests: number;

  constructor(private readonly deps: ForwardBatcherDeps) {
    this.maxRequests = Math.min(deps.maxRequests ?? MAX_FORWARD_BATCH, MAX_FORWARD_BATCH);
  }

  /** `req` (no `w`/`r`) sent to the owner at `url`: its own answer, or the PeerError of the hop, as `transport.call(url, "forward", ...)` gives them. */
  send(url: string, req: ForwardRequest): Promise<ForwardAnswer> {
    const bytes = requestBytes(req);
    if (bytes > this.deps.maxBytes) return this.alone(url, req);
    let batch = this.pending.get(url);
    if (batch && batch.bytes + bytes > this.deps.maxBytes) {
      this.flush(url, batch);
      batch = undefined;
    }
    if (!batch) {
      const fresh: Batch = { members: [], bytes: 0 };
      this.pending.set(url, fresh);
      setImmediate(() => this.flush(url, fresh));
      batch = fresh;
    }
    const b = batch;
    return new Promise<ForwardAnswer>((resolve, reject) => {
      b.members.push({ req, resolve, reject });
      b.bytes += bytes;
      if (b.members.length >= this.maxRequests) this.flush(url, b);
    });
  }

  private alone(url: string, req: ForwardRequest): Promise<ForwardAnswer> {
    return this.deps.transport.call(url, "forward", req, this.deps.timeoutMs);
  }

  /** Sends `batch` if it is still this turn's batch for `url` (a full one went already). */
  private flush(url: string, batch: Batch): void {
    if (this.pending.get(url) !== batch) return;
    this.pending.delete(url);
    const { members } = batch;
    if (members.length === 1) {
      const m = members[0]!;
      this.alone(url, m.req).then(m.resolve, m.reject);
      return;
    }
    this.deps.transport.call(url, "forwardBatch", { requests: members.map((m) => m.req) }, this.deps.timeoutMs).then(
      ({ answers }) => {
        if (answers.length !== members.length) {
          const e = new PeerError(502, "BAD_ANSWER", `${url} forwardBatch: ${answers.length} answers to ${members.length} requests`);
          for (const m of members) m.reject(e);
          return;
        }
        members.forEach((m, i) => this.settle(url, m, answers[i]!));
      },
      (e: unknown) => {
        // An owner that lacks the op ran nothing: each member goes to it alone. So does a batch refused (422)
        // for one member's `held`, which an owner of the release before refuses: the others are not refused with it.
        if (e instanceof PeerError && (e.status === 404 || (e.status === 422 && members.some((m) => m.req.held !== undefined)))) {
          for (const m of members) this.alone(url, m.req).then(m.resolve, m.reject);
          return;
        }
        for (const m of members) m.reject(e);
      },
    );
  }

  private settle(url: string, m: Member, slot: ForwardSlot): void {
    if (slot.resend && m.req.op === "get") {
      this.alone(url, m.req).then(m.resolve, m.reject);
    } else if (slot.failed !== undefined || slot.resend) {
      // As a 5xx of `forward`: the request may have run.
      m.reject(new PeerError(500, "INTERNAL", `${url} forwardBatch: ${slot.failed ?? "a write answered as not run"}`));
    } else {
      const { failed: _f, resend: _r, ...answer } = slot;
      m.resolve(answer);
    }
  }
}

/**
 * The serving side: runs `requests` concurrently with `serve` (what `forward`
 * runs), in order of arrival so that two writes of one key apply in the order they
 * were sent, and answers each in its slot. An unexpected failure of one is that
 * slot's `failed`, as it would be a 5xx of `forward`. Reads' answers carry values
 * of any size, so once the answered records pass `budgetBytes` (the first always
 * goes), a read's slot is `resend` instead: a read changes nothing, so the sender
 * may run it again alone. Writes' answers are bounded by their requests.
 */
export async function serveBatch(
  requests: ForwardRequest[],
  serve: (req: ForwardRequest) => Promise<ForwardAnswer>,
  budgetBytes: number,
  logger: Logger,
): Promise<ForwardBatchAnswer> {
  const runs = requests.map((req) =>
    Promise.resolve()
      .then(() => serve(req))
      .then(
        (answer): ForwardSlot => answer,
        (e: unknown): ForwardSlot => {
          logger.error("a forwarded request of a batch failed", { error: e, stack: (e as Error)?.stack });
          return { failed: "internal error; see the owner's log" };
        },
      ),
  );
  const answers = await Promise.all(runs);
  let bytes = 0;
  for (let i = 0; i < answers.length; i++) {
    const record = answers[i]!.record as StoredRecord | null | undefined;
    if (!record) continue;
    const size = approxWireBytes(record);
    if (bytes > 0 && bytes + size > budgetBytes && requests[i]!.op === "get") {
      answers[i] = { resend: true };
      continue;
    }
    bytes += size;
  }
  return { answers };
}
