/**
 * makhzen's public API for embedding. Everything not exported here is internal.
 */
export { createNode, type MakhzenNode, type BucketHandle, type CreateNodeOptions } from "./node.ts";
export { createLogger, silentLogger, type Logger, type LoggerOptions, type LogLevel, type LogFormat } from "./log.ts";
export { MakhzenClient, MakhzenClientError, type ClientOptions } from "./client.ts";
export { MakhzenError, type ErrorCode } from "./errors.ts";
export type { NodeOptions, NodeConfig } from "./config.ts";
export type { Item, StoredRecord } from "./record.ts";
export type { SetOptions, DeleteOptions, ListItemsOptions } from "./items.ts";
export type { ListPage, BucketStats } from "./store.ts";
export type { Version } from "./version.ts";
export type { ClusterStatus, MemberStatus } from "./cluster.ts";
export type { MemberState } from "./peer-protocol.ts";
export type { Refusals } from "./security.ts";
export { VERSION } from "./meta.ts";
