import assert from 'node:assert/strict'

import type {V1Deployment, V1Service} from '@kubernetes/client-node'

import {
  agentPortOf,
  proxyServerNames,
  renderProxyObjects,
  stoppedTowerDeployment,
  switchedTowerService,
  towerPlacement,
} from '../../../src/proxy-install/render.js'
import {selectsKsctlProxy} from '../../../src/kubesphere/agent-runtime.js'
import {objectIdentity, RENDERED_PROXY_OBJECTS} from '../../helpers/proxy-install-objects.js'

const tolerations = [{key: 'CriticalAddonsOnly', operator: 'Exists'}]

function render() {
  return renderProxyObjects({
    image: 'registry.example.com/ksctl:0.1.0',
    agentPort: {number: 8080, name: 'agents'},
    serverNames: ['10.96.0.10', 'tower.kubesphere-system.svc', '203.0.113.10'],
    placement: {tolerations, nodeSelector: {}, affinity: {}},
  })
}

type Rule = {apiGroups: string[]; resources: string[]; resourceNames?: string[]; verbs: string[]}

describe('ksctl proxy install: rendering', () => {
  it('renders the ServiceAccount, the RBAC, the kubesphere ports policy and the Deployment, in the order they are applied', () => {
    assert.deepEqual(render().map(objectIdentity), RENDERED_PROXY_OBJECTS)
  })

  it('grants exactly what Kubernetes mode calls: Clusters cluster-wide, its Services, four Secrets and kubesphere-config by name in kubesphere-system, Events in default; never create on Secrets', () => {
    const rules = (kind: string, namespace?: string) =>
      (
        render().find(
          (object) => object.kind === kind && object.metadata.namespace === namespace,
        ) as unknown as {
          rules: Rule[]
        }
      ).rules
    assert.deepEqual(rules('ClusterRole'), [
      {apiGroups: ['cluster.kubesphere.io'], resources: ['clusters'], verbs: ['get', 'list', 'patch']},
    ])
    assert.deepEqual(rules('Role', 'kubesphere-system'), [
      {apiGroups: [''], resources: ['services'], verbs: ['list', 'create', 'patch', 'delete']},
      {
        apiGroups: [''],
        resources: ['secrets'],
        resourceNames: ['ksctl-tower-ca', 'ksctl-tower-serving'],
        verbs: ['get'],
      },
      {apiGroups: [''], resources: ['secrets'], resourceNames: ['ksctl-tower-serving'], verbs: ['update']},
      {
        apiGroups: [''],
        resources: ['secrets'],
        resourceNames: ['ksctl-join-tokens'],
        verbs: ['get', 'update'],
      },
      {apiGroups: [''], resources: ['configmaps'], resourceNames: ['kubesphere-config'], verbs: ['get']},
      {
        apiGroups: [''],
        resources: ['secrets'],
        resourceNames: ['ksctl-agent-tokens'],
        verbs: ['get', 'update'],
      },
    ])
    assert.deepEqual(rules('Role', 'default'), [
      {apiGroups: [''], resources: ['events'], verbs: ['create', 'patch']},
    ])
    for (const binding of render().filter((object) => object.kind.endsWith('Binding'))) {
      assert.deepEqual((binding as unknown as {subjects: unknown}).subjects, [
        {kind: 'ServiceAccount', name: 'ksctl-tower-proxy', namespace: 'kubesphere-system'},
      ])
    }
  })

  it('runs ksctl tower proxy in Kubernetes mode, restricted, probed, with resources, where Tower ran', () => {
    const deployment = render().at(-1) as unknown as V1Deployment
    const pod = deployment.spec?.template.spec
    const container = pod?.containers[0]
    assert.deepEqual(deployment.spec?.selector.matchLabels, {'app.kubernetes.io/name': 'ksctl-tower-proxy'})
    assert.deepEqual(deployment.spec?.template.metadata?.labels, {
      'app.kubernetes.io/name': 'ksctl-tower-proxy',
    })
    assert.equal(pod?.serviceAccountName, 'ksctl-tower-proxy')
    assert.equal(container?.image, 'registry.example.com/ksctl:0.1.0')
    assert.deepEqual(container?.args, [
      ...['tower', 'proxy', '--namespace', 'kubesphere-system', '--listen', '0.0.0.0:8080'],
      ...['--front-end', '0.0.0.0:6443', '--metrics-address', '0.0.0.0:9090'],
      ...['--server-name', '10.96.0.10', '--server-name', 'tower.kubesphere-system.svc'],
      ...['--server-name', '203.0.113.10', '--grace-period', '30s', '--log-format', 'json'],
    ])
    assert.equal(container?.command, undefined, "the image's entrypoint (tini, then ksctl) stays")
    assert.deepEqual(container?.readinessProbe?.httpGet, {path: '/readyz', port: 'metrics'})
    assert.deepEqual(container?.livenessProbe?.httpGet, {path: '/healthz', port: 'metrics'})
    assert.deepEqual(
      container?.ports?.map((port) => [port.name, port.containerPort]),
      [
        ['agents', 8080],
        ['front-end', 6443],
        ['metrics', 9090],
      ],
    )
    assert.deepEqual(container?.resources, {
      requests: {cpu: '100m', memory: '128Mi'},
      limits: {cpu: '1', memory: '512Mi'},
    })
    assert.deepEqual(pod?.securityContext, {
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      seccompProfile: {type: 'RuntimeDefault'},
    })
    assert.deepEqual(container?.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: {drop: ['ALL']},
    })
    assert.deepEqual(pod?.tolerations, tolerations)
    assert.equal(pod?.nodeSelector, undefined, 'an empty placement is left out')
    assert.equal(pod?.affinity, undefined)
    assert.notEqual(pod?.hostNetwork, true)
  })

  it("listens where the tower Service's port leads: a number, or a name ksctl's container then carries", () => {
    const service = (targetPort: number | string | undefined): V1Service => ({
      spec: {ports: [{port: 8080, ...(targetPort === undefined ? {} : {targetPort})}]},
    })
    assert.deepEqual(agentPortOf(service(8080)), {number: 8080, name: 'agents'})
    assert.deepEqual(agentPortOf(service('9443')), {number: 9443, name: 'agents'})
    assert.deepEqual(agentPortOf(service('proxy')), {number: 8080, name: 'proxy'})
    assert.deepEqual(agentPortOf(service(undefined)), {number: 8080, name: 'agents'})
  })

  it("names the tower Service's ClusterIP and DNS names, the published address's host and the given names, each once", () => {
    const service: V1Service = {metadata: {name: 'tower'}, spec: {clusterIP: '10.96.0.10'}}
    assert.deepEqual(
      proxyServerNames(service, 'http://[2001:db8::1]:30721', ['tower.example.com', 'tower']),
      [
        '10.96.0.10',
        'tower',
        'tower.kubesphere-system',
        'tower.kubesphere-system.svc',
        'tower.kubesphere-system.svc.cluster.local',
        '2001:db8::1',
        'tower.example.com',
      ],
    )
    assert.deepEqual(
      proxyServerNames({metadata: {name: 'tower'}, spec: {clusterIP: 'None'}}, undefined, []),
      [
        'tower',
        'tower.kubesphere-system',
        'tower.kubesphere-system.svc',
        'tower.kubesphere-system.svc.cluster.local',
      ],
    )
  })

  it("changes only the tower Service's selector and Tower's replicas, and copies Tower's placement", () => {
    const service: V1Service = {
      metadata: {name: 'tower', labels: {app: 'tower'}, annotations: {a: 'b'}},
      spec: {
        type: 'NodePort',
        selector: {app: 'tower'},
        ports: [{port: 8080, targetPort: 8080, nodePort: 30721}],
      },
      status: {loadBalancer: {}},
    }
    const switched = switchedTowerService(service)
    assert.deepEqual(switched, {
      ...service,
      spec: {...service.spec, selector: {'app.kubernetes.io/name': 'ksctl-tower-proxy'}},
    })
    assert.deepEqual(service.spec?.selector, {app: 'tower'}, 'the object read is left as it was')
    assert.ok(selectsKsctlProxy(switched))
    assert.ok(!selectsKsctlProxy(service))
    assert.ok(
      !selectsKsctlProxy({spec: {selector: {app: 'tower', 'app.kubernetes.io/name': 'ksctl-tower-proxy'}}}),
      "a selector that also names Tower's label (a re-run installer merged it in) selects neither proxy",
    )
    const tower: V1Deployment = {
      metadata: {name: 'tower'},
      spec: {
        replicas: 1,
        selector: {matchLabels: {app: 'tower'}},
        template: {spec: {containers: [], tolerations, nodeSelector: {role: 'edge'}}},
      },
    }
    assert.deepEqual(stoppedTowerDeployment(tower), {...tower, spec: {...tower.spec, replicas: 0}})
    assert.deepEqual(towerPlacement(tower), {tolerations, nodeSelector: {role: 'edge'}})
  })
})
