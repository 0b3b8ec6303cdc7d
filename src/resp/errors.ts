import { isMakhzenError, type ErrorCode } from "../errors.ts";
import { errorReply, type Reply } from "./reply.ts";

/**
 * How failures are worded over RESP: the one place this front end turns errors
 * into replies, as src/http/errors.ts does for HTTP. Clients and test suites match
 * on Redis 7's exact strings, so the ones Redis has are copied word for word
 * (checked against redis-server 7.0); makhzen's own failures (a bucket it cannot
 * name, a fenced clock, w= not met) keep their message after a prefix.
 */
export class RespError extends Error {
  /** `line` is the whole reply after `-`: its code, then the message (`ERR syntax error`). */
  constructor(readonly line: string) {
    super(line);
    this.name = "RespError";
  }
}

export const SYNTAX = "ERR syntax error";
export const NOT_INTEGER = "ERR value is not an integer or out of range";
export const NOT_FLOAT = "ERR value is not a valid float";
export const OVERFLOW = "ERR increment or decrement would overflow";
export const NO_SUCH_KEY = "ERR no such key";
export const NOAUTH = "NOAUTH Authentication required.";
export const WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled.";
/** A key (or pattern) whose bytes are not UTF-8: keys are text, values may be any bytes (docs/resp.md, "Binary values"). */
export const NOT_UTF8 = "ERR makhzen keys are UTF-8 text: this argument is not valid UTF-8";

/**
 * A command that is atomic only on one node (MSETNX, RENAME, COPY, MULTI/EXEC), given
 * a key another node serves in a partitioned cluster: refused rather than run on
 * this node's partial copy or split across nodes (docs/resp.md).
 */
export const notServedHere = (command: string, key: string): string =>
  `ERR ${command} runs on one node, and key ${JSON.stringify(key.slice(0, 200))} is decided by another node in this partitioned cluster (--replicas below the member count): send it to the first owner of every key it names (the first name GET /cluster/placement?key= answers; {hash tags} put keys in one partition)`;

/** A command that counts this node's keys (DBSIZE, RANDOMKEY), which in a partitioned cluster are only its own partitions. */
export const partialKeyspace = (command: string): string =>
  `ERR ${command} is not supported in a partitioned cluster (--replicas below the member count): this node holds only its own partitions, and ${command} would act on that part alone`;

/** A keyspace walk (KEYS, SCAN, FLUSHDB) that cannot reach every partition: refused rather than answered short. */
export const incompleteKeyspace = (partitions: number, members: string[]): string =>
  `ERR ${partitions} partition(s) of the keyspace have no reachable owner with a whole copy (owners: ${members.join(", ")}; after a join the new owner may still be filling): the walk would be incomplete, so it was not done`;

export const invalidExpire = (command: string): string => `ERR invalid expire time in '${command}' command`;
export const wrongArity = (command: string): string => `ERR wrong number of arguments for '${command}' command`;
export const noPerm = (command: string): string => `NOPERM this user has no permissions to run the '${command}' command`;
export const unknownSubcommand = (sub: string, command: string): string =>
  `ERR unknown subcommand '${clip(sub)}'. Try ${command.toUpperCase()} HELP.`;

/** Redis's wording for an unknown command: the name, then its first arguments quoted, about 128 characters of them. */
export function unknownCommand(name: string, args: string[]): string {
  let shown = "";
  for (const a of args) {
    if (shown.length >= 128) break;
    shown += `'${a.slice(0, 128 - shown.length)}' `;
  }
  return `ERR unknown command '${clip(name)}', with args beginning with: ${shown}`;
}

const clip = (s: string): string => s.slice(0, 128);

/** The prefix of each makhzen failure over RESP; `ERR` unless Redis has a closer code. */
const PREFIX: Partial<Record<ErrorCode, string>> = {
  OUT_OF_MEMORY: "OOM",
  PERSISTENCE_FAILED: "MISCONF",
  UNAUTHORIZED: "NOAUTH",
  FORBIDDEN: "NOPERM",
  UNAVAILABLE: "TRYAGAIN",
  CLOCK_OFFSET: "TRYAGAIN",
  REPLICATION_TIMEOUT: "TRYAGAIN",
};

/** The reply for anything a command threw; an error that is neither ours nor Redis's is a bug, and says so. */
export function toErrorReply(e: unknown): Reply {
  if (e instanceof RespError) return errorReply(e.line);
  if (isMakhzenError(e)) {
    if (e.code === "OUT_OF_MEMORY") return errorReply("OOM command not allowed when used memory > 'maxmemory'.");
    return errorReply(`${PREFIX[e.code] ?? "ERR"} ${e.message}`);
  }
  return errorReply(`ERR internal error: ${e instanceof Error ? e.message : String(e)}`);
}
