/**
 * Reading what a node shows an operator: Prometheus text from /metrics, and JSON
 * log lines from its stderr.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Every sample line of a Prometheus text exposition (comments and blank lines skipped). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: m[3] === "+Inf" ? Infinity : Number(m[3]) });
  }
  return out;
}

/** The samples of `name` whose labels include `labels`. */
export function samples(all: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The one value of `name` with `labels`, or undefined when there is no such series. */
export function valueOf(all: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples(all, name, labels);
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} series`);
  return found[0]?.value;
}

/** GET /metrics of a node over HTTP, parsed. */
export async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(2000) });
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
  return parseMetrics(await res.text());
}

export type LogLine = { ts: string; level: string; msg: string; component?: string } & Record<string, unknown>;

/** The JSON log lines in a process's output; other lines (there should be none) are returned apart. */
export function logLines(output: string): { lines: LogLine[]; other: string[] } {
  const lines: LogLine[] = [];
  const other: string[] = [];
  for (const raw of output.split("\n")) {
    if (raw.trim() === "") continue;
    try {
      lines.push(JSON.parse(raw) as LogLine);
    } catch {
      other.push(raw); // not JSON: reported to the caller, which decides whether that fails the test
    }
  }
  return { lines, other };
}
