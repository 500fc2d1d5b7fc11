/**
 * The filter registry: middleware type name -> factory. Built-in filters are listed here; a `module`
 * entry names a user filter loaded from a TypeScript file (user-module.ts).
 */
import type { MiddlewareType } from '../config/middleware-schemas.ts';
import type { MiddlewareConfig } from '../config/schema.ts';
import { authFactory } from '../filters/auth/index.ts';
import { cacheFilterFactory } from '../filters/cache/filter.ts';
import type { Filter, FilterEnvironment, FilterFactory } from '../filters/contract.ts';
import { corsFactory } from '../filters/cors.ts';
import { headersFactory } from '../filters/headers.ts';
import { rateLimitFactory } from '../filters/rate-limit/filter.ts';
import { createUserFilter } from './user-module.ts';

// biome-ignore lint/suspicious/noExplicitAny: each factory takes its own validated config type.
const BUILT_IN: Partial<Record<MiddlewareType, FilterFactory<any>>> = {
  auth: authFactory,
  rate_limit: rateLimitFactory,
  cors: corsFactory,
  cache: cacheFilterFactory,
  headers: headersFactory,
};

/** Builds the filter for one middleware entry (its config already validated by the schema). */
export async function createFilter(middleware: MiddlewareConfig, env: FilterEnvironment): Promise<Filter> {
  if (middleware.type === 'module') return await createUserFilter(middleware.path!, middleware.config, env);
  const factory = BUILT_IN[middleware.type];
  if (factory === undefined) throw new Error(`no filter is registered for type ${middleware.type}`);
  return await factory.create(middleware.config, env);
}
