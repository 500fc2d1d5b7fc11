/**
 * User filters: a `{"type": "module", "path": "./filters/tenant.ts", "config": {...}}` entry names a
 * TypeScript (or JavaScript) module, loaded when the config is loaded (Node strips the types). Its default
 * export is a FilterFactory (`{ create(config, env) }`) or a function `(config, env) => Filter`; either may
 * return a promise. Every failure is an Error saying what is wrong with the module, so that `zproxy check`
 * and `zproxy run` can report it with the entry's JSON path.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FILTER_PHASES, type Filter, type FilterEnvironment } from './contract.ts';

type CreateFunction = (config: unknown, env: FilterEnvironment) => unknown;

/** The module's factory function, or an error message. */
function factoryOf(exported: unknown): CreateFunction | string {
  if (typeof exported === 'function') return exported as CreateFunction;
  if (exported !== null && typeof exported === 'object') {
    const create = (exported as { create?: unknown }).create;
    if (typeof create === 'function') return (config, env) => create.call(exported, config, env);
  }
  return 'its default export must be a filter factory ({ create(config, env) }) or a function (config, env) => filter';
}

/** The absolute file of a module entry's `path`. */
function moduleFile(path: string, baseDir: string | undefined): string {
  return isAbsolute(path) ? path : resolve(baseDir ?? process.cwd(), path);
}

/** A digest of a module's file ('' when it cannot be read): what tells an edited module from the loaded one. */
export function moduleDigest(path: string, baseDir: string | undefined): string {
  try {
    return createHash('sha256')
      .update(readFileSync(moduleFile(path, baseDir)))
      .digest('hex')
      .slice(0, 16);
  } catch {
    return '';
  }
}

/**
 * The digest of each module file when it was first imported. Node keeps an imported module for the life
 * of the process: a file edited since is imported again under a URL carrying its new digest (a reload
 * then builds its filters from the new code; the files it imports itself are not loaded again).
 */
const firstLoaded = new Map<string, string>();

function moduleUrl(file: string): string {
  const url = pathToFileURL(file).href;
  const digest = moduleDigest(file, undefined);
  const first = firstLoaded.get(file);
  if (first === undefined) {
    firstLoaded.set(file, digest);
    return url;
  }
  return first === digest ? url : `${url}?digest=${digest}`;
}

/** Loads the module at `path` (relative to env.baseDir) and builds its filter from `config`. */
export async function createUserFilter(
  path: string,
  config: Readonly<Record<string, unknown>>,
  env: FilterEnvironment,
): Promise<Filter> {
  const file = moduleFile(path, env.baseDir);
  if (!existsSync(file)) throw new Error(`user filter module ${file} does not exist`);
  let module: { default?: unknown };
  try {
    module = (await import(moduleUrl(file))) as { default?: unknown };
  } catch (error) {
    throw new Error(`user filter module ${file} cannot be loaded: ${(error as Error).message}`);
  }
  const factory = factoryOf(module.default);
  if (typeof factory === 'string') throw new Error(`user filter module ${file}: ${factory}`);
  let filter: unknown;
  try {
    filter = await factory(config, env);
  } catch (error) {
    throw new Error(`user filter module ${file}: creating the filter failed: ${(error as Error).message}`);
  }
  if (filter === null || typeof filter !== 'object') {
    throw new Error(
      `user filter module ${file}: the factory returned ${String(filter)}, not a filter object`,
    );
  }
  const phases = FILTER_PHASES.filter((phase) => (filter as Record<string, unknown>)[phase] !== undefined);
  for (const phase of phases) {
    if (typeof (filter as Record<string, unknown>)[phase] !== 'function') {
      throw new Error(`user filter module ${file}: the filter's ${phase} is not a function`);
    }
  }
  if (phases.length === 0) {
    throw new Error(
      `user filter module ${file}: the filter has no phase method (${FILTER_PHASES.join(', ')})`,
    );
  }
  return filter as Filter;
}
