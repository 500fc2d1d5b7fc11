/**
 * The `cors` filter (docs/filters.md, "cors"): the server side of the Fetch standard's CORS protocol.
 * - A CORS-preflight request (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered here
 *   and never reaches the upstream: 204 with the policy when the origin is allowed, 403 without any CORS
 *   header when it is not (the browser fails the preflight either way, since the Fetch standard's CORS
 *   check needs Access-Control-Allow-Origin and an ok status; 403 also tells operators and non-browser
 *   clients that the policy refused).
 * - A CORS request (any other request with `Origin`) from an allowed origin gets Access-Control-Allow-Origin
 *   (the origin echoed, or `*` when any origin is allowed without credentials), -Allow-Credentials and
 *   -Expose-Headers, also on local answers of later filters (a 401, a 429); from a disallowed origin it gets
 *   no CORS header (those the upstream sent are removed: the proxy's policy is the policy).
 * - `Vary: Origin` is added to every response whose CORS headers depend on `Origin` (all of them unless the
 *   policy is "any origin, no credentials"), requests without `Origin` included, so a cache never serves
 *   one origin's answer to another; it is merged into the upstream's Vary (kept as is when that is `*` or
 *   already names Origin).
 * Origins are compiled once: exact ones into a Set, patterns (`https://*.example.com`, where `*` stands for
 * one or more host labels) into one RegExp.
 */
import type { CorsConfig } from '../config/cors-schema.ts';
import type {
  Filter,
  FilterContext,
  FilterFactory,
  FilterResponse,
  LocalResponse,
  PhaseResult,
} from '../pipeline/contract.ts';
import type { FilterModule } from '../pipeline/registry.ts';

export const DEFAULT_CORS_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

const ACAO = 'access-control-allow-origin';
const ACAC = 'access-control-allow-credentials';
const ACEH = 'access-control-expose-headers';

/** Exact origins, patterns and `*` compiled into one matcher. */
export class OriginMatcher {
  readonly any: boolean;
  readonly #exact: Set<string>;
  readonly #pattern: RegExp | null;

  constructor(origins: readonly string[]) {
    this.any = origins.includes('*');
    this.#exact = new Set();
    const patterns: string[] = [];
    for (const origin of origins) {
      if (origin === '*') continue;
      const lower = origin.toLowerCase();
      if (lower.includes('*')) patterns.push(patternSource(lower));
      else this.#exact.add(lower);
    }
    this.#pattern = patterns.length === 0 ? null : new RegExp(`^(?:${patterns.join('|')})$`);
  }

  matches(origin: string): boolean {
    if (this.any) return true;
    const lower = origin.toLowerCase();
    if (this.#exact.has(lower)) return true;
    return this.#pattern?.test(lower) === true;
  }
}

/** `https://*.example.com:8443` -> a RegExp source where `*` is one or more DNS labels. */
function patternSource(pattern: string): string {
  return pattern
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\/-]/g, '\\$&'))
    .join('[a-z0-9-]+(?:\\.[a-z0-9-]+)*');
}

export class CorsFilter implements Filter {
  /** Preflights (OPTIONS) are answered here whatever the route's methods. */
  readonly answersMethods: readonly string[] = ['OPTIONS'];
  readonly origins: OriginMatcher;
  readonly #credentials: boolean;
  /** The answers depend on Origin (so Vary: Origin), unless any origin is allowed without credentials. */
  readonly #varies: boolean;
  readonly #methods: string;
  /** '': none sent (only CORS-safelisted headers); null: echo Access-Control-Request-Headers; '*' with credentials is echoed too (Fetch: `*` is literal then). */
  readonly #headers: string | null;
  readonly #exposed: string | null;
  readonly #maxAge: string | null;
  readonly #refused: LocalResponse;

