/** The request `zproxy explain` is asked about, and its URL split as written (no import of the engines). */

/** The request to explain, as the command line gives it. */
export interface ExplainRequest {
  readonly method: string;
  /** http://, https://, ws:// or wss:// URL: its authority is the Host (unless a Host field is given). */
  readonly url: string;
  /** `-H` fields in order, names as written. */
  readonly fields: readonly (readonly [string, string])[];
  /** The client's address (X-Forwarded-For, trusted_proxies). */
  readonly clientAddress: string;
}

/** Splits an http(s)/ws(s) URL as written (no normalisation: the server's own rules apply after). */
export function splitUrl(
  url: string,
): { scheme: 'http' | 'https'; authority: string; hostname: string; port: number; target: string } | null {
  const m = /^(https?|wss?):\/\/([^/?#]*)([^#]*)(#.*)?$/i.exec(url);
  if (m === null) return null;
  const scheme = m[1]!.toLowerCase() === 'https' || m[1]!.toLowerCase() === 'wss' ? 'https' : 'http';
  const authority = m[2]!;
  if (authority === '' || authority.includes('@')) return null;
  const hp = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(authority);
  if (hp === null) return null;
  const port = hp[2] === undefined ? (scheme === 'https' ? 443 : 80) : Number(hp[2]);
  if (port > 65535) return null;
  let target = m[3]!;
  if (target === '') target = '/';
  else if (target.charCodeAt(0) !== 0x2f) target = `/${target}`;
  return { scheme, authority, hostname: hp[1]!.replace(/^\[|\]$/g, ''), port, target };
}
