#!/usr/bin/env bun
import { defineCommand, renderUsage, runCommand, type ArgsDef, type CommandDef } from "citty";
import { MakhzenClientError } from "../client/client.ts";
import { VERSION } from "../meta.ts";
import { CliError, usageError } from "./_errors.ts";
import { print, printError } from "./_output.ts";
import { namingTyped, normalizeArgs } from "./_argv.ts";
import { createReadStream } from "node:fs";
import { resolve } from "node:path";
import { checkVariables, envName, launcherFd, noColor, underNpmStart } from "./_flags.ts";
import { CLIENT_VARIABLE_FLAGS } from "./_connection.ts";
import { editDistance } from "../ops/suggest.ts";
import { SERVE_FLAGS } from "./serve-flags.ts";
import { del, get, ls, put } from "./client-commands.ts";
import { dump, load } from "./transfer-commands.ts";
import { serve } from "./serve.ts";
import { status } from "./status.ts";
import { forget } from "./forget.ts";

export const commands: Record<string, CommandDef<any>> = { serve, get, put, del, ls, dump, load, status, forget };

export const root = defineCommand({
  meta: { name: "makhzen", version: VERSION, description: "A distributed in-memory key-value store for Bun" },
  subCommands: commands,
});

function findCommand(name: string | undefined): CommandDef<any> | undefined {
  if (name === undefined) return undefined;
  if (Object.hasOwn(commands, name)) return commands[name]; // not `in`: "constructor" is in every object
  return Object.values(commands).find((c) => {
    const alias = (c.meta as { alias?: string | string[] } | undefined)?.alias;
    return alias === name || (Array.isArray(alias) && alias.includes(name));
  });
}

/**
 * Why `first` is no command: a flag typed before the command (`makhzen --port 3001
 * serve`, as some CLIs take global flags) is said as such; a typo gets the closest names.
 */
function unknownCommand(first: string): string {
  const aliases: string[] = [];
  const names = Object.entries(commands).map(([name, c]) => {
    const alias = (c.meta as { alias?: string } | undefined)?.alias;
    if (alias !== undefined) aliases.push(alias);
    return alias === undefined ? name : `${name} (or ${alias})`;
  });
  names.push("help", "version");
  // The flag's name only: its value may be a token or a URL with a password (`--token=...`, `--url=http://u:pw@...`).
  const flag = first.split("=")[0]!;
  if (/^--?[A-Za-z]/.test(first)) return `${flag} before a command: flags go after it, as in "makhzen COMMAND ${flag} ..."; commands: ${names.join(", ")}`;
  // One edit for three letters or fewer, two beyond ("sever" is two from "serve"): more offered every short name.
  const most = first.length <= 3 ? 1 : 2;
  const candidates = [...Object.keys(commands), ...aliases, "help", "version"];
  const distances = candidates.map((name) => editDistance(first.toLowerCase(), name));
  const best = Math.min(...distances);
  const close = best > most ? [] : candidates.filter((_, i) => distances[i] === best);
  const hint = close.length === 0 ? "" : ` (did you mean ${close.map((n) => `"${n}"`).join(" or ")}?)`;
  return `unknown command "${first}"${hint}; commands: ${names.join(", ")}`;
}

/** What asks for help in place of a command (`help` as etcdctl and git users type it). */
const HELP = ["--help", "-h", "-help", "help"];

/** Every MAKHZEN_* variable some command reads: any other is refused (checkVariables). */
const VARIABLES: ReadonlySet<string> = new Set([
  ...SERVE_FLAGS.map((f) => f.env),
  ...CLIENT_VARIABLE_FLAGS.map(envName),
  "MAKHZEN_LAUNCHER_FD",
]);

/**
 * Runs the CLI and returns the exit code. Expected failures (bad flags, a missing
 * key, an unreachable node) print one line on stderr; only bugs print a stack.
 * `env`, when given, is checked for MAKHZEN_* variables nothing reads: the
 * executable passes its own; tests calling in process pass one when they check that.
 */
export async function main(rawArgs: string[], env?: NodeJS.ProcessEnv): Promise<number> {
  try {
    const [first, ...rest] = rawArgs;
    // `help` and `version` as etcdctl, git and redis-cli users type them.
    if (first === undefined || HELP.includes(first)) {
      // `makhzen --help serve` is `makhzen serve --help`; anything else after --help is refused, not ignored.
      // `help help` and `help --help` are the root's help, as git's.
      const about = rest.length === 1 && HELP.includes(rest[0]!) ? [] : rest;
      const cmd = about.length === 0 ? undefined : findCommand(about[0]);
      if (about.length === 1 && !cmd && !about[0]!.startsWith("-")) throw usageError(unknownCommand(about[0]!));
      if (about.length > (cmd ? 1 : 0)) throw usageError(`${first} takes a command at most, not ${about.map((a) => JSON.stringify(a)).join(" ")}`);
      await writeHelp(await (cmd ? renderUsage(cmd, root) : renderUsage(root)));
      return first === undefined ? 2 : 0;
    }
    if (["--version", "-v", "-version", "version"].includes(first)) {
      // `makhzen --version serve` would otherwise print the version and not serve, exit 0.
      if (rest.length > 0) throw usageError(`${first} takes no arguments; unexpected ${JSON.stringify(rest[0])}`);
      await print(VERSION + "\n");
      return 0;
    }
    const cmd = findCommand(first);
    if (!cmd) throw usageError(unknownCommand(first));
    const line = normalizeArgs(rest, (cmd.args ?? {}) as ArgsDef);
    if (line.help) {
      await writeHelp(await renderUsage(cmd, root));
      return 0;
    }
    // After help, which the refusal points to.
    if (env !== undefined) checkVariables(VARIABLES, env);
    try {
      await runCommand(cmd, { rawArgs: line.argv });
    } catch (e) {
      // Flag values are parsed by the command, under the flag's own name: say the alias the user typed.
      if (e instanceof CliError) throw new CliError(namingTyped(e.message, line.aliased), e.exitCode, e.said);
      throw e;
    }
    return 0;
  } catch (e) {
    if (e instanceof CliError) return e.said ? e.exitCode : await fail(e.message, e.exitCode);
    // A key no URL can carry ("", ".", "..") is refused before any request: the user's argument, so a usage error.
    // The node's words name the header; a CLI user gives the token by flag or variable.
    if (e instanceof MakhzenClientError && e.code === "UNAUTHORIZED") return await fail(`${e.message} (give it with --token or MAKHZEN_TOKEN)`, 1);
    if (e instanceof MakhzenClientError) return await fail(e.message, e.status === 0 && e.code === "INVALID_KEY" ? 2 : 1);
    if (e instanceof Error && e.name === "CLIError") return await fail(`${e.message}; see --help`, 2);
    const stream = streamFailure(e);
    if (stream === "closed") return SIGPIPE_EXIT;
    if (stream !== undefined) return await fail(stream, 1);
    console.error(e);
    return 1;
  }
}

