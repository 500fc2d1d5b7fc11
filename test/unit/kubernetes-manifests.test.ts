/**
 * deploy/kubernetes: every manifest the kustomization lists is validated against the Kubernetes API's
 * JSON schemas (kubernetes-models, which ships them compiled: no network, no cluster), and the
 * manifests agree with the zproxy configuration the ConfigMap carries: the container port is its
 * listener's, the probes are its admin listener's /healthz and /readyz, the termination grace covers
 * shutdown_delay_ms and shutdown_grace_ms, the config file is where the args say, the Redis URLs name the Redis Service, the
 * selectors pick the pods, and the security context matches the image's user (Dockerfile).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Service } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BASE = join(ROOT, 'deploy/kubernetes');

// biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field below
type Manifest = any;

/** The model (schema) of each kind the base uses, by apiVersion and kind. */
const MODELS: Record<string, new (data: Manifest) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

function readYaml(file: string): Manifest[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  return docs.map((doc) => {
    assert.deepEqual(doc.errors, [], `${file}: YAML errors`);
    return doc.toJS();
  });
}

function validate(manifest: Manifest): void {
  const Model = MODELS[`${manifest.apiVersion}/${manifest.kind}`];
  assert.ok(Model, `no schema for ${manifest.apiVersion} ${manifest.kind}`);
  new Model(manifest).validate();
}

const kustomization = readYaml(join(BASE, 'kustomization.yaml'))[0];
const manifests: { file: string; manifest: Manifest }[] = (kustomization.resources as string[]).flatMap(
  (file) => readYaml(join(BASE, file)).map((manifest) => ({ file, manifest })),
);
const find = (kind: string, name: string): Manifest => {
  const found = manifests.find((m) => m.manifest.kind === kind && m.manifest.metadata.name === name);
  assert.ok(found, `${kind} ${name} is missing`);
  return found.manifest;
};

const deployment = find('Deployment', 'zproxy');
const pod = deployment.spec.template.spec;
const container = pod.containers.find((c: Manifest) => c.name === 'zproxy');
const configMap = find('ConfigMap', 'zproxy-config');
const config: Config = parseConfig(JSON.parse(configMap.data['zproxy.json']), 'configmap.yaml');
const portOf = (name: string): number => {
  const port = container.ports.find((p: Manifest) => p.name === name);
  assert.ok(port, `container port ${name}`);
  return port.containerPort;
};

describe('deploy/kubernetes: the manifests against the Kubernetes API schemas', () => {
  test('the kustomization lists every manifest of the folder, each once', () => {
    assert.equal(kustomization.kind, 'Kustomization');
    assert.deepEqual([...kustomization.resources].sort(), [
      'configmap.yaml',
      'deployment.yaml',
      'hpa.yaml',
      'pdb.yaml',
      'redis.yaml',
      'service.yaml',
    ]);
    assert.deepEqual(manifests.map((m) => `${m.manifest.kind}/${m.manifest.metadata.name}`).sort(), [
      'ConfigMap/zproxy-config',
      'Deployment/zproxy',
      'Deployment/zproxy-redis',
      'HorizontalPodAutoscaler/zproxy',
      'PodDisruptionBudget/zproxy',
      'Service/zproxy',
      'Service/zproxy-redis',
    ]);
  });

  for (const { file, manifest } of manifests) {
    test(`${file}: ${manifest.kind} ${manifest.metadata.name} is valid`, () => validate(manifest));
  }

  test('the validator refuses what the API server would (a control)', () => {
    const broken = structuredClone(deployment);
    broken.spec.template.spec.containers[0].ports[0].containerPort = '8000';
    assert.throws(() => validate(broken), /containerPort must be integer/);
    const noSelector = structuredClone(find('PodDisruptionBudget', 'zproxy'));
    noSelector.spec.minAvailable = [1];
    assert.throws(() => validate(noSelector), /minAvailable/);
    assert.throws(() => validate({ ...deployment, apiVersion: 'apps/v1beta1' }), /no schema/);
  });
});

