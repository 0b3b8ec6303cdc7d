/**
 * Versions are hybrid logical clock stamps (wallMs, counter, nodeName), kept as
 * strings whose plain string order IS version order: wallMs and counter are
 * zero-padded to a fixed width and the node name is the tail. Comparing two
 * versions is then one string comparison, and a version serializes to JSON, an
 * ETag or a SQL column with no extra work.
 *
 *   001764021234567-000000-node-a
 */
export type Version = string;

/** 15 decimal digits of epoch ms last until the year 33658. */
export const WALL_DIGITS = 15;
/** A counter past this rolls into the next logical millisecond (see clock.ts). */
export const COUNTER_DIGITS = 6;
export const MAX_COUNTER = 10 ** COUNTER_DIGITS - 1;

/** The longest node name, in characters. */
export const NODE_NAME_MAX = 128;
/** Node names appear inside versions and ETags, so they exclude quotes, spaces and commas. */
const NODE_NAME = `[A-Za-z0-9_.:@\\[\\]-]{1,${NODE_NAME_MAX}}`;
/** A whole node name (config validates --name with it; the peer protocol its members' names). */
export const NODE_NAME_PATTERN = new RegExp(`^${NODE_NAME}$`);
/** A whole version string; its groups are wallMs, counter and node name (parseVersion). */
export const VERSION_PATTERN = new RegExp(`^(\\d{${WALL_DIGITS}})-(\\d{${COUNTER_DIGITS}})-(${NODE_NAME})$`);
/** The longest version string, in characters. */
export const VERSION_MAX_LENGTH = WALL_DIGITS + 1 + COUNTER_DIGITS + 1 + NODE_NAME_MAX;

export interface VersionParts {
  wallMs: number;
  counter: number;
  node: string;
}

export function formatVersion(wallMs: number, counter: number, node: string): Version {
  return `${String(wallMs).padStart(WALL_DIGITS, "0")}-${String(counter).padStart(COUNTER_DIGITS, "0")}-${node}`;
}

/** Returns undefined for anything that is not a well-formed version string. */
export function parseVersion(v: string): VersionParts | undefined {
  const m = VERSION_PATTERN.exec(v);
  if (!m) return undefined;
  return { wallMs: Number(m[1]), counter: Number(m[2]), node: m[3]! };
}

export const isVersion = (v: string): boolean => VERSION_PATTERN.test(v);

/** Negative when a is older than b, 0 when equal, positive when newer. */
export function compareVersions(a: Version, b: Version): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The node that stamped a version. */
export const versionNode = (v: Version): string => v.slice(WALL_DIGITS + COUNTER_DIGITS + 2);

/** The wall-clock part of a version, used to age tombstones. */
export function versionWallMs(v: Version): number {
  return Number(v.slice(0, WALL_DIGITS));
}
