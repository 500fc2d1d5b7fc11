/**
 * The filter registry: middleware type name -> factory. The pipeline knows no concrete filter: whoever
 * builds the chains (the server, `zproxy check`) hands it the loaders of the built-in filters
 * (src/filters/index.ts), each loaded on first use so that a config without (some) filters does not load
 * their modules and libraries. A `module` entry names a user filter loaded from a TypeScript file
 * (user-module.ts).
 */
import type { MiddlewareConfig } from '../config/schema.ts';
import type { Filter, FilterEnvironment, FilterFactory } from './contract.ts';
import { createUserFilter } from './user-module.ts';

// biome-ignore lint/suspicious/noExplicitAny: each factory takes its own validated config type.
export type AnyFactory = FilterFactory<any>;

/** Filter type name -> a loader of its factory. */
export type FilterLoaders = Readonly<Record<string, () => Promise<AnyFactory>>>;

/** Builds the filter for one middleware entry (its config already validated by the schema). */
export async function createFilter(
  middleware: MiddlewareConfig,
  env: FilterEnvironment,
  loaders: FilterLoaders,
): Promise<Filter> {
  if (middleware.type === 'module') return await createUserFilter(middleware.path!, middleware.config, env);
  const load = loaders[middleware.type];
  if (load === undefined) throw new Error(`no filter is registered for type ${middleware.type}`);
  const factory = await load();
  return await factory.create(middleware.config, env);
}
