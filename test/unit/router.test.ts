import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ZpError } from '../../src/errors.ts';
import { normalizePath } from '../../src/router/normalize-path.ts';
import { type RouteMatch, Router, type RouteSpec, routeProblems } from '../../src/router/router.ts';
import { routeProblemCases, routerCases } from '../fixtures/router-cases.ts';

describe('router: shared case table', () => {
  test('the table has at least 60 cases', () => {
    assert.ok(routerCases.length >= 60, `${routerCases.length} cases`);
  });
  for (const c of routerCases) {
    test(c.name, () => {
      assert.deepEqual(routeProblems(c.routes), [], 'the case routes are valid');
      const router = new Router(c.routes);
      const result = router.match(c.host, c.method, c.path);
      const e = c.expect;
      assert.equal(result.status, e.status, JSON.stringify(result));
      if (result.status === 200) {
        if (e.value !== undefined) assert.equal(result.value, e.value);
        if (e.params !== undefined)
          assert.deepEqual(result.params, e.params === null ? null : { ...e.params });
        if (e.matchedLength !== undefined) assert.equal(result.matchedLength, e.matchedLength);
      } else if (result.status === 405) {
        if (e.allow !== undefined) assert.equal(result.allow, e.allow);
      }
      // Matching again gives the same answer (no state leaks between calls).
      assert.deepEqual(router.match(c.host, c.method, c.path), result);
    });
  }
});

describe('routeProblems: case table', () => {
  for (const c of routeProblemCases) {
    test(c.name, () => {
      const problems = routeProblems(c.routes);
      assert.equal(problems.length, c.problems.length, JSON.stringify(problems, null, 2));
      c.problems.forEach((expected, i) => {
        const problem = problems[i]!;
        assert.equal(problem.index, expected.index, problem.message);
        assert.ok(
          problem.message.includes(expected.includes),
          `${JSON.stringify(problem.message)} should include ${JSON.stringify(expected.includes)}`,
        );
      });
    });
  }
});

describe('Router', () => {
  const routes: RouteSpec<string>[] = [
    { host: null, path: '/static', methods: ['GET'], value: 'static' },
    { host: null, path: '/users/:id', methods: null, value: 'user' },
    { host: null, path: '/files/*', methods: null, value: 'files' },
  ];
  const router = new Router(routes);

  test('the constructor throws a ZP_ERR_CONFIG error listing every problem', () => {
    assert.throws(
      () =>
        new Router([
          { host: null, path: '/a', methods: ['GET'], value: 1 },
          { host: null, path: '/a', methods: ['GET'], value: 2 },
          { host: 'x:1', path: 'b', methods: null, value: 3 },
        ]),
      (error: unknown) => {
        assert.ok(error instanceof ZpError);
        assert.equal(error.code, 'ZP_ERR_CONFIG');
        assert.match(error.message, /routes\[1\]: duplicates routes\[0\]/);
        assert.match(error.message, /routes\[2\]: host "x:1" must not include a port/);
        assert.match(error.message, /routes\[2\]: path "b" must start with '\/'/);
        return true;
      },
    );
  });

  test('404 is one frozen object', () => {
    const a = router.match('', 'GET', '/nothing');
    const b = new Router<string>([]).match('h', 'GET', '/');
    assert.equal(a.status, 404);
    assert.equal(a, b);
    assert.ok(Object.isFrozen(a));
  });

  test('405 is one frozen object per node', () => {
    const a = router.match('', 'POST', '/static');
    const b = router.match('', 'DELETE', '/static/deep');
    assert.deepEqual(a, { status: 405, allow: 'GET, HEAD' });
    assert.equal(a, b);
    assert.ok(Object.isFrozen(a));
  });

  test('a route without params returns one frozen found result', () => {
    const a = router.match('', 'GET', '/static/a.css');
    const b = router.match('any.host', 'HEAD', '/static');
    assert.equal(a, b);
    assert.ok(Object.isFrozen(a));
  });

  test('results with params are fresh objects', () => {
    const a = router.match('', 'GET', '/users/1');
    const b = router.match('', 'GET', '/users/2');
    assert.notEqual(a, b);
    assert.deepEqual(a, { status: 200, value: 'user', params: { id: '1' }, matchedLength: 8 });
    assert.deepEqual(b, { status: 200, value: 'user', params: { id: '2' }, matchedLength: 8 });
  });

  test('normalised paths route the same as their plain spelling', () => {
    const seed = new Router([
      { host: null, path: '/admin', methods: null, value: 'admin' },
      { host: null, path: '/', methods: null, value: 'public' },
    ]);
    for (const raw of ['/%61dmin/x', '//admin', '/public/../admin', '/./admin/', '/%2E/admin']) {
      const path = normalizePath(raw);
      assert.ok(path !== null, raw);
      const result = seed.match('', 'GET', path);
      assert.equal(result.status === 200 && result.value, 'admin', raw);
    }
  });

  test('values are returned as given', () => {
    const value = { upstream: 'u' };
    const r = new Router([{ host: null, path: '/', methods: null, value }]);
    const result = r.match('', 'GET', '/x');
    assert.equal(result.status, 200);
    assert.equal(result.status === 200 && result.value, value);
  });
});

// ---------------------------------------------------------------------------------------------------
// Differential property test: the router against a brute-force reference that ranks every route.

interface RefRoute {
  readonly index: number;
  readonly spec: RouteSpec<string>;
  readonly host: { wildcard: boolean; name: string } | null;
  readonly segments: readonly string[];
  readonly wildcard: boolean;
  readonly shape: string;
}