  constructor(config: CorsConfig) {
    this.origins = new OriginMatcher(config.allowed_origins);
    this.#credentials = config.allow_credentials ?? false;
    this.#varies = !(this.origins.any && !this.#credentials);
    this.#methods = (config.allowed_methods ?? DEFAULT_CORS_METHODS).join(', ');
    const headers = config.allowed_headers;
    if (headers === undefined) this.#headers = null;
    else if (headers.includes('*')) this.#headers = this.#credentials ? null : '*';
    else this.#headers = headers.join(', ');
    const exposed = config.exposed_headers ?? [];
    this.#exposed = exposed.length === 0 ? null : exposed.join(', ');
    this.#maxAge = config.max_age_seconds === undefined ? null : String(config.max_age_seconds);
    const refusedHeaders: Record<string, string> = {};
    if (this.#varies) refusedHeaders.vary = 'Origin';
    this.#refused = Object.freeze({ status: 403, headers: Object.freeze(refusedHeaders) });
  }

  onRequest(ctx: FilterContext): PhaseResult {
    const request = ctx.request;
    const origin = request.headers.get('origin');
    if (origin === undefined) {
      if (this.#varies) ctx.responseHeaders.add('vary', 'Origin');
      return undefined;
    }
    const allowed = this.origins.matches(origin);
    if (request.method === 'OPTIONS') {
      const requestMethod = request.headers.get('access-control-request-method');
      if (requestMethod !== undefined) return allowed ? this.#preflight(ctx, origin) : this.#refused;
    }
    const edits = ctx.responseHeaders;
    if (allowed) {
      edits.set(ACAO, this.#credentials || !this.origins.any ? origin : '*');
      if (this.#credentials) edits.set(ACAC, 'true');
      else edits.remove(ACAC);
      if (this.#exposed !== null) edits.set(ACEH, this.#exposed);
    } else {
      edits.remove(ACAO);
      edits.remove(ACAC);
      edits.remove(ACEH);
    }
    if (this.#varies) edits.add('vary', 'Origin');
    return undefined;
  }

  onResponse(ctx: FilterContext, response: FilterResponse): undefined | LocalResponse {
    if (!this.#varies) return undefined;
    const upstream = response.headers.get('vary');
    if (upstream === undefined) return undefined;
    // The Vary: Origin added in onRequest is folded into the upstream's field.
    const edits = ctx.responseHeaders;
    edits.remove('vary');
    edits.set('vary', varyWithOrigin(upstream));
    return undefined;
  }

  #preflight(ctx: FilterContext, origin: string): LocalResponse {
    const headers: Record<string, string> = {
      [ACAO]: this.#credentials || !this.origins.any ? origin : '*',
      'access-control-allow-methods': this.#methods,
    };
    if (this.#credentials) headers[ACAC] = 'true';
    let vary = this.#varies ? 'Origin' : '';
    if (this.#headers !== null) {
      if (this.#headers !== '') headers['access-control-allow-headers'] = this.#headers;
    } else {
      const asked = ctx.request.headers.get('access-control-request-headers');
      if (asked !== undefined && asked !== '') headers['access-control-allow-headers'] = asked;
      vary = vary === '' ? 'Access-Control-Request-Headers' : `${vary}, Access-Control-Request-Headers`;
    }
    if (this.#maxAge !== null) headers['access-control-max-age'] = this.#maxAge;
    if (vary !== '') headers.vary = vary;
    return { status: 204, headers };
  }
}

/** The upstream's Vary with Origin added (unchanged when it is `*` or already names Origin). */
export function varyWithOrigin(vary: string): string {
  const trimmed = vary.trim();
  if (trimmed === '') return 'Origin';
  for (const token of trimmed.split(',')) {
    const name = token.trim().toLowerCase();
    if (name === '*' || name === 'origin') return trimmed;
  }
  return `${trimmed}, Origin`;
}

export const corsFactory: FilterFactory<CorsConfig> = {
  type: 'cors',
  create(config: CorsConfig): Filter {
    return new CorsFilter(config);
  },
};

/** The `cors` filter module (src/pipeline/registry.ts). */
export const corsFilter: FilterModule<CorsConfig> = {
  type: 'cors',
  loadSchema: async () => (await import('../config/cors-schema.ts')).CorsConfigSchema,
  factory: corsFactory,
};