/** The status of a process stopped by SIGPIPE (128 + 13), which `cat | head` gives too. */
const SIGPIPE_EXIT = 141;

/**
 * A failure to read the CLI's input or write its output, which is the user's setup
 * and not a bug, so it gets one line rather than a stack: "closed" when the reader
 * of stdout went away (`makhzen dump | head`), said nothing of, as Unix tools do;
 * else the line (a full disk under `> file`, stdin a directory). Undefined for
 * anything else.
 */
function streamFailure(e: unknown): "closed" | string | undefined {
  if (!(e instanceof Error)) return undefined;
  const { code, syscall } = e as { code?: unknown; syscall?: unknown };
  // fstat: Bun looks at stdin before reading it (`makhzen load < DIR`).
  if (typeof code !== "string" || !/^E[A-Z]+$/.test(code) || (syscall !== "write" && syscall !== "read" && syscall !== "fstat")) return undefined;
  if (code === "EPIPE") return "closed";
  // Bun's message: "ENOSPC: no space left on device, write".
  const why = e.message.replace(/^E[A-Z]+: /, "").replace(/, (write|read|fstat)$/, "");
  return `cannot ${syscall === "write" ? "write its output" : "read its input"}: ${why} (${code})`;
}

/**
 * Help on stdout, coloured only for a terminal: piped into a file or a pager that
 * does not read escapes, citty's ANSI codes would be noise. NO_COLOR turns them off too.
 */
function writeHelp(text: string): Promise<void> {
  const plain = process.stdout.isTTY !== true || noColor();
  return print((plain ? stripAnsi(text) : text) + "\n");
}

/** Removes SGR escape sequences (colours, bold, underline): all citty writes. */
const stripAnsi = (text: string): string => text.replace(/\u001B\[[0-9;]*m/g, "");

async function fail(message: string, code: number): Promise<number> {
  await printError(`makhzen: ${message}\n`);
  return code;
}

/**
 * Under the npm launcher, stop when it is gone. It passes SIGINT and SIGTERM on, but
 * a SIGKILL kills only it, and the node went on serving, holding its port, with no
 * parent left to stop it. The launcher's pipe reaches EOF when it dies however it
 * died; this process then SIGTERMs itself: `serve` drains and leaves (bounded by
 * --drain-timeout), any other command just ends. Costs one idle read, no polling.
 */
function stopWithLauncher(): void {
  const fd = launcherFd();
  if (fd === undefined) return;
  const pipe = createReadStream("", { fd });
  const orphaned = () => process.kill(process.pid, "SIGTERM");
  pipe.on("data", () => {}); // the launcher never writes; read so that EOF is seen
  pipe.on("end", orphaned);
  // An fd that is not there (the variable came from elsewhere): no launcher to watch.
  pipe.on("error", () => {});
}

/**
 * Under `npm start`, stop when the shell npm started is gone. npm
 * passes a SIGTERM to that shell, which dies of it without passing it on, and the
 * node went on serving with no parent (what a supervisor or `docker stop` that
 * signals only npm's PID left behind). `exec` in the script would avoid the shell,
 * but not on Windows' cmd. Polls getppid once a second, only under npm start.
 */
function stopWithNpmScript(): void {
  if (!underNpmStart()) return;
  const parent = process.ppid;
  // Already orphaned (the shell died before this read its parent): stop now.
  if (parent === 1) return void process.kill(process.pid, "SIGTERM");
  const watch = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(watch);
    process.kill(process.pid, "SIGTERM");
  }, 1000);
  watch.unref();
}

/**
 * `npm start -- --data-dir ./d` from a subdirectory of the checkout: npm runs the
 * script at the package's root, so a relative path in a flag (--data-dir, --tls-cert)
 * was read from there, not from where the user typed it. npm says where in INIT_CWD.
 */
function inNpmCallersDirectory(): void {
  const cwd = process.env.INIT_CWD;
  // Only for this checkout's own start script: another project's (`"start": "makhzen serve --data-dir ./data"`)
  // wrote its paths for its root, where npm runs it, and the variables reach makhzen through it all the same.
  const ours = process.env.npm_package_json === resolve(import.meta.dir, "../../package.json");
  if (underNpmStart() && ours && cwd !== undefined && cwd !== "") process.chdir(cwd);
}

if (import.meta.main) {
  stopWithLauncher();
  stopWithNpmScript();
  inNpmCallersDirectory();
  const code = await main(process.argv.slice(2), process.env);
  process.exit(code);
}
