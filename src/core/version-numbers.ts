import { hashChars, type Halves } from "./lanes.ts";
import { COUNTER_DIGITS, WALL_DIGITS, type Version } from "./version.ts";

/**
 * A version as two numbers, as the record table keeps it (table.ts): the wall-clock
 * milliseconds, and a `stamp` (the counter × NODE_SPAN + the number of the node
 * name, interned once per process). A number in a column costs its 8 bytes and
 * nothing else; a version string per record cost ~90 bytes flat, ~145 as the rope
 * a concatenation makes (docs/benchmarks.md, Issue 13, section 8).
 *
 * The version string is formatted when a record is asked for (`formatVersionOf`).
 * A merge compares versions as numbers (`compareVersionOf`: a digit loop over the
 * incoming string, read once for the compare and the take). A version that is not
 * well-formed (tests, tools) is kept whole: its wall is RAW and its stamp the
 * number of the string in the interned table; it compares and formats as the
 * string it was.
 */

/** What `readVersionOf` read: the two numbers of the last version given to it. */
export const versionRead = { wall: 0, stamp: 0 };

/** Reads `v` into versionRead (well-formed or not: see above). */
export function readVersionOf(v: Version): void {
  if (readVersion(v)) {
    versionRead.wall = readWall;
    versionRead.stamp = readStamp;
  } else {
    versionRead.wall = RAW;
    versionRead.stamp = nameNumber(v);
  }
}

/** The version string of (wall, stamp). */
export function formatVersionOf(wall: number, stamp: number): Version {
  if (wall === RAW) return nodeNames[stamp]!;
  if (wall !== prefixOf) {
    prefixOf = wall;
    prefix = `${String(wall).padStart(WALL_DIGITS, "0")}-`;
  }
  const c = String(Math.floor(stamp / NODE_SPAN));
  return `${prefix}${c.length < COUNTER_DIGITS ? COUNTER_PAD.slice(c.length) : ""}${c}-${nodeNames[stamp % NODE_SPAN]}`;
}

/** The wall-clock milliseconds of the version (what ages a tombstone); NaN for a malformed one. */
export function versionWallOf(wall: number, stamp: number): number {
  return wall === RAW ? Number(formatVersionOf(wall, stamp).slice(0, WALL_DIGITS)) : wall;
}

/**
 * Compares the version (wall, stamp) with `v`, as the strings compare (version
 * order): negative when (wall, stamp) is older. A well-formed `v` compares by its
 * numbers, with no string built.
 */
export function compareVersionOf(wall: number, stamp: number, v: Version): number {
  if (wall !== RAW && readVersion(v)) {
    if (wall !== readWall) return wall < readWall ? -1 : 1;
    const c = Math.floor(stamp / NODE_SPAN) - Math.floor(readStamp / NODE_SPAN);
    if (c !== 0) return c;
    const a = nodeNames[stamp % NODE_SPAN]!;
    const b = nodeNames[readStamp % NODE_SPAN]!;
    return a === b ? 0 : a < b ? -1 : 1;
  }
  const held = formatVersionOf(wall, stamp);
  return held === v ? 0 : held < v ? -1 : 1;
}

/** Node numbers are below this; a counter is below 10^6 < 2^20, so a stamp is below 2^44: exact in a double. */
const NODE_SPAN = 2 ** 24;
/** `wallMs` of a version kept whole (not well-formed). */
const RAW = -1;
const COUNTER_PAD = "0".repeat(COUNTER_DIGITS);

/**
 * Node names (and the odd malformed version) by number, for the life of the
 * process: a version keeps its name's number. Names are few (the members a cluster
 * ever had); past NODE_SPAN of them a version is kept whole.
 */
const nodeNames: string[] = [];
const nodeNumbers = new Map<string, number>();
/** Each name's 64-bit hash (lanes.ts), lo at 2n and hi at 2n + 1: what names it on every node, where its number is this process's. */
const nameHashes: number[] = [];
const hashed: Halves = { lo: 0, hi: 0 };

function nameNumber(name: string): number {
  let n = nodeNumbers.get(name);
  if (n === undefined) {
    n = nodeNames.length;
    nodeNames.push(name);
    nodeNumbers.set(name, n);
    hashChars(name, hashed);
    nameHashes.push(hashed.lo, hashed.hi);
  }
  return n;
}

/**
 * The counter of the version (wall, stamp), with the hash of its node's name in
 * `out` (of the whole version, with counter 0, when it is not well-formed): the
 * version as numbers that are the same on every node (fingerprint.ts's recordSum).
 */
export function counterAndNameHash(wall: number, stamp: number, out: Halves): number {
  const name = wall === RAW ? stamp : stamp % NODE_SPAN;
  out.lo = nameHashes[2 * name]!;
  out.hi = nameHashes[2 * name + 1]!;
  return wall === RAW ? 0 : Math.floor(stamp / NODE_SPAN);
}

/** The node name `readVersion` read last, and its number. */
let lastName = "";
let lastNumber = -1;

/** The wall-clock prefix last formatted (`version`): writes of one millisecond share it. */
let prefixOf = -1;
let prefix = "";

/** What readVersion read last (`read`, and whether it was well-formed): no object per version read. */
let read: string | undefined;
let readOk = false;
let readWall = 0;
let readStamp = 0;

/**
 * Reads a well-formed version (`wallMs-counter-node`, VERSION_PATTERN's digits and
 * dashes) into readWall and readStamp; false for anything else, which is then kept
 * whole. A digit loop, not Number() of a slice: Number() would take " 12", "0x1"
 * or "1e5", which the pattern does not. The version a merge compares is the one
 * it then takes: read once.
 */
function readVersion(v: string): boolean {
  if (v === read) return readOk;
  read = v;
  readOk = false;
  const at = WALL_DIGITS + 1 + COUNTER_DIGITS + 1;
  if (v.length <= at || v.charCodeAt(WALL_DIGITS) !== DASH || v.charCodeAt(at - 1) !== DASH) return false;
  let wall = 0;
  for (let i = 0; i < WALL_DIGITS; i++) {
    const d = v.charCodeAt(i) - ZERO;
    if (d < 0 || d > 9) return false;
    wall = wall * 10 + d;
  }
  let counter = 0;
  for (let i = WALL_DIGITS + 1; i < at - 1; i++) {
    const d = v.charCodeAt(i) - ZERO;
    if (d < 0 || d > 9) return false;
    counter = counter * 10 + d;
  }
  // Most versions a node reads are its own or a few peers': the last name read is
  // matched in place, without slicing it out and looking it up.
  const node = lastNumber >= 0 && v.length - at === lastName.length && v.endsWith(lastName) ? lastNumber : nameNumber((lastName = v.slice(at)));
  lastNumber = node;
  if (node >= NODE_SPAN) return false;
  readWall = wall;
  readStamp = counter * NODE_SPAN + node;
  return (readOk = true);
}

const DASH = 45;
const ZERO = 48;
