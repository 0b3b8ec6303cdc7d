/**
 * makhzen's public API for embedding. Everything not exported here is internal.
 */
export { createNode, type MakhzenNode, type CreateNodeOptions } from "./node.ts";
export type {
  BucketHandle,
  ItemsHandle,
  ItemsGetOptions,
  ItemsSetOptions,
  ItemsDeleteOptions,
  ConcernOptions,
  ConsistencyLevel,
} from "./embedded.ts";
export { createLogger, silentLogger, type Logger, type LoggerOptions, type LogLevel, type LogFormat } from "./ops/log.ts";
export { MakhzenClient, MakhzenClientError, type ClientOptions } from "./client/client.ts";
export { MakhzenError, type ErrorCode } from "./errors.ts";
export type { NodeOptions, NodeConfig } from "./config.ts";
export type { Item, StoredRecord } from "./core/record.ts";
export type { SetOptions, DeleteOptions, ListItemsOptions } from "./core/items.ts";
export type { ListPage, BucketStats } from "./core/store.ts";
export type { Version } from "./core/version.ts";
export type { ClusterStatus, MemberStatus } from "./cluster/reports.ts";
export type { ClusterListPage, Incomplete } from "./cluster/listing.ts";
export type { ForgetResult } from "./cluster/forget.ts";
export type { MemberState } from "./cluster/protocol/messages.ts";
export type { Refusals } from "./ops/security.ts";
export { VERSION } from "./meta.ts";
