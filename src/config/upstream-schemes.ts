/**
 * Upstream URL schemes and their default ports. Kept apart from schema.ts so that the serving process
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
