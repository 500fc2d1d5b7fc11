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

/** The admin listener a config file names; null when it has none; a message when the file cannot be read. */
export function adminAddress(path: string): AdminAddress | null | string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    return `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
  }
  const parsed = parseJsonText(text);
  if (!parsed.ok)
    return `${path} is not valid JSON (line ${parsed.line}, column ${parsed.column}: ${parsed.problem})`;
  const admin = (parsed.value as { admin?: unknown } | null)?.admin as
    | { host?: unknown; port?: unknown; token?: unknown }
    | undefined;
  if (admin === undefined || admin === null || typeof admin !== 'object' || typeof admin.port !== 'number') {
    return null;
  }
  const host = typeof admin.host === 'string' ? admin.host : '127.0.0.1';
  return { host, port: admin.port, token: typeof admin.token === 'string' ? admin.token : null };
}

/** The listener's host as a client connects to it: a wildcard address means this machine. */
export function connectHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '::1';
  return host.startsWith('[') ? host.slice(1, -1) : host;
}