function refParse(spec: RouteSpec<string>, index: number): RefRoute {
  let host: RefRoute['host'] = null;
  if (spec.host !== null) {
    let name = spec.host.toLowerCase().replace(/\.$/, '');
    const wildcard = name.startsWith('*.');
    if (wildcard) name = name.slice(2);
    host = { wildcard, name };
  }
  const segments = spec.path.split('/').filter((s) => s !== '');
  const wildcard = segments.at(-1) === '*';
  if (wildcard) segments.pop();
  const shape = segments.map((s) => (s.startsWith(':') ? ':' : s)).join('/');
  return { index, spec, host, segments, wildcard, shape };
}

function refMatch(specs: readonly RouteSpec<string>[], rawHost: string, method: string, path: string) {
  const routes = specs.map(refParse);
  let host = rawHost.startsWith('[') ? rawHost.slice(0, rawHost.indexOf(']') + 1) : rawHost.split(':')[0]!;
  host = host.toLowerCase().replace(/\.$/, '');
  const hostRank = (r: RefRoute): number => {
    if (r.host === null) return 1_000_000;
    if (!r.host.wildcard) return r.host.name === host ? 0 : -1;
    return host.endsWith(`.${r.host.name}`) && host.length > r.host.name.length + 1
      ? 1000 - r.host.name.length
      : -1;
  };
  const requestSegments = path.split('/').slice(1);
  const matching: { route: RefRoute; rank: number; key: number[] }[] = [];
  for (const route of routes) {
    const rank = hostRank(route);
    if (rank < 0) continue;
    let ok = true;
    const key: number[] = [];
    route.segments.forEach((segment, i) => {
      const actual = requestSegments[i];
      if (actual === undefined || actual === '') ok = false;
      else if (segment.startsWith(':')) key.push(1);
      else if (segment === actual) key.push(0);
      else ok = false;
    });
    if (!ok) continue;
    key.push(2);
    matching.push({ route, rank, key });
  }
  const compareKeys = (a: number[], b: number[]): number => {
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
    return a.length - b.length;
  };
  matching.sort((a, b) => a.rank - b.rank || compareKeys(a.key, b.key));
  const sameNode = (a: RefRoute, b: RefRoute) =>
    a.shape === b.shape && JSON.stringify(a.host) === JSON.stringify(b.host);
  const allows = (route: RefRoute): boolean => {
    const methods = route.spec.methods;
    if (methods === null || methods.includes(method)) return true;
    if (method !== 'HEAD' || !methods.includes('GET')) return false;
    return !routes.some((other) => sameNode(other, route) && other.spec.methods?.includes('HEAD'));
  };
  for (const { route } of matching) {
    if (!allows(route)) continue;
    const params: Record<string, string> = {};
    let length = 0;
    route.segments.forEach((segment, i) => {
      if (segment.startsWith(':')) params[segment.slice(1)] = requestSegments[i]!;
      length += 1 + requestSegments[i]!.length;
    });
    if (route.wildcard) params['*'] = requestSegments.slice(route.segments.length).join('/');
    const hasParams = route.wildcard || route.segments.some((s) => s.startsWith(':'));
    return { status: 200, value: route.spec.value, params: hasParams ? params : null, matchedLength: length };
  }
  if (matching.length === 0) return { status: 404 };
  const first = matching[0]!.route;
  const allow = new Set<string>();
  for (const route of routes)
    if (sameNode(route, first)) for (const m of route.spec.methods ?? []) allow.add(m);
  if (allow.has('GET')) allow.add('HEAD');
  return { status: 405, allow: [...allow].sort().join(', ') };
}

describe('router: differential property against a brute-force reference', () => {
  const segment = fc.constantFrom('a', 'b', ':p', ':q');
  const pattern = fc
    .tuple(fc.array(segment, { maxLength: 3 }), fc.boolean())
    .map(([segments, wildcard]) => `/${[...segments, ...(wildcard ? ['*'] : [])].join('/')}`);
  const methods = fc.constantFrom<readonly string[] | null>(
    null,
    ['GET'],
    ['POST'],
    ['GET', 'POST'],
    ['HEAD'],
    ['PUT'],
  );
  const host = fc.constantFrom<string | null>(null, null, 'x.test', '*.test', '*.x.test');
  const specs = fc
    .array(fc.record({ host, path: pattern, methods }), { maxLength: 12 })
    .map((list) => list.map((s, i): RouteSpec<string> => ({ ...s, value: `r${i}` })))
    .map((list) => {
      // Drop the later route of every conflict (and patterns with a repeated param name).
      const bad = new Set(routeProblems(list).map((p) => p.index));
      return list.filter((_, i) => !bad.has(i));
    });
  const requestPath = fc
    .tuple(fc.array(fc.constantFrom('a', 'b', 'c'), { maxLength: 4 }), fc.boolean())
    .map(([segments, slash]) => `/${segments.join('/')}${slash && segments.length > 0 ? '/' : ''}`);
  const requestHost = fc.constantFrom(
    '',
    'x.test',
    'X.TEST:80',
    'a.x.test',
    'b.a.x.test.',
    'other.test',
    'test',
  );
  const requestMethod = fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE');

  test('router.match equals the reference', () => {
    fc.assert(
      fc.property(specs, requestHost, requestMethod, requestPath, (list, h, m, p) => {
        assert.deepEqual(routeProblems(list), []);
        const actual: RouteMatch<string> = new Router(list).match(h, m, p);
        assert.deepEqual({ ...actual }, refMatch(list, h, m, p));
      }),
      { numRuns: 3000 },
    );
  });
});
