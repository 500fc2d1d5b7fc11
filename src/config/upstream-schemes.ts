/**
 * Upstream URL schemes, their default ports, and how a normalised upstream URL splits. Kept apart from schema.ts so that the serving process
 * (runtime.ts) can read them without loading TypeBox and the whole schema.
 */

/**
 * How zproxy talks to an upstream, by URL scheme: HTTP/1.1 in clear (`http`) or over TLS (`https`),
 * HTTP/2 with prior knowledge in clear (`h2c`) or over TLS with ALPN h2 (`h2`).
 */
export const UPSTREAM_SCHEMES = ['http', 'https', 'h2c', 'h2'] as const;
export type UpstreamScheme = (typeof UPSTREAM_SCHEMES)[number];

/** The port used when an upstream URL has none. */
export const UPSTREAM_DEFAULT_PORTS: Readonly<Record<UpstreamScheme, number>> = {
  http: 80,
  https: 443,
  h2c: 80,
  h2: 443,
};

/** Splits a normalised upstream URL (`scheme://host:port`, see normaliseUpstreamUrl). */
export function parseUpstreamUrl(url: string): {
  scheme: UpstreamScheme;
  host: string;
  port: number;
  hostHeader: string;
} {
  const schemeEnd = url.indexOf('://');
  const scheme = url.slice(0, schemeEnd) as UpstreamScheme;
  const portStart = url.lastIndexOf(':');
  const hostname = url.slice(schemeEnd + 3, portStart);
  const port = Number(url.slice(portStart + 1));
  const host = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  const defaultPort = port === UPSTREAM_DEFAULT_PORTS[scheme];
  return { scheme, host, port, hostHeader: defaultPort ? hostname : `${hostname}:${port}` };
}
