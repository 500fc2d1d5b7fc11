/**
 * The filter registry: middleware type name -> filter module. The pipeline knows no concrete filter:
 * whoever builds the chains (the server, `zproxy check`) makes a FilterRegistry from the loaders of the
 * built-in filters (src/filters/index.ts). Each module is loaded on first use, so that a config without
 * (some) filters does not load their modules and libraries; what a loaded module holds for the whole
 * process (Redis clients, sweep timers) is let go by close(). A `module` entry names a user filter
 * loaded from a TypeScript file (user-module.ts).
 */
import type { MiddlewareConfig, Config as ZproxyConfig } from '../config/schema.ts';
import type { Filter, FilterEnvironment, FilterFactory } from './contract.ts';
import { createUserFilter } from './user-module.ts';

/**
 * What each filter folder exports: its type name (the `type` of a middleware entry), its config schema
 * (loaded on demand: the schema lives with the config format, src/config/, and serving processes never
 * load the schema library), its factory, and what to call to let go of the process-wide resources it
 * keeps (its Redis clients, say) when nothing will build it any more.
 */
export interface FilterModule<Config = unknown> {
  readonly type: string;
  loadSchema(): Promise<object>;
  readonly factory: FilterFactory<Config>;
  /**
   * After a reload, once no exchange uses the old filters: keeps what the filters of these configs (every
   * entry of this type in the new config) use and lets go of the rest (a Redis client no entry names).
   */
  retain?(configs: readonly Config[]): Promise<void>;
  close?(): Promise<void>;
}

// biome-ignore lint/suspicious/noExplicitAny: each module takes its own validated config type.
export type AnyFilterModule = FilterModule<any>;

/** Filter type name -> a loader of its module. */
export type FilterLoaders = Readonly<Record<string, () => Promise<AnyFilterModule>>>;

export class FilterRegistry {
  private readonly loaders: FilterLoaders;
  private readonly loaded = new Map<string, AnyFilterModule>();

  constructor(loaders: FilterLoaders) {
    this.loaders = loaders;
  }

  /** Builds the filter for one middleware entry (its config already validated by the schema). */
  async create(middleware: MiddlewareConfig, env: FilterEnvironment): Promise<Filter> {
    if (middleware.type === 'module') return await createUserFilter(middleware.path!, middleware.config, env);
    let module = this.loaded.get(middleware.type);
    if (module === undefined) {
      const load = this.loaders[middleware.type];
      if (load === undefined) throw new Error(`no filter is registered for type ${middleware.type}`);
      module = await load();
      this.loaded.set(middleware.type, module);
    }
    return await module.factory.create(middleware.config, env);
  }

  /** After a reload: each loaded module keeps what `config`'s entries of its type use (their retain()). */
  async retain(config: ZproxyConfig): Promise<void> {
    const lists = [config.middlewares, ...config.routes.map((r) => r.middlewares)];
    await Promise.allSettled(
      [...this.loaded.values()].map((m) =>
        m.retain?.(lists.flatMap((list) => list.filter((e) => e.type === m.type).map((e) => e.config))),
      ),
    );
  }

  /** Lets go of what the loaded modules keep for the whole process (their close()). */
  async close(): Promise<void> {
    const modules = [...this.loaded.values()];
    this.loaded.clear();
    await Promise.allSettled(modules.map((m) => m.close?.()));
  }
}
