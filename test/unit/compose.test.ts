/**
 * compose.yaml agrees with what it runs: the zproxy configuration it mounts is valid and routes to the
 * `origin` service's port, its Redis URLs name the `redis` service, the stop grace covers
 * shutdown_grace_ms, the origin's entrypoint exists in the build, and the mounted file is where the
 * image's command reads it. (The image itself is built and run by test/integration/container.test.ts;
 * no compose tool runs here.)
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { loadConfigFile } from '../../src/config/load.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

// biome-ignore lint/suspicious/noExplicitAny: a parsed YAML document, checked field by field
const compose: any = parse(readFileSync(join(ROOT, 'compose.yaml'), 'utf8'));
const { zproxy, origin, redis } = compose.services;

function seconds(duration: string): number {
  const m = /^(\d+)(ms|s|m)$/.exec(duration);
  assert.ok(m, `a duration: ${duration}`);
  return Number(m[1]) * ({ ms: 0.001, s: 1, m: 60 } as const)[m[2] as 'ms' | 's' | 'm'];
}

test('compose.yaml: the three services, built from the Dockerfile with NODE_IMAGE as the base', () => {
  assert.deepEqual(Object.keys(compose.services).sort(), ['origin', 'redis', 'zproxy']);
  assert.equal(zproxy.build.context, '.');
  assert.match(zproxy.build.args.NODE_IMAGE, /^\$\{NODE_IMAGE:-.+\}$/);
  assert.deepEqual(origin.build, zproxy.build);
  assert.equal(origin.image, zproxy.image);
  assert.match(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'), /^ARG NODE_IMAGE=/m);
});

test('compose.yaml: the zproxy config it mounts is valid and points at the origin and Redis services', () => {
  const [source, target] = (zproxy.volumes[0] as string).split(':');
  assert.equal(target, '/etc/zproxy/zproxy.json');
  assert.match(
    readFileSync(join(ROOT, 'Dockerfile'), 'utf8'),
    /^CMD \["run", "\/etc\/zproxy\/zproxy\.json"\]$/m,
  );
  const config = loadConfigFile(join(ROOT, source!));
  assert.equal(config.listeners[0]!.host, '0.0.0.0');
  assert.deepEqual(zproxy.ports, [`${config.listeners[0]!.port}:${config.listeners[0]!.port}`]);
  const originPort = Number(origin.environment.DEMO_ORIGIN_PORT);
  for (const route of config.routes)
    assert.deepEqual(
      route.upstream.map((t) => t.url),
      [`http://origin:${originPort}`],
    );
  const redisUrls = config.routes.flatMap((r) =>
    r.middlewares.map((m) => (m.config as { redis_url?: string }).redis_url).filter((u) => u !== undefined),
  );
  assert.equal(redisUrls.length, 2);
  for (const url of redisUrls) assert.equal(new URL(url!).host, 'redis:6379');
  assert.ok(seconds(zproxy.stop_grace_period) * 1000 > config.shutdown_grace_ms, 'stop_grace_period');
});

test('compose.yaml: the origin runs the demo origin of the build; Redis keeps nothing on disk', () => {
  assert.deepEqual(origin.entrypoint, ['node', '/app/dist/demo/origin-main.js']);
  assert.ok(existsSync(join(ROOT, 'src/demo/origin-main.ts')));
  assert.deepEqual(redis.command, ['redis-server', '--save', '', '--appendonly', 'no']);
  for (const service of [zproxy, origin, redis]) {
    assert.equal(service.read_only, true);
    assert.deepEqual(service.cap_drop, ['ALL']);
  }
});
