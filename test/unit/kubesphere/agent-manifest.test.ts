import assert from 'node:assert/strict'
import {mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {KsctlError} from '../../../src/errors.js'
import {
  AGENT_NO_PROXY,
  agentManifestYaml,
  renderAgentManifest,
  type ManifestObject,
} from '../../../src/kubesphere/agent-manifest.js'
import {AGENT_TOKEN} from '../../fixtures/kubesphere/agent-cluster.js'
import {golden, goldenCases, goldenDir} from '../../helpers/agent-golden.js'

/**
 * What KubeSphere's own unit test for this endpoint expects, verbatim (kubesphere/kubesphere
 * pkg/kapis/cluster/v1alpha1/handler_test.go @ 447a51f, `expected`): proof that the rendering, down to
 * key order and quoting, is what ks-apiserver's YAML printer writes.
 */
const kubesphereHandlerTestExpected = `apiVersion: apps/v1
kind: Deployment
metadata:
  creationTimestamp: null
  name: cluster-agent
  namespace: kubesphere-system
spec:
  selector:
    matchLabels:
      app: agent
      app.kubernetes.io/part-of: tower
  strategy: {}
  template:
    metadata:
      creationTimestamp: null
      labels:
        app: agent
        app.kubernetes.io/part-of: tower
    spec:
      containers:
      - command:
        - /agent
        - --name=gondor
        - --token=randomtoken
        - --proxy-server=http://139.198.121.121:8080
        - --keepalive=10s
        - --kubesphere-service=ks-apiserver.kubesphere-system.svc:80
        - --kubernetes-service=kubernetes.default.svc:443
        - --v=0
        image: kubesphere/tower:v1.0
        name: agent
        resources:
          limits:
            cpu: "1"
            memory: 200M
          requests:
            cpu: 100m
            memory: 100M
      serviceAccountName: kubesphere
status: {}
`

interface Container {
  name: string
  image: string
  command: string[]
  env?: {name: string; value: string}[]
  resources: {limits: Record<string, string>; requests: Record<string, string>}
}

interface Deployment {
  metadata: {name: string; namespace: string}
  spec: {
    replicas?: number
    selector: {matchLabels: Record<string, string>}
    template: {
      metadata: {labels: Record<string, string>}
      spec: {serviceAccountName: string; containers: Container[]; affinity?: unknown}
    }
  }
}

function deploymentOf(objects: ManifestObject[]): Deployment {
  const deployments = objects.filter((object) => object.kind === 'Deployment')
  assert.equal(deployments.length, 1)
  return deployments[0] as unknown as Deployment
}

function containerOf(objects: ManifestObject[]): Container {
  const containers = deploymentOf(objects).spec.template.spec.containers
  assert.equal(containers.length, 1)
  return containers[0]!
}

const base = {clusterName: 'member1', token: AGENT_TOKEN, proxyAddress: 'http://192.0.2.10:8080'}

describe('agent manifest', () => {
  it("renders byte for byte what KubeSphere's own test of the 3.x endpoint expects", () => {
    const objects = renderAgentManifest({
      edition: '3.x',
      clusterName: 'gondor',
      token: 'randomtoken',
      proxyAddress: 'http://139.198.121.121:8080',
      image: 'kubesphere/tower:v1.0',
    })
    assert.equal(agentManifestYaml(objects), kubesphereHandlerTestExpected)
  })

  it("3.x: one Deployment in kubesphere-system running as kubesphere, with KubeSphere's command and resources", () => {
    const objects = renderAgentManifest({edition: '3.x', ...base})
    assert.deepEqual(
      objects.map((object) => object.kind),
      ['Deployment'],
    )
    const deployment = deploymentOf(objects)
    assert.deepEqual(deployment.metadata, {
      creationTimestamp: null,
      name: 'cluster-agent',
      namespace: 'kubesphere-system',
    })
    assert.equal(deployment.spec.replicas, undefined)
    assert.ok(!('replicas' in deployment.spec))
    const labels = {app: 'agent', 'app.kubernetes.io/part-of': 'tower'}
    assert.deepEqual(deployment.spec.selector.matchLabels, labels)
    assert.deepEqual(deployment.spec.template.metadata.labels, labels)
    assert.equal(deployment.spec.template.spec.serviceAccountName, 'kubesphere')
    const container = containerOf(objects)
    assert.equal(container.name, 'agent')
    assert.equal(container.image, 'kubesphere/tower:v0.2.1')
    assert.deepEqual(container.command, [
      '/agent',
      '--name=member1',
      `--token=${AGENT_TOKEN}`,
      '--proxy-server=http://192.0.2.10:8080',
      '--keepalive=10s',
      '--kubesphere-service=ks-apiserver.kubesphere-system.svc:80',
      '--kubernetes-service=kubernetes.default.svc:443',
      '--v=0',
    ])
    assert.deepEqual(container.resources, {
      limits: {cpu: '1', memory: '200M'},
      requests: {cpu: '100m', memory: '100M'},
    })
    assert.equal(container.env, undefined)
    assert.equal(deployment.spec.template.spec.affinity, undefined)
  })

  it('4.x: a Namespace, ServiceAccount tower bound to cluster-admin, and the same Deployment running as tower', () => {
    const objects = renderAgentManifest({edition: '4.x', ...base})
    assert.deepEqual(
      objects.map((object) => `${object.apiVersion} ${object.kind} ${object.metadata.name}`),
      [
        'v1 Namespace kubesphere-system',
        'v1 ServiceAccount tower',
        'rbac.authorization.k8s.io/v1 ClusterRoleBinding tower',
        'apps/v1 Deployment cluster-agent',
      ],
    )
    assert.equal(objects[1]?.metadata.namespace, 'kubesphere-system')
    assert.deepEqual(objects[2]?.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: 'cluster-admin',
    })
    assert.deepEqual(objects[2]?.subjects, [
      {kind: 'ServiceAccount', name: 'tower', namespace: 'kubesphere-system'},
    ])
    const v3 = deploymentOf(renderAgentManifest({edition: '3.x', ...base}))
    const v4 = deploymentOf(objects)
    assert.equal(v4.spec.template.spec.serviceAccountName, 'tower')
    v4.spec.template.spec.serviceAccountName = 'kubesphere'
    assert.deepEqual(v4, v3)
  })

  it('writes one document per object with --- between them, as KubeSphere does', () => {
    const yaml = agentManifestYaml(renderAgentManifest({edition: '4.x', ...base}))
    assert.ok(!yaml.startsWith('---'))
    assert.equal(yaml.split(/^---$/m).length, 4)
  })

  it('with replicas above 1: the replica count, pods preferring separate nodes, and a PodDisruptionBudget', () => {
    const objects = renderAgentManifest({edition: '3.x', ...base, replicas: 3})
    const deployment = deploymentOf(objects)
    assert.equal(deployment.spec.replicas, 3)
    assert.deepEqual(deployment.spec.template.spec.affinity, {
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          {
            weight: 100,
            podAffinityTerm: {
              labelSelector: {matchLabels: {app: 'agent', 'app.kubernetes.io/part-of': 'tower'}},
              topologyKey: 'kubernetes.io/hostname',
            },
          },
        ],
      },
    })
    assert.deepEqual(objects[1], {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: {name: 'cluster-agent', namespace: 'kubesphere-system'},
      spec: {minAvailable: 1, selector: {matchLabels: {app: 'agent', 'app.kubernetes.io/part-of': 'tower'}}},
    })
  })

  it("with replicas 1 given explicitly: KubeSphere's output unchanged", () => {
    const yaml = (replicas?: number) =>
      agentManifestYaml(renderAgentManifest({edition: '4.x', ...base, replicas}))
    assert.equal(yaml(1), yaml())
  })

  it('with an egress proxy: HTTP_PROXY, HTTPS_PROXY and a NO_PROXY that keeps in-cluster Services direct', () => {
    const container = containerOf(
      renderAgentManifest({edition: '3.x', ...base, httpProxy: 'http://proxy.example.com:3128'}),
    )
    assert.deepEqual(container.env, [
      {name: 'HTTP_PROXY', value: 'http://proxy.example.com:3128'},
      {name: 'HTTPS_PROXY', value: 'http://proxy.example.com:3128'},
      {name: 'NO_PROXY', value: AGENT_NO_PROXY},
    ])
    const noProxy = AGENT_NO_PROXY.split(',')
    for (const host of [
      'kubernetes.default.svc',
      'ks-apiserver.kubesphere-system.svc',
      '.svc',
      '$(KUBERNETES_SERVICE_HOST)',
    ])
      assert.ok(noProxy.includes(host), host)
  })

  it('overrides the image and only the resources asked for', () => {
    const container = containerOf(
      renderAgentManifest({
        edition: '4.x',
        ...base,
        image: 'mirror.example.com/tower:v0.2.1',
        resources: {memoryLimit: '256Mi'},
      }),
    )
    assert.equal(container.image, 'mirror.example.com/tower:v0.2.1')
    assert.deepEqual(container.resources, {
      limits: {cpu: '1', memory: '256Mi'},
      requests: {cpu: '100m', memory: '100M'},
    })
  })

  it("refuses a request above its limit, KubeSphere's default limit included", () => {
    assert.throws(
      () => renderAgentManifest({edition: '3.x', ...base, resources: {cpuRequest: '1500m'}}),
      (error: unknown) =>
        error instanceof KsctlError &&
        error.code === 'INVALID_INPUT' &&
        /cpu request 1500m is more than its cpu limit 1/.test(error.message) &&
        error.suggestions.includes('raise the limit as well, e.g. --cpu-limit 1500m'),
    )
  })

  describe('golden files (UPDATE_GOLDEN=1 rewrites them)', () => {
    for (const [name, options] of Object.entries(goldenCases)) {
      it(`${name}.yaml`, () => {
        const yaml = agentManifestYaml(renderAgentManifest(options))
        if (process.env.UPDATE_GOLDEN === '1') {
          mkdirSync(goldenDir, {recursive: true})
          writeFileSync(join(goldenDir, `${name}.yaml`), yaml)
        }
        assert.equal(yaml, golden(name))
      })
    }
  })
})
