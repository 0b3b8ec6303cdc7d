import pkg from "../package.json" with { type: "json" };

/** The release version, from package.json (inlined by `bun build --compile`). */
export const VERSION: string = pkg.version;
