/**
 * Which methods a path takes, for the 405 answer of a known path asked with
 * another method (RFC 9110 §15.5.6: the answer lists them in `Allow`).
 *
 * The table is built from the routes the app really registered (Elysia's
 * `app.routes`), so it cannot drift from the router, and it is consulted only
 * after the router found nothing: a request that is routed pays nothing for it.
 * Lookup is a linear scan of ~30 compiled patterns, on the error path alone.
 */

/** The order methods are listed in `Allow`: reads first. */
const ORDER = ["GET", "HEAD", "PUT", "POST", "DELETE"];

export interface RouteLike {
  method: string;
  path: string;
}

/**
 * A lookup from a request path (as it appears in the URL, still percent-encoded)
 * to the methods its routes take, or undefined for a path no route matches.
 *
 * Patterns are Elysia's: `:name` is one non-empty segment, `*` the non-empty rest
 * (a key may hold `/`). A GET route also answers HEAD (Elysia does so itself).
 * Elysia ignores one trailing slash (`/healthz/` is `/healthz`), so a path with
 * one is looked up without it when it matches nothing as it is.
 */
export function methodTable(routes: readonly RouteLike[]): (path: string) => string[] | undefined {
  const byPattern = new Map<string, Set<string>>();
  for (const r of routes) {
    const methods = byPattern.get(r.path) ?? new Set<string>();
    methods.add(r.method.toUpperCase());
    if (r.method.toUpperCase() === "GET") methods.add("HEAD");
    byPattern.set(r.path, methods);
  }
  const compiled = [...byPattern].map(([pattern, methods]) => ({ re: toRegExp(pattern), methods }));
  const find = (path: string): string[] | undefined => {
    const found = new Set<string>();
    for (const c of compiled) if (c.re.test(path)) for (const m of c.methods) found.add(m);
    return found.size === 0 ? undefined : [...found].sort(byOrder);
  };
  return (path) => find(path) ?? (path.length > 1 && path.endsWith("/") ? find(path.slice(0, -1)) : undefined);
}

function toRegExp(pattern: string): RegExp {
  const source = pattern
    .split("/")
    .map((seg) => (seg === "*" ? ".+" : seg.startsWith(":") ? "[^/]+" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
    .join("/");
  return new RegExp(`^${source}$`);
}

function byOrder(a: string, b: string): number {
  const ia = ORDER.indexOf(a);
  const ib = ORDER.indexOf(b);
  return (ia === -1 ? ORDER.length : ia) - (ib === -1 ? ORDER.length : ib) || a.localeCompare(b);
}
