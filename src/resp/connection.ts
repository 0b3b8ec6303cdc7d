import { DATABASES, integer, parseInt64, text, word, rows, type CommandSpec, type Ctx, type Session } from "./command.ts";
import { RespError, SYNTAX, WRONGPASS } from "./errors.ts";
import { array, bulk, bulkOrNil, int, map, OK, simple, verbatim, type Reply } from "./reply.ts";

/**
 * Connection commands: the handshake every client starts with (HELLO, AUTH,
 * SELECT, CLIENT SETNAME/SETINFO), and PING, ECHO, QUIT, RESET.
 *
 * AUTH takes `--token` (a connection that may do everything) or `--read-token`
 * (one whose writes are refused with -NOPERM), as `AUTH <token>` or
 * `AUTH default <token>`: makhzen has one user, Redis's `default`.
 */
const c = rows({ group: "connection" });
const NOAUTH_OK = ["no_auth", "fast", "loading", "stale"] as const;

/** The version of Redis whose commands and replies this front end follows (HELLO, INFO). */
export const REDIS_COMPAT_VERSION = "7.0.0";

export const CONNECTION_COMMANDS: CommandSpec[] = [
  c({
    name: "ping",
    arity: -1,
    flags: ["fast", "stale"],
    keys: [0, 0, 0],
    since: "1.0.0",
    summary: "Returns the server's liveliness response.",
    run: (ctx, a) => {
      if (a.length > 2) throw new RespError("ERR wrong number of arguments for 'ping' command");
      return a.length === 2 ? bulk(a[1]!) : simple("PONG");
    },
  }),
  c({ name: "echo", arity: 2, flags: ["fast", "loading", "stale"], keys: [0, 0, 0], since: "1.0.0", summary: "Returns the given string.", run: (ctx, a) => bulk(a[1]!) }),
  c({
    name: "quit",
    arity: -1,
    flags: NOAUTH_OK,
    keys: [0, 0, 0],
    since: "1.0.0",
    summary: "Closes the connection.",
    run: (ctx) => {
      ctx.session.closing = true;
      return OK;
    },
  }),
  c({
    name: "reset",
    arity: 1,
    flags: NOAUTH_OK,
    keys: [0, 0, 0],
    since: "6.2.0",
    summary: "Resets the connection.",
    run: (ctx) => {
      const s = ctx.session;
      s.proto = 2;
      s.db = 0;
      s.name = "";
      s.multi = undefined;
      s.access = ctx.shared.config.token === undefined ? "write" : undefined;
      return simple("RESET");
    },
  }),
  c({
    name: "select",
    arity: 2,
    flags: ["loading", "stale", "fast"],
    keys: [0, 0, 0],
    since: "1.0.0",
    summary: "Changes the selected database.",
    run: (ctx, a) => {
      const db = integer(a[1]!);
      if (db < 0 || db >= DATABASES) throw new RespError("ERR DB index is out of range");
      ctx.session.db = db;
      return OK;
    },
  }),
  c({
    name: "auth",
    arity: -2,
    flags: NOAUTH_OK,
    keys: [0, 0, 0],
    since: "1.0.0",
    summary: "Authenticates the connection.",
    run: (ctx, a) => {
      if (a.length > 3) throw new RespError(SYNTAX);
      authenticate(ctx, a.length === 3 ? a[1]!.toString() : undefined, a[a.length - 1]!.toString(), "AUTH");
      return OK;
    },
  }),
  c({ name: "hello", arity: -1, flags: NOAUTH_OK, keys: [0, 0, 0], since: "6.0.0", summary: "Handshakes with the Redis server.", run: hello }),
  c({
    name: "client",
    arity: -2,
    flags: [],
    keys: [0, 0, 0],
    since: "2.4.0",
    summary: "A container for client connection commands.",
    subcommands: [
      c({ name: "client|id", arity: 2, flags: ["loading", "stale"], keys: [0, 0, 0], since: "5.0.0", summary: "Returns the unique client ID of the connection.", run: (ctx) => int(ctx.session.id) }),
      c({
        name: "client|setname",
        arity: 3,
        flags: ["loading", "stale"],
        keys: [0, 0, 0],
        since: "2.6.9",
        summary: "Sets the connection name.",
        run: (ctx, a) => {
          ctx.session.name = clientName(a[2]!);
          return OK;
        },
      }),
      c({
        name: "client|getname",
        arity: 2,
        flags: ["loading", "stale"],
        keys: [0, 0, 0],
        since: "2.6.9",
        summary: "Returns the name of the connection.",
        run: (ctx) => bulkOrNil(ctx.session.name || undefined),
      }),
      c({
        name: "client|setinfo",
        arity: 4,
        flags: ["loading", "stale"],
        keys: [0, 0, 0],
        since: "7.2.0",
        summary: "Sets information specific to the client or connection.",
        run: (ctx, a) => {
          // As Redis 7.2: the attribute first, then its value, refused in the attribute's name as typed.
          const attr = word(a[2]!);
          if (attr !== "LIB-NAME" && attr !== "LIB-VER") throw new RespError(`ERR Unrecognized option '${a[2]!.toString()}'`);
          const value = clientName(a[3]!, a[2]!.toString());
          if (attr === "LIB-NAME") ctx.session.libName = value;
          else ctx.session.libVer = value;
          return OK;
        },
      }),
      c({
        name: "client|info",
        arity: 2,
        flags: ["loading", "stale"],
        keys: [0, 0, 0],
        since: "6.2.0",
        summary: "Returns information about the connection.",
        run: (ctx) => verbatim(`${clientLine(ctx, ctx.session)}\n`),
      }),
      c({
        name: "client|list",
        arity: -2,
        flags: ["admin", "loading", "stale"],
        keys: [0, 0, 0],
        since: "2.4.0",
        summary: "Lists open connections.",
        run: clientList,
      }),
    ],
  }),
];

