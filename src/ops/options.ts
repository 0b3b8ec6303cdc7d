import { didYouMean } from "./suggest.ts";

/**
 * The options object of a call, checked at run time: what TypeScript refuses at
 * compile time, a plain JavaScript caller is refused too, rather than have an option
 * silently ignored (`{ TTL: 60 }` stored no TTL) or a wrong type answered with a
 * misleading error further on. A leaf (no imports but suggest.ts): the embedded
 * handles and the HTTP client each throw their own error class, so the caller
 * supplies `fail`, which turns a message into the error to throw.
 *
 * `types` maps each option to the `typeof` its value must have; a type may be a
 * union, "string|number". An option given as `undefined` is as good as absent, as
 * TypeScript's optional properties allow. Only types are checked here: the values
 * themselves (ranges, sizes, levels) are checked where they are used.
 */
export type OptionTypes = Readonly<Record<string, string>>;

/** `takesNone`: for a call with no options (`types` empty), what to say it takes instead ("none" by default). */
export function checkCallOptions(what: string, opts: unknown, types: OptionTypes, fail: (message: string) => Error, takesNone = "none"): void {
  if (opts === undefined) return;
  const names = Object.keys(types);
  const none = names.length === 0;
  if (opts === null || typeof opts !== "object" || Array.isArray(opts)) {
    throw fail(none ? `${what} takes no options, not ${typeof opts === "object" ? JSON.stringify(opts) : String(opts)}` : `${what} options must be an object like { ${names.join(", ")} }`);
  }
  for (const [k, v] of Object.entries(opts)) {
    // Object.hasOwn: `constructor` or `toString` must not find Object.prototype's.
    const type = Object.hasOwn(types, k) ? types[k] : undefined;
    if (type === undefined) throw fail(`${what} has no option "${k}"${none ? `; it takes ${takesNone}` : didYouMean(k, names) || `; it takes ${names.join(", ")}`}`);
    if (v !== undefined && !type.split("|").includes(typeof v)) {
      throw fail(`${what} option ${k} must be a ${type.replace("|", " or ")}, not ${typeof v}`);
    }
  }
}
