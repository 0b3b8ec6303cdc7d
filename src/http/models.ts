import { t } from "elysia";
import { MAX_LIST_LIMIT, MAX_TTL_SECONDS } from "../core/items.ts";

/**
 * Every TypeBox model of the public API, in one place. Bodies and queries are
 * validated against these; response models document the API in /openapi (the hot
 * routes answer prebuilt Responses, so responses are not re-validated at run time).
 */

export const ItemBody = t.Object(
  {
    value: t.String({ description: "The value, up to --max-value-bytes of UTF-8" }),
    ttl: t.Optional(
      t.Number({
        exclusiveMinimum: 0,
        maximum: MAX_TTL_SECONDS,
        description: "Seconds until the item expires",
        error: "ttl must be a number of seconds > 0",
      }),
    ),
  },
  { additionalProperties: false },
);

export const Item = t.Object({
  key: t.String(),
  value: t.String(),
  version: t.String({ description: "HLC version; also the ETag" }),
  expiresAt: t.Optional(t.Number({ description: "Expiry, epoch ms" })),
});

export const ListQuery = t.Object({
  prefix: t.Optional(t.String()),
  limit: t.Optional(
    t.Numeric({ minimum: 1, maximum: MAX_LIST_LIMIT, multipleOf: 1, error: `limit must be an integer from 1 to ${MAX_LIST_LIMIT}` }),
  ),
  cursor: t.Optional(t.String({ description: "The cursor of the previous page" })),
});

export const ItemList = t.Object({
  items: t.Array(Item),
  cursor: t.Union([t.String(), t.Null()], { description: "Pass back to get the next page; null at the end" }),
});

export const BucketList = t.Object({
  buckets: t.Array(t.Object({ name: t.String(), keys: t.Number(), bytes: t.Number() })),
});

export const ErrorEnvelope = t.Object({
  error: t.Object({ code: t.String(), message: t.String() }),
});

export const Health = t.Object({ status: t.String() });

export const BucketParams = t.Object({ bucket: t.String() });
