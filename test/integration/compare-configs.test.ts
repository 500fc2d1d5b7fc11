/**
 * The configurations `zproxy compare` generates for the other proxies, checked by the proxies themselves
 * (`nginx -t`, `haproxy -c`, `caddy validate`) for a plan with hosts, several targets, the WebSocket route,
 * the filter chain, h2c and TLS listeners; and zproxy's own, by its validator. In CI a missing proxy fails
 * the test; elsewhere its check is skipped, saying why.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { caddyfile } from '../../src/bench/compare/caddy.ts';
import { writeCertificate } from '../../src/bench/compare/certificate.ts';
import { envoyConfig } from '../../src/bench/compare/envoy.ts';
import { haproxyConfig } from '../../src/bench/compare/haproxy.ts';
import { nginxProxyConfig } from '../../src/bench/compare/nginx.ts';
import {
  bySpecificity,
  generatedPlan,
  type PlanRoute,
  type ProxyPlan,
} from '../../src/bench/compare/plan.ts';
import { findOnPath } from '../../src/bench/compare/proxies.ts';
import { zproxyConfig } from '../../src/bench/compare/zproxy.ts';
import { parseConfig } from '../../src/config/load.ts';
import { makeDemoCertificate } from '../../src/demo/certificate.ts';
import { inCi } from '../helpers/compare-cli.ts';

const A = { host: '127.0.0.1', port: 9001 };
const B = { host: '127.0.0.1', port: 9002 };

/** The generated set-up plus a route for a host with two targets. */
function plan(): ProxyPlan {
  const base = generatedPlan(A, B, 64);
  const api: PlanRoute = {
    id: 'api_host',
    host: 'api.example.com',
    pathPrefix: '/v1',
    targets: [A, B],
    websocket: false,
    filterChain: false,
  };
  return { ...base, routes: bySpecificity([...base.routes, api]) };
}

function skipUnless(command: string): string | false {
  return findOnPath(command) === null && !inCi ? `${command} is not installed (CI installs it)` : false;
}

describe('the generated configurations are valid for their proxies', () => {
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-compare-configs-'));
  const cert = writeCertificate(join(dir, 'tls'), makeDemoCertificate());
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('nginx -t', { skip: skipUnless('nginx') }, () => {
    const nginx = findOnPath('nginx');
    assert.ok(nginx !== null, 'nginx is not on the PATH');
    const home = join(dir, 'nginx');
    mkdirSync(join(home, 'temp'), { recursive: true });
    const file = join(home, 'nginx.conf');
    writeFileSync(
      file,
      nginxProxyConfig(home, plan(), {
        http: 18001,
        h2c: 18002,
        tls: { port: 18003, certFile: cert.certFile, keyFile: cert.keyFile },
      }),
    );
    const result = spawnSync(nginx, ['-t', '-p', home, '-c', file, '-e', join(home, 'error.log')], {
      encoding: 'utf8',
    });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /syntax is ok/);
  });

  test('haproxy -c', { skip: skipUnless('haproxy') }, () => {
    const haproxy = findOnPath('haproxy');
    assert.ok(haproxy !== null, 'haproxy is not on the PATH');
    const file = join(dir, 'haproxy.cfg');
    writeFileSync(
      file,
      haproxyConfig(plan(), { http: 18001, h2c: 18002, tls: { port: 18003, pemFile: cert.pemFile } }),
    );
    const result = spawnSync(haproxy, ['-c', '-f', file], { encoding: 'utf8' });
    assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
    assert.doesNotMatch(`${result.stdout}${result.stderr}`, /WARNING/);
  });

  test('caddy validate', { skip: skipUnless('caddy') }, () => {
    const caddy = findOnPath('caddy');
    assert.ok(caddy !== null, 'caddy is not on the PATH');
    const home = join(dir, 'caddy');
    mkdirSync(home, { recursive: true });
    const file = join(home, 'Caddyfile');
    writeFileSync(
      file,
      caddyfile(plan(), {
        http: 18001,
        tls: { port: 18003, certFile: cert.certFile, keyFile: cert.keyFile },
      }),
    );
    const result = spawnSync(caddy, ['validate', '--config', file, '--adapter', 'caddyfile'], {
      encoding: 'utf8',
      env: {
        ...process.env,
        HOME: home,
        XDG_DATA_HOME: join(home, 'data'),
        XDG_CONFIG_HOME: join(home, 'config'),
      },
    });
    assert.equal(result.status, 0, result.stderr);
    assert.match(`${result.stdout}${result.stderr}`, /Valid configuration/);
  });

  test('zproxy’s validator accepts its generated configuration', () => {
    const config = parseConfig(zproxyConfig(plan(), 18001, { port: 18003, cert }));
    assert.deepEqual(
      config.routes.map((r) => [r.host, r.path, r.upstream.length, r.middlewares.map((m) => m.type)]),
      [
        [null, '/filtered', 1, ['cors', 'auth']],
        ['api.example.com', '/v1', 2, []],
        [null, '/ws', 1, []],
        [null, '/', 1, []],
      ],
    );
  });

  test('Envoy’s configuration names a cluster for every route it routes to (Envoy is not installed here)', () => {
    const config = envoyConfig(plan(), 18001, null) as {
      static_resources: {
        clusters: { name: string }[];
        listeners: {
          filter_chains: {
            filters: {
              typed_config: {
                route_config: {
                  virtual_hosts: { domains: string[]; routes: { route: { cluster: string } }[] }[];
                };
              };
            }[];
          }[];
        }[];
      };
    };
    const clusters = new Set(config.static_resources.clusters.map((c) => c.name));
    const hosts =
      config.static_resources.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config.route_config
        .virtual_hosts;
    assert.deepEqual(
      hosts.map((h) => h.domains),
      [['*'], ['api.example.com', 'api.example.com:*']],
    );
    for (const host of hosts) for (const route of host.routes) assert.ok(clusters.has(route.route.cluster));
  });
});
