/**
 * Envoy in a comparison, where its binary is on the PATH: a generated static configuration (JSON), one
 * worker (`--concurrency 1`), no admin listener, no hot restart, pinned to the proxy CPU. The filter-chain
 * scenario is not generated for it (its API key check needs an RBAC or Lua filter): that scenario skips it
 * and says so.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PlanRoute, ProxyPlan } from './plan.ts';
import { PinnedProcess, processTree } from './proc.ts';
import {
  firstLine,
  listenerPorts,
  type ProxyDriver,
  type RunningProxy,
  type StartContext,
} from './proxies.ts';

const HCM =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';

function routesOf(route: PlanRoute): object[] {
  const action = { route: { cluster: route.id, timeout: '0s' } };
  if (route.pathPrefix === '/') return [{ match: { prefix: '/' }, ...action }];
  return [
    { match: { path: route.pathPrefix }, ...action },
    { match: { prefix: `${route.pathPrefix}/` }, ...action },
  ];
}

function connectionManager(plan: ProxyPlan): object {
  const hosts = [...new Set(plan.routes.map((route) => route.host))];
  return {
    '@type': HCM,
    stat_prefix: 'compare',
    codec_type: 'AUTO',
    upgrade_configs: [{ upgrade_type: 'websocket' }],
    route_config: {
      name: 'compare',
      virtual_hosts: hosts.map((host, i) => ({
        name: `host_${i}`,
        domains: host === null ? ['*'] : [host, `${host}:*`],
        routes: plan.routes.filter((route) => route.host === host).flatMap(routesOf),
      })),
    },
    http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
  };
}

export function envoyConfig(
  plan: ProxyPlan,
  http: number,
  tls: { port: number; certFile: string; keyFile: string } | null,
): object {
  const listener = (name: string, port: number, transport: object | null): object => ({
    name,
    address: { socket_address: { address: '127.0.0.1', port_value: port } },
    filter_chains: [
      {
        filters: [
          { name: 'envoy.filters.network.http_connection_manager', typed_config: connectionManager(plan) },
        ],
        ...(transport === null ? {} : { transport_socket: transport }),
      },
    ],
  });
  const listeners = [listener('plain', http, null)];
  if (tls !== null) {
    listeners.push(
      listener('tls', tls.port, {
        name: 'envoy.transport_sockets.tls',
        typed_config: {
          '@type': TLS,
          common_tls_context: {
            alpn_protocols: ['h2', 'http/1.1'],
            tls_certificates: [
              { certificate_chain: { filename: tls.certFile }, private_key: { filename: tls.keyFile } },
            ],
          },
        },
      }),
    );
  }
  return {
    static_resources: {
      listeners,
      clusters: plan.routes.map((route) => ({
        name: route.id,
        type: 'STATIC',
        connect_timeout: '5s',
        load_assignment: {
          cluster_name: route.id,
          endpoints: [
            {
              lb_endpoints: route.targets.map((t) => ({
                endpoint: { address: { socket_address: { address: t.host, port_value: t.port } } },
              })),
            },
          ],
        },
      })),
    },
  };
}

export const envoyDriver: ProxyDriver = {
  name: 'envoy',
  command: 'envoy',
  unsupported: (_protocol, filterChain) =>
    filterChain ? 'the filter chain is not generated for Envoy (it needs an RBAC or Lua filter)' : null,
  version(binary) {
    const result = spawnSync(binary, ['--version'], { encoding: 'utf8' });
    return firstLine(`${result.stdout ?? ''}${result.stderr ?? ''}`.replace(/^\s*\n/, ''));
  },
  async start(context: StartContext): Promise<RunningProxy> {
    const { dir, plan, needs } = context;
    mkdirSync(dir, { recursive: true });
    const ports = await listenerPorts(needs, false);
    const configFile = join(dir, 'envoy.json');
    const tls =
      needs.tls === null
        ? null
        : { port: ports.h2!, certFile: needs.tls.certFile, keyFile: needs.tls.keyFile };
    writeFileSync(configFile, `${JSON.stringify(envoyConfig(plan, ports.http1!, tls), null, 2)}\n`);
    const args = ['-c', configFile, '--concurrency', '1', '--disable-hot-restart', '--log-level', 'warn'];
    const child = new PinnedProcess('envoy', context.cpu, context.binary, args, join(dir, 'envoy.log'));
    try {
      for (const port of new Set(Object.values(ports))) await child.waitForPort(port, 15_000);
    } catch (error) {
      await child.stop();
      throw new Error(`envoy failed to start: ${(error as Error).message}\n${child.logTail()}`);
    }
    return { ports, process: child, pids: () => processTree(child.pid), stop: () => child.stop() };
  },
};