/**
 * Checks a password against the node's tokens and sets what the connection may
 * do; WRONGPASS when it matches none. `user` is undefined for `AUTH <password>`.
 * Without --token, as Redis's `default` user with `nopass`: `AUTH <password>`
 * is an error, `AUTH default <anything>` succeeds, any other user is WRONGPASS.
 */
function authenticate(ctx: Ctx, user: string | undefined, password: string, command: "AUTH" | "HELLO"): void {
  if (ctx.shared.config.token === undefined) {
    if (user === undefined) {
      throw new RespError(
        "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
      );
    }
    if (user !== "default") throw new RespError(WRONGPASS);
    return;
  }
  const access = (user ?? "default") === "default" ? ctx.shared.authenticate(password) : undefined;
  if (access === undefined) {
    ctx.shared.refused("WRONGPASS", command, ctx.session.addr);
    throw new RespError(WRONGPASS);
  }
  ctx.session.access = access;
}

/** HELLO [protover [AUTH username password] [SETNAME name]]: the protocol, then the server's description as a map. */
function hello(ctx: Ctx, a: Buffer[]): Reply {
  let proto = ctx.session.proto;
  let i = 1;
  if (a.length > 1) {
    // Any int64 is a version (Redis: `HELLO -1` is NOPROTO); only what is not one is an error.
    const n = parseInt64(a[1]!.toString("latin1"));
    if (n === undefined) throw new RespError("ERR Protocol version is not an integer or out of range");
    if (n !== 2n && n !== 3n) throw new RespError("NOPROTO unsupported protocol version");
    proto = n === 2n ? 2 : 3;
    i = 2;
  }
  let name: string | undefined;
  let auth: [string, string] | undefined;
  for (; i < a.length; i++) {
    const opt = word(a[i]!);
    if (opt === "AUTH" && i + 2 < a.length) {
      auth = [a[i + 1]!.toString(), a[i + 2]!.toString()];
      i += 2;
    } else if (opt === "SETNAME" && i + 1 < a.length) name = clientName(a[++i]!);
    else throw new RespError(`ERR Syntax error in HELLO option '${a[i]!.toString()}'`);
  }
  if (auth) authenticate(ctx, auth[0], auth[1], "HELLO");
  if (ctx.session.access === undefined) {
    throw new RespError(
      "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
    );
  }
  if (name !== undefined) ctx.session.name = name;
  ctx.session.proto = proto;
  return map([
    ["server", "redis"],
    ["version", REDIS_COMPAT_VERSION],
    ["proto", proto],
    ["id", ctx.session.id],
    ["mode", "standalone"],
    ["role", "master"],
    ["modules", array([])],
  ]);
}

/** A client name (or a CLIENT SETINFO value, `what`) as Redis allows one: printable ASCII without spaces. */
function clientName(arg: Buffer, what = "Client names"): string {
  const s = text(arg);
  if (!/^[\x21-\x7e]*$/.test(s)) throw new RespError(`ERR ${what} cannot contain spaces, newlines or special characters.`);
  return s;
}

/**
 * CLIENT LIST [TYPE type | ID id [id ...]], as Redis 7.0 parses it: every
 * connection here is of type `normal` (no replicas, no pub/sub), so another known
 * type lists none; an ID that is no connection is left out.
 */
function clientList(ctx: Ctx, a: Buffer[]): Reply {
  let sessions = [...ctx.shared.sessions.values()];
  if (a.length === 4 && word(a[2]!) === "TYPE") {
    const type = a[3]!.toString().toLowerCase();
    if (!["normal", "master", "replica", "slave", "pubsub"].includes(type)) throw new RespError(`ERR Unknown client type '${a[3]!.toString()}'`);
    if (type !== "normal") sessions = [];
  } else if (a.length > 3 && word(a[2]!) === "ID") {
    sessions = [];
    for (const arg of a.slice(3)) {
      const id = parseInt64(arg.toString("latin1"));
      if (id === undefined) throw new RespError("ERR Invalid client ID");
      const s = id <= BigInt(Number.MAX_SAFE_INTEGER) && id > 0n ? ctx.shared.sessions.get(Number(id)) : undefined;
      if (s) sessions.push(s);
    }
  } else if (a.length !== 2) throw new RespError(SYNTAX);
  return verbatim(sessions.map((s) => `${clientLine(ctx, s)}\n`).join(""));
}

/** One line of CLIENT LIST / CLIENT INFO, with the fields clients read. */
function clientLine(ctx: Ctx, s: Session): string {
  const age = Math.max(0, Math.floor((ctx.service.wallMs() - s.createdMs) / 1000));
  return `id=${s.id} addr=${s.addr} name=${s.name} age=${age} db=${s.db} resp=${s.proto} lib-name=${s.libName} lib-ver=${s.libVer}`;
}
