import type { ArgsDef } from "citty";
import { editDistance } from "../ops/suggest.ts";
import { CliError, usageError } from "./_errors.ts";
import { parseBoolean } from "./_flags.ts";

/**
 * The command line, checked and rewritten before citty sees it.
 *
 * citty alone reads `-port=3001` as the short flags -p -o -r -t and ignores them,
 * ignores flags it does not know, and takes `--insecure=maybe` as true: the node
 * then starts on the wrong port, or writes to the wrong place, without a word. The
 * seeds' READMEs print single-dash flags (`-port=3001`, `-cluster=...`, huton's
 * `-bindPort 8100`), so here every flag may be written `--x v`, `--x=v`, `-x v` or
 * `-x=v`, and anything that would not take effect is refused with one line (exit 2).
 *
 * One dash and two are the same because makhzen has no short flags to bundle
 * (`-abc` is never `-a -b -c`); the only one-letter flags are `-h` (help, on every
 * command) and, before a command, `-v` (version). A token that starts with a dash
 * and a digit (`-1`) is a value, never a flag. A flag's value may start with a dash
 * when it is attached (`--token=-x`), but a value that is itself one of the
 * command's flags (`--cluster --name x`) was surely a missing value and is refused.
 */

export interface CommandLine {
  /** The tokens for citty: each flag once, as `--name=value`, `--name` or `--no-name`, then `--` and the positionals. */
  argv: string[];
  /** `-h` or `--help` was given (before any `--`). */
  help: boolean;
  /**
   * Flags typed otherwise than `--name` (an alias: `-bindPort` for `port`; one
   * dash: `-port`), name -> as typed: errors found later, which name the flag
   * `--name`, are reworded with it (see namingTyped).
   */
  aliased: Map<string, string>;
}

interface Spelling {
  /** The flag's name in the ArgsDef (an alias maps to it). */
  name: string;
  type: "string" | "boolean";
}

export function normalizeArgs(rawArgs: readonly string[], def: ArgsDef): CommandLine {
  const known = new Map<string, Spelling>();
  let positionalSlots = 0;
  for (const [name, d] of Object.entries(def)) {
    if (d.type === "positional") {
      positionalSlots++;
      continue;
    }
    const type = d.type === "boolean" ? "boolean" : "string";
    for (const spelling of [name, ...toArray((d as { alias?: string | string[] }).alias)]) known.set(spelling, { name, type });
  }
  const flags: string[] = [];
  const positionals: string[] = [];
  const given = new Map<string, string>(); // flag name -> how it was first typed
  const aliased = new Map<string, string>();
  let help = false;

  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i]!;
    if (arg === "--") {
      positionals.push(...rawArgs.slice(i + 1));
      break;
    }
    if (!isFlag(arg)) {
      positionals.push(arg);
      continue;
    }
    const [typed, inline] = splitFlag(arg);
    if (typed === "h" || typed === "help") {
      help = true;
      continue;
    }
    const negated = typed.startsWith("no-") && known.get(typed.slice(3))?.type === "boolean";
    const spelling = known.get(negated ? typed.slice(3) : typed);
    if (spelling === undefined) throw usageError(`unknown flag ${dashes(arg)}${suggest(typed, known)}; see --help`);
    const shown = dashes(arg); // as typed: one dash or two
    const first = given.get(spelling.name);
    if (first !== undefined) {
      // `--port 1 -port=2` is the same spelling twice, whatever the dashes.
      const same = first.replace(/^--?/, "") === typed;
      throw usageError(same ? `${first === shown ? shown : `--${typed}`} is given twice; give it once` : `${first} and ${shown} are the same flag; give it once`);
    }
    given.set(spelling.name, shown);
    const asTyped = negated ? `${shown.startsWith("--") ? "--" : "-"}${typed.slice(3)}` : shown;
    if (asTyped !== `--${spelling.name}`) aliased.set(spelling.name, asTyped);

    if (spelling.type === "boolean") {
      let on = !negated;
      if (inline !== undefined) {
        if (negated) throw usageError(`${shown} takes no value, not "${inline}"`);
        on = parseBooleanAsTyped(typed, inline, shown);
      }
      flags.push(on ? `--${spelling.name}` : `--no-${spelling.name}`);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = rawArgs[i + 1];
      if (next === undefined) throw usageError(`${shown} needs a value`);
      if (isFlag(next) && names(next, known)) {
        throw usageError(`${shown} needs a value, but the next argument is the flag ${dashes(next)}; write ${shown}=VALUE if the value starts with a dash`);
      }
      value = next;
      i++;
    }
    if (value === "") throw usageError(`${shown} needs a value; it was given an empty one`);
    flags.push(`--${spelling.name}=${value}`);
  }
  if (positionals.length > positionalSlots) {
    const extra = positionals[positionalSlots]!;
    throw usageError(`unexpected argument ${JSON.stringify(extra)}${positionalSlots === 0 ? " (this command takes none)" : ""}; see --help`);
  }
  return { argv: [...flags, "--", ...positionals], help, aliased };
}

/** A message naming flags (`--port must be ...`) with each one as it was typed (`--bindPort must be ...`). */
export function namingTyped(message: string, aliased: ReadonlyMap<string, string>): string {
  let out = message;
  for (const [name, shown] of aliased) out = out.replace(new RegExp(`--${name}(?![\\w-])`, "g"), shown);
  return out;
}

/** parseBoolean, its refusal naming the flag as typed (`-insecure must be ...`). */
function parseBooleanAsTyped(typed: string, value: string, shown: string): boolean {
  try {
    return parseBoolean(typed, value);
  } catch (e) {
    if (e instanceof CliError) throw new CliError(namingTyped(e.message, new Map([[typed, shown]])), e.exitCode);
    throw e;
  }
}

/** `-x...` or `--x...`, but not `-` alone (stdin) nor a negative number. */
function isFlag(arg: string): boolean {
  return arg.length > 1 && arg.startsWith("-") && !/^-\d/.test(arg) && arg !== "--";
}

/** `--name=value` or `-name=value` as [name, value]; value undefined when nothing is attached. */
function splitFlag(arg: string): [string, string | undefined] {
  const body = arg.startsWith("--") ? arg.slice(2) : arg.slice(1);
  const at = body.indexOf("=");
  return at === -1 ? [body, undefined] : [body.slice(0, at), body.slice(at + 1)];
}

/** The flag part of a token as typed, without any value: `-port=3001` -> `-port`. */
const dashes = (arg: string): string => arg.split("=")[0]!;

/** Whether a token is one of the command's own flags (or help): what a flag with a missing value swallowed. */
function names(arg: string, known: Map<string, Spelling>): boolean {
  const [typed] = splitFlag(arg);
  if (typed === "h" || typed === "help") return true;
  return known.has(typed) || (typed.startsWith("no-") && known.get(typed.slice(3))?.type === "boolean");
}

/** ` (did you mean --port?)` for a flag one or two edits from a known one, else nothing. */
function suggest(typed: string, known: Map<string, Spelling>): string {
  let best: string | undefined;
  let bestDistance = 3;
  for (const spelling of known.keys()) {
    const d = editDistance(typed.toLowerCase(), spelling.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [spelling, d];
  }
  return best === undefined ? "" : ` (did you mean --${best}?)`;
}

const toArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
