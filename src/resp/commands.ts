import { ADMIN_COMMANDS } from "./admin.ts";
import { word, type CommandSpec } from "./command.ts";
import { RespError, SYNTAX } from "./errors.ts";
import { globMatch } from "./glob.ts";
import { CONNECTION_COMMANDS } from "./connection.ts";
import { KEY_COMMANDS } from "./keys.ts";
import { array, bulk, int, map, NIL, set, simple, type Reply } from "./reply.ts";
import { STRING_COMMANDS } from "./strings.ts";
import { TRANSACTION_COMMANDS } from "./transactions.ts";

/**
 * The command table: every command this front end knows, one row each (see
 * CommandSpec). Dispatch (dispatch.ts) runs from it, and COMMAND describes it,
 * so what redis-cli's hints and client libraries learn is what runs.
 */

const COMMAND_COMMAND: CommandSpec = {
  name: "command",
  arity: -1,
  flags: ["loading", "stale"],
  keys: [0, 0, 0],
  group: "server",
  since: "2.8.13",
  summary: "Returns detailed information about all commands.",
  run: () => array(ALL.map(describe)),
  subcommands: [
    { name: "command|count", arity: 2, flags: ["loading", "stale"], keys: [0, 0, 0], group: "server", since: "2.8.13", summary: "Returns a count of commands.", run: () => int(ALL.length) },
    {
      name: "command|info",
      arity: -2,
      flags: ["loading", "stale"],
      keys: [0, 0, 0],
      group: "server",
      since: "2.8.13",
      summary: "Returns information about one, multiple or all commands.",
      run: (_ctx, a) => array(a.length === 2 ? ALL.map(describe) : a.slice(2).map((n) => describeOrNil(n))),
    },
    {
      name: "command|docs",
      arity: -2,
      flags: ["loading", "stale"],
      keys: [0, 0, 0],
      group: "server",
      since: "7.0.0",
      summary: "Returns documentary information about one, multiple or all commands.",
      run: (_ctx, a) => docs(a.length === 2 ? ALL : a.slice(2).flatMap((n) => TABLE.get(n.toString().toLowerCase()) ?? [])),
    },
    {
      name: "command|list",
      arity: -2,
      flags: ["loading", "stale"],
      keys: [0, 0, 0],
      group: "server",
      since: "7.0.0",
      summary: "Returns a list of command names.",
      run: (_ctx, a) => commandList(a),
    },
  ],
};

const ALL: readonly CommandSpec[] = [...CONNECTION_COMMANDS, ...STRING_COMMANDS, ...KEY_COMMANDS, ...ADMIN_COMMANDS, ...TRANSACTION_COMMANDS, COMMAND_COMMAND].map(withHelp);

/**
 * A container with its HELP subcommand, as Redis's: an unknown subcommand's error
 * says "Try CLIENT HELP.", which was itself unknown. It lists the subcommands this
 * node runs, each with its summary, in Redis's layout (status lines).
 */
function withHelp(c: CommandSpec): CommandSpec {
  if (c.subcommands === undefined) return c;
  const upper = c.name.toUpperCase();
  const help: CommandSpec = {
    name: `${c.name}|help`,
    arity: 2,
    flags: ["loading", "stale"],
    keys: [0, 0, 0],
    group: c.group,
    since: "5.0.0",
    summary: "Returns helpful text about the different subcommands.",
    run: () => array(lines.map(simple)),
  };
  const subs = [...c.subcommands, help];
  const lines = [`${upper} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:`, ...subs.flatMap((s) => [s.name.slice(c.name.length + 1).toUpperCase(), `    ${s.summary}`])];
  return { ...c, subcommands: subs };
}

/** Commands by lower-case name. */
export const TABLE: ReadonlyMap<string, CommandSpec> = new Map(ALL.map((c) => [c.name, c]));

/** Subcommands by `container|sub`. */
export const SUBCOMMANDS: ReadonlyMap<string, CommandSpec> = new Map(ALL.flatMap((c) => (c.subcommands ?? []).map((s) => [s.name, s])));

/**
 * COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]: every
 * command and subcommand (`config|get`), as Redis 7.0 lists them; one filter at
 * most (Redis reads `FILTERBY` only as the last three arguments). No module
 * exists here, so MODULE lists none; PATTERN matches without case, as Redis.
 */
function commandList(a: Buffer[]): Reply {
  let keep = (_c: CommandSpec): boolean => true;
  if (a.length > 2) {
    if (a.length !== 5 || word(a[2]!) !== "FILTERBY") throw new RespError(SYNTAX);
    const type = word(a[3]!);
    const arg = a[4]!.toString();
    if (type === "MODULE") keep = () => false;
    else if (type === "ACLCAT") keep = (c) => categories(c).includes(`@${arg.toLowerCase()}`);
    else if (type === "PATTERN") keep = (c) => globMatch(arg, c.name, true);
    else throw new RespError(SYNTAX);
  }
  return array(ALL.flatMap((c) => [c, ...(c.subcommands ?? [])]).filter(keep).map((c) => bulk(c.name)));
}

/** Redis's ACL categories of a command, from its group and flags. */
function categories(c: CommandSpec): string[] {
  const out = [`@${c.group === "generic" ? "keyspace" : c.group === "transactions" ? "transaction" : c.group}`];
  if (c.flags.includes("write")) out.push("@write");
  if (c.flags.includes("readonly")) out.push("@read");
  if (c.flags.includes("admin")) out.push("@admin", "@dangerous");
  out.push(c.flags.includes("fast") ? "@fast" : "@slow");
  return out;
}

/** One COMMAND INFO entry, in Redis 7's ten fields: name, arity, flags, first/last key, step, ACL categories, tips, key specs, subcommands. */
function describe(c: CommandSpec): Reply {
  const [first, last, step] = c.keys;
  return array([
    bulk(c.name),
    int(c.arity),
    set(c.flags.map(simple)),
    int(first),
    int(last),
    int(step),
    set(categories(c).map(simple)),
    set([]),
    array([]),
    array((c.subcommands ?? []).map(describe)),
  ]);
}

function describeOrNil(name: Buffer): Reply {
  // A subcommand by its full name too (`config|get`), as Redis 7 answers it.
  const n = name.toString().toLowerCase();
  const c = TABLE.get(n) ?? SUBCOMMANDS.get(n);
  return c ? describe(c) : NIL;
}

/** COMMAND DOCS: a map of name to its summary, since, group and complexity, and its subcommands' docs. */
function docs(commands: readonly CommandSpec[]): Reply {
  const entry = (c: CommandSpec): [string, Reply] => {
    const fields: [string, Reply | string][] = [
      ["summary", c.summary],
      ["since", c.since],
      ["group", c.group],
    ];
    if (c.subcommands) fields.push(["subcommands", { t: "map", entries: c.subcommands.map((s) => entry(s)).map(([k, v]) => [bulk(k), v]) }]);
    return [c.name, map(fields)];
  };
  return map(commands.map(entry));
}
