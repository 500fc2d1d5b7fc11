/**
 * What every proxy in a comparison is configured to do, whichever proxy it is: its routes (host, path
 * prefix, upstream targets; the WebSocket route; the filter-chain route) and how many idle upstream
 * connections it may keep. Each proxy's driver turns the plan into its own configuration file.
 *
 * Without --config the plan is the generated set-up (`/` to the origin, `/ws` to the echo server,
 * `/filtered` to the origin through the filter chain). With --config it is the plain routes (no filters) of
 * the user's file, their targets pointed at compare's origin; zproxy runs the user's file itself
 * (userConfigForRun).
 */

export interface PlanTarget {
  readonly host: string;
  readonly port: number;
}

export interface PlanRoute {
  /** A name usable in every proxy's configuration (letters, digits, `_`). */
  readonly id: string;
  /** Exact host (lowercase) the route is for; null for any host. */
  readonly host: string | null;
  /** `/` or a prefix without a trailing slash (`/api`): the path itself and everything under it. */
  readonly pathPrefix: string;
  readonly targets: readonly PlanTarget[];
  /** Upgrades to WebSocket are tunnelled (the upstream is the echo server). */
  readonly websocket: boolean;
  /** The requests must carry the API key; the answers get the CORS fields. */
  readonly filterChain: boolean;
}

export interface ProxyPlan {
  /** Most specific first: a proxy that matches routes in order takes the first that fits. */
  readonly routes: readonly PlanRoute[];
  /** Idle pooled connections each proxy may keep to an upstream. */
  readonly idleUpstream: number;
  /** The route each scenario is measured on, by kind. */
  readonly measured: {
    readonly plain: PlanRoute;
    readonly websocket: PlanRoute | null;
    readonly filterChain: PlanRoute | null;
  };
  /** Where the plan came from, for the report. */
  readonly source: string;
  /** --config: zproxy's configuration for a listener on `port` (the user's file, rewritten); else null. */
  readonly zproxyConfig: ((port: number) => object) | null;
}

/** Orders routes as a first-match proxy needs them: the longest prefix first, a host before none. */
export function bySpecificity(routes: readonly PlanRoute[]): PlanRoute[] {
  return [...routes].sort(
    (a, b) => b.pathPrefix.length - a.pathPrefix.length || Number(b.host !== null) - Number(a.host !== null),
  );
}

/** The generated set-up: the origin for HTTP, the echo server for WebSocket. */
export function generatedPlan(origin: PlanTarget, echo: PlanTarget, idleUpstream: number): ProxyPlan {
  const plain: PlanRoute = {
    id: 'origin',
    host: null,
    pathPrefix: '/',
    targets: [origin],
    websocket: false,
    filterChain: false,
  };
  const websocket: PlanRoute = {
    id: 'ws_echo',
    host: null,
    pathPrefix: '/ws',
    targets: [echo],
    websocket: true,
    filterChain: false,
  };
  const filterChain: PlanRoute = {
    id: 'filtered',
    host: null,
    pathPrefix: '/filtered',
    targets: [origin],
    websocket: false,
    filterChain: true,
  };
  return {
    routes: bySpecificity([plain, websocket, filterChain]),
    idleUpstream,
    measured: { plain, websocket, filterChain },
    source: 'generated: / to the origin, /ws to the WebSocket echo server, /filtered through a filter chain',
    zproxyConfig: null,
  };
}

/** A route of the user's config as compare needs it (the cli reads and validates the file: src/cli). */
export interface UserRoute {
  readonly path: string;
  /** Lowercase exact host or `*.suffix` wildcard; null = any host. */
  readonly host: string | null;
  /** null = any method. */
  readonly methods: readonly string[] | null;
  /** How many upstream targets it has. */
  readonly targets: number;
  /** Its filters, its own and inherited. */
  readonly filters: number;
}

/** The user's config file: as written (zproxy runs it) and its routes, validated and normalised. */
export interface UserConfig {
  readonly file: string;
  readonly raw: Record<string, unknown>;
  readonly routes: readonly UserRoute[];
  readonly protocols: readonly string[];
}

/** A prefix as the plan spells it: `/` or without its trailing slash. */
function prefixOf(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed === '' ? '/' : trimmed;
}

export interface UserPlan {
  readonly plan: ProxyPlan;
  /** Routes left out of the other proxies' configurations, with the reason (for the report). */
  readonly leftOut: readonly string[];
}

/**
 * The plan for --config: the user's plain routes (exact hosts or none, plain prefixes, GET allowed; routes
 * with filters and `*.` wildcards are left out), each target pointed at compare's origin. Throws when no
 * route is plain.
 */
export function userPlan(user: UserConfig, origin: PlanTarget, idleUpstream: number): UserPlan {
  const routes: PlanRoute[] = [];
  const leftOut: string[] = [];
  user.routes.forEach((route, index) => {
    const where = `routes[${index}] (${route.host ?? '*'} ${route.path})`;
    if (route.filters > 0) {
      leftOut.push(`${where}: has filters, which the other proxies are not given`);
      return;
    }
    if (route.host?.startsWith('*.')) {
      leftOut.push(`${where}: a wildcard host`);
      return;
    }
    if (/[:*]/.test(route.path)) {
      leftOut.push(`${where}: a path with parameters, not a plain prefix`);
      return;
    }
    if (route.methods !== null && !route.methods.includes('GET')) {
      leftOut.push(`${where}: does not accept GET`);
      return;
    }
    routes.push({
      id: `route_${index}`,
      host: route.host,
      pathPrefix: prefixOf(route.path),
      targets: Array.from({ length: route.targets }, () => origin),
      websocket: false,
      filterChain: false,
    });
  });
  const first = routes.find((route) => route.host === null) ?? routes[0];
  if (first === undefined) throw new Error(`${user.file}: no plain route (without filters) to compare`);
  return {
    plan: {
      routes: bySpecificity(routes),
      idleUpstream,
      measured: { plain: first, websocket: null, filterChain: null },
      source: `--config ${user.file}: its ${routes.length} plain route(s), every upstream target pointed at the origin`,
      zproxyConfig: (port) => userConfigForRun(user, port, origin),
    },
    leftOut,
  };
}

/**
 * The user's file as zproxy runs it in a comparison: the same configuration, except that it listens on
 * `port` on 127.0.0.1 only (no TLS, no admin listener), runs one thread (one pinned CPU), and every route's
 * targets are compare's origin (as many targets as the route has).
 */
export function userConfigForRun(user: UserConfig, port: number, origin: PlanTarget): object {
  const out: Record<string, unknown> = { ...user.raw };
  for (const key of ['host', 'port', 'listeners', 'tls', 'admin']) delete out[key];
  out.listeners = [{ host: '127.0.0.1', port }];
  out.thread_count = 1;
  const rawRoutes = Array.isArray(user.raw.routes) ? (user.raw.routes as Record<string, unknown>[]) : [];
  out.routes = rawRoutes.map((route, index) => ({
    ...route,
    upstream: Array.from(
      { length: user.routes[index]?.targets ?? 1 },
      () => `http://${origin.host}:${origin.port}`,
    ),
  }));
  return out;
}
