/**
 * How a command reaches a running zproxy: the admin listener its config file names (`zproxy reload`,
 * `zproxy health`). The file is read only for its `admin` block, without checking the rest.
 */
import { readFileSync } from 'node:fs';
import { parseJsonText } from '../config/json-text.ts';

export interface AdminAddress {
  readonly host: string;
  readonly port: number;
  readonly token: string | null;
}

/** Where a running zproxy can be reached, as its config file says. */
export interface InstanceAddresses {
  /** The admin listener, null when the config has none. */
  readonly admin: AdminAddress | null;
  /** The first proxy listener (`listeners[0]`, else `host` and `port` with their defaults). */
  readonly listener: { readonly host: string; readonly port: number };
}

/** The addresses a config file names, or why the file cannot be read. */
export function instanceAddresses(path: string): InstanceAddresses | string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    return `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
  }
  const parsed = parseJsonText(text);
  if (!parsed.ok)
    return `${path} is not valid JSON (line ${parsed.line}, column ${parsed.column}: ${parsed.problem})`;
  const config = (parsed.value ?? {}) as {
    admin?: { host?: unknown; port?: unknown; token?: unknown } | null;
    host?: unknown;
    port?: unknown;
    listeners?: { host?: unknown; port?: unknown }[];
  };
  const a = config.admin;
  const admin =
    a !== undefined && a !== null && typeof a === 'object' && typeof a.port === 'number'
      ? {
          host: typeof a.host === 'string' ? a.host : '127.0.0.1',
          port: a.port,
          token: typeof a.token === 'string' ? a.token : null,
        }
      : null;
  const first = Array.isArray(config.listeners) ? config.listeners[0] : undefined;
  const host = first?.host ?? config.host;
  const port = first?.port ?? config.port;
  return {
    admin,
    listener: {
      host: typeof host === 'string' ? host : '0.0.0.0',
      port: typeof port === 'number' ? port : 8000,
    },
  };
}

/** The listener's host as a client connects to it: a wildcard address means this machine. */
export function connectHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '::1';
  return host.startsWith('[') ? host.slice(1, -1) : host;
}
