/**
 * The filter registry: middleware type name -> factory. Built-in filters are listed here and loaded on
 * first use, so that a config without (some) filters does not load their modules and libraries (jose,
 * ioredis, bcryptjs, http-cache-semantics: tens of MiB of memory per process). A `module` entry names a
 * user filter loaded from a TypeScript file (user-module.ts).
 */
import type { MiddlewareType } from '../config/middleware-schemas.ts';
import type { MiddlewareConfig } from '../config/schema.ts';
import type { Filter, FilterEnvironment, FilterFactory } from '../filters/contract.ts';
import { createUserFilter } from './user-module.ts';

// biome-ignore lint/suspicious/noExplicitAny: each factory takes its own validated config type.
type AnyFactory = FilterFactory<any>;

const BUILT_IN: Partial<Record<MiddlewareType, () => Promise<AnyFactory>>> = {
  auth: async () => (await import('../filters/auth/index.ts')).authFactory,
  rate_limit: async () => (await import('../filters/rate-limit/filter.ts')).rateLimitFactory,
  cors: async () => (await import('../filters/cors.ts')).corsFactory,
  cache: async () => (await import('../filters/cache/filter.ts')).cacheFilterFactory,
  headers: async () => (await import('../filters/headers.ts')).headersFactory,
};

/** Builds the filter for one middleware entry (its config already validated by the schema). */
export async function createFilter(middleware: MiddlewareConfig, env: FilterEnvironment): Promise<Filter> {
  if (middleware.type === 'module') return await createUserFilter(middleware.path!, middleware.config, env);
  const load = BUILT_IN[middleware.type];
  if (load === undefined) throw new Error(`no filter is registered for type ${middleware.type}`);
  const factory = await load();
  return await factory.create(middleware.config, env);
}