describe('deploy/kubernetes agrees with the zproxy config in its ConfigMap', () => {
  test('the config is valid zproxy configuration, with one listener', () => {
    assert.equal(config.listeners.length, 1);
  });

  test('the container port is the listener port, on every address of the pod', () => {
    assert.deepEqual(
      container.ports.map((p: Manifest) => p.name),
      ['http', 'admin'],
    );
    assert.equal(portOf('http'), config.listeners[0]!.port);
    assert.equal(config.listeners[0]!.host, '0.0.0.0', 'the kubelet and the Service reach the pod IP');
    const service = find('Service', 'zproxy');
    assert.deepEqual(
      service.spec.ports.map((p: Manifest) => p.targetPort),
      ['http'],
    );
  });

  test("the probes are the admin listener's /healthz and /readyz, on its port, reachable on the pod IP", () => {
    assert.ok(config.admin !== null, 'the config has an admin listener');
    assert.equal(portOf('admin'), config.admin!.port);
    assert.equal(config.admin!.host, '0.0.0.0', 'the kubelet reaches the pod IP');
    assert.equal(config.admin!.token, null, 'probes without an Authorization header');
    assert.deepEqual(container.livenessProbe.httpGet, { path: '/healthz', port: 'admin' });
    assert.deepEqual(container.readinessProbe.httpGet, { path: '/readyz', port: 'admin' });
    assert.deepEqual(container.startupProbe.httpGet, { path: '/readyz', port: 'admin' });
    const service = find('Service', 'zproxy');
    assert.ok(
      !service.spec.ports.some((p: Manifest) => p.targetPort === 'admin'),
      'the admin port is not served',
    );
  });

  test('termination covers the readiness drain and the graceful stop; the endpoints notice first', () => {
    const graceMs = config.shutdown_grace_ms;
    const delayMs = config.shutdown_delay_ms;
    // /readyz answers 503 from SIGTERM on: the readiness probe must see it while zproxy still serves.
    const ready = container.readinessProbe;
    assert.ok(
      delayMs >= ready.periodSeconds * ready.failureThreshold * 1000 + 1000,
      'the endpoints notice first',
    );
    assert.equal(container.lifecycle, undefined, 'no preStop sleep: shutdown_delay_ms does its work');
    const budgetMs = pod.terminationGracePeriodSeconds * 1000;
    assert.ok(
      budgetMs >= delayMs + graceMs + 2000,
      `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} s < shutdown_delay_ms ${delayMs} + ` +
        `shutdown_grace_ms ${graceMs} + 2 s`,
    );
    // The admin listener answers /healthz throughout the stop: liveness does not restart a draining pod.
    const live = container.livenessProbe;
    assert.ok(live.periodSeconds * live.failureThreshold * 1000 > graceMs);
  });

  test('the config is mounted where the command line reads it', () => {
    assert.deepEqual(container.args, ['run', '/etc/zproxy/zproxy.json', '--watch']);
    const mount = container.volumeMounts.find((m: Manifest) => m.mountPath === '/etc/zproxy');
    assert.equal(mount.readOnly, true);
    const volume = pod.volumes.find((v: Manifest) => v.name === mount.name);
    assert.equal(volume.configMap.name, configMap.metadata.name);
    assert.deepEqual(Object.keys(configMap.data), ['zproxy.json']);
  });

  test('the Redis URLs of the config name the Redis Service and its port', () => {
    const redis = find('Service', 'zproxy-redis');
    const urls = config.routes.flatMap((r) =>
      r.middlewares.map((m) => (m.config as { redis_url?: string }).redis_url).filter((u) => u !== undefined),
    );
    assert.ok(urls.length >= 2, 'the rate limit and the cache share Redis');
    for (const url of urls) {
      const parsed = new URL(url!);
      assert.equal(parsed.hostname, redis.metadata.name);
      assert.equal(Number(parsed.port), redis.spec.ports[0].port);
    }
    const redisPod = find('Deployment', 'zproxy-redis').spec.template;
    assert.deepEqual(redis.spec.selector, redisPod.metadata.labels);
  });

  test('Service, PodDisruptionBudget and HorizontalPodAutoscaler reach the zproxy pods', () => {
    const labels = deployment.spec.template.metadata.labels;
    assert.deepEqual(deployment.spec.selector.matchLabels, labels);
    assert.deepEqual(find('Service', 'zproxy').spec.selector, labels);
    assert.deepEqual(find('PodDisruptionBudget', 'zproxy').spec.selector.matchLabels, labels);
    const hpa = find('HorizontalPodAutoscaler', 'zproxy');
    assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'zproxy' });
    assert.ok(hpa.spec.minReplicas > find('PodDisruptionBudget', 'zproxy').spec.minAvailable);
    // CPU utilisation is a share of the request: there must be one.
    assert.ok(container.resources.requests.cpu);
    assert.ok(container.resources.limits.memory);
  });

  test('non-root, read-only, no capabilities, as the image runs (Dockerfile USER)', () => {
    const user = /^USER (\d+):(\d+)$/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
    assert.ok(user);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.runAsUser, Number(user[1]));
    assert.equal(pod.securityContext.runAsGroup, Number(user[2]));
    assert.deepEqual(container.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    // zproxy writes no file; /tmp (a small memory-backed emptyDir) is there for what Node may need.
    assert.ok(container.volumeMounts.some((m: Manifest) => m.mountPath === '/tmp'));
  });
});
