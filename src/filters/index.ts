/**
 * The built-in filters: each middleware type name with a loader of its module (type, schema, factory,
 * close), for a FilterRegistry (src/pipeline/registry.ts). Loaded on first use: a config without (some)
 * filters does not load their modules and libraries (jose, ioredis, bcryptjs, http-cache-semantics: tens
 * of MiB of memory per process).
 */
import type { FilterLoaders } from '../pipeline/registry.ts';

export const BUILT_IN_FILTERS: FilterLoaders = {
  auth: async () => (await import('./auth/index.ts')).authFilter,
  rate_limit: async () => (await import('./rate-limit/filter.ts')).rateLimitFilter,
  cors: async () => (await import('./cors.ts')).corsFilter,
  cache: async () => (await import('./cache/filter.ts')).cacheFilter,
  headers: async () => (await import('./headers.ts')).headersFilter,
};
