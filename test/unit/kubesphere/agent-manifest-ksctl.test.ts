import assert from 'node:assert/strict'
import {mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import type {V1ClusterRole, V1ClusterRoleBinding, V1Deployment} from '@kubernetes/client-node'

import {
  ksctlAgentObjectRefs,
  AGENT_NO_PROXY,
  agentManifestYaml,
  defaultKsctlAgentImage,
  renderKsctlAgentManifest,
  type KsctlAgentManifestOptions,
  type ManifestObject,
} from '../../../src/kubesphere/agent-manifest.js'
import {ksctlProxyAddress, selectsKsctlProxy} from '../../../src/kubesphere/agent-runtime.js'
import {redactObject} from '../../../src/redact.js'
import {AGENT_TOKEN} from '../../fixtures/kubesphere/agent-cluster.js'
import {GOLDEN_PROXY_CA, golden, goldenDir, ksctlGoldenCases} from '../../helpers/agent-golden.js'

const base: KsctlAgentManifestOptions = {
  clusterName: 'member1',
  token: AGENT_TOKEN,
  proxyAddress: 'wss://192.0.2.10:30721',
  trust: {caPem: GOLDEN_PROXY_CA},
}
const PIN = `sha256:${'cd'.repeat(32)}`

function find(objects: ManifestObject[], kind: string, name: string): ManifestObject {
  const found = objects.find((object) => object.kind === kind && object.metadata.name === name)
  assert.ok(found !== undefined, `${kind} ${name}`)
  return found
}

function deployment(objects: ManifestObject[]): V1Deployment {
  return find(objects, 'Deployment', 'ksctl-tower-agent')
}

function container(objects: ManifestObject[]) {
  const containers = deployment(objects).spec?.template.spec?.containers ?? []
  assert.equal(containers.length, 1)
  return containers[0]!
}

describe("ksctl's agent manifest", () => {
  it('the objects: namespace, ServiceAccount, its impersonate-only RBAC, KubeSphere identity as cluster-admin, the rotation identity on the token Secret alone, token Secret, CA ConfigMap, Deployment', () => {
    const objects = renderKsctlAgentManifest(base)
    assert.deepEqual(
      objects.map((object) => `${object.kind} ${object.metadata.namespace ?? '-'}/${object.metadata.name}`),
      [
        'Namespace -/kubesphere-system',
        'ServiceAccount kubesphere-system/ksctl-tower-agent',
        'ClusterRole -/ksctl-tower-agent-impersonator',
        'ClusterRoleBinding -/ksctl-tower-agent-impersonator',
        'ClusterRoleBinding -/ksctl-kubesphere-identity',
        'Role kubesphere-system/ksctl-tower-agent-token-rotation',
        'RoleBinding kubesphere-system/ksctl-tower-agent-token-rotation',
        'Secret kubesphere-system/ksctl-tower-agent-token',
        'ConfigMap kubesphere-system/ksctl-tower-agent-proxy-ca',
        'Deployment kubesphere-system/ksctl-tower-agent',
      ],
    )
    // The agent's own account may only impersonate users and groups: nothing else, and no other kind of identity.
    const role = find(objects, 'ClusterRole', 'ksctl-tower-agent-impersonator') as unknown as V1ClusterRole
    assert.deepEqual(role.rules, [{apiGroups: [''], resources: ['users', 'groups'], verbs: ['impersonate']}])
    const binding = find(
      objects,
      'ClusterRoleBinding',
      'ksctl-tower-agent-impersonator',
    ) as unknown as V1ClusterRoleBinding
    assert.deepEqual(binding.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: 'ksctl-tower-agent-impersonator',
    })
    assert.deepEqual(binding.subjects, [
      {kind: 'ServiceAccount', name: 'ksctl-tower-agent', namespace: 'kubesphere-system'},
    ])
    const kubesphere = find(
      objects,
      'ClusterRoleBinding',
      'ksctl-kubesphere-identity',
    ) as unknown as V1ClusterRoleBinding
    assert.equal(kubesphere.roleRef.name, 'cluster-admin')
    assert.deepEqual(kubesphere.subjects, [
      {apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'ksctl:kubesphere'},
    ])
    const bound = objects.filter((object) => object.kind === 'ClusterRoleBinding')
    assert.ok(
      bound.every(
        (object) =>
          (object.roleRef as {name: string}).name !== 'cluster-admin' ||
          !JSON.stringify(object.subjects).includes('ServiceAccount'),
      ),
      "no ServiceAccount is cluster-admin: the agent's rights come through impersonation",
    )
    assert.deepEqual(find(objects, 'Secret', 'ksctl-tower-agent-token').data, {
      token: Buffer.from(AGENT_TOKEN).toString('base64'),
    })
    assert.deepEqual(find(objects, 'ConfigMap', 'ksctl-tower-agent-proxy-ca').data, {
      'ca.crt': GOLDEN_PROXY_CA,
    })
  })

  it('runs `ksctl tower agent` with the token from a file, never in its arguments or environment, and the proxy CA', () => {
    const objects = renderKsctlAgentManifest(base)
    const agent = container(objects)
    assert.deepEqual(agent.args, [
      'tower',
      'agent',
      '--name=member1',
      '--proxy-server=wss://192.0.2.10:30721',
      '--token-file=/etc/ksctl-tower-agent/token',
      '--kubernetes-service=$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)',
      '--kubesphere-service=ks-apiserver.kubesphere-system.svc:80',
      '--keepalive=10s',
      '--metrics-address=0.0.0.0:9090',
      '--proxy-ca=/etc/ksctl-tower-agent/ca.crt',
    ])
    assert.equal(agent.command, undefined, "the image's entrypoint is ksctl")
    const spec = deployment(objects).spec?.template.spec
    const text = JSON.stringify(deployment(objects))
    assert.ok(!text.includes(AGENT_TOKEN) && !text.includes(Buffer.from(AGENT_TOKEN).toString('base64')))
    assert.deepEqual(agent.volumeMounts, [
      {name: 'tunnel', mountPath: '/etc/ksctl-tower-agent', readOnly: true},
    ])
    assert.deepEqual(spec?.volumes, [
      {
        name: 'tunnel',
        projected: {
          defaultMode: 0o440,
          sources: [
            {secret: {name: 'ksctl-tower-agent-token', items: [{key: 'token', path: 'token'}]}},
            {configMap: {name: 'ksctl-tower-agent-proxy-ca', items: [{key: 'ca.crt', path: 'ca.crt'}]}},
          ],
        },
      },
    ])
    assert.equal(spec?.serviceAccountName, 'ksctl-tower-agent')
    assert.equal(agent.image, defaultKsctlAgentImage())
    assert.match(defaultKsctlAgentImage(), /^ksctl:\d+\.\d+\.\d+/)
  })

  it('probes /readyz and /healthz on the metrics port, and runs restricted: non-root, no privilege, read-only root, no capabilities', () => {
    const objects = renderKsctlAgentManifest(base)
    const agent = container(objects)
    assert.deepEqual(agent.ports, [{name: 'metrics', containerPort: 9090, protocol: 'TCP'}])
    assert.deepEqual(agent.readinessProbe?.httpGet, {path: '/readyz', port: 'metrics'})
    assert.deepEqual(agent.livenessProbe?.httpGet, {path: '/healthz', port: 'metrics'})
    assert.deepEqual(agent.resources, {
      requests: {cpu: '100m', memory: '128Mi'},
      limits: {cpu: '1', memory: '512Mi'},
    })
    assert.deepEqual(agent.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: {drop: ['ALL']},
    })
    assert.deepEqual(deployment(objects).spec?.template.spec?.securityContext, {
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      fsGroup: 65532,
      seccompProfile: {type: 'RuntimeDefault'},
    })
  })

  it('with a pin: --proxy-pin, no CA ConfigMap and nothing of it in the volume', () => {
    const objects = renderKsctlAgentManifest({...base, trust: {pin: PIN}})
    assert.ok(!objects.some((object) => object.kind === 'ConfigMap'))
    const agent = container(objects)
    assert.equal(agent.args?.at(-1), `--proxy-pin=${PIN}`)
    assert.ok(!agent.args?.some((argument) => argument.startsWith('--proxy-ca')))
    assert.deepEqual(deployment(objects).spec?.template.spec?.volumes?.[0]?.projected?.sources, [
      {secret: {name: 'ksctl-tower-agent-token', items: [{key: 'token', path: 'token'}]}},
    ])
  })

  it('rolls the pods when the CA or the pin changes: the pod template names what they trust', () => {
    const trusted = (options: KsctlAgentManifestOptions) =>
      deployment(renderKsctlAgentManifest(options)).spec?.template.metadata?.annotations?.[
        'ksctl.io/proxy-trust'
      ]
    const ca = trusted(base)
    assert.match(ca ?? '', /^sha256:[0-9a-f]{8}$/)
    assert.notEqual(trusted({...base, trust: {caPem: `${GOLDEN_PROXY_CA}${GOLDEN_PROXY_CA}`}}), ca)
    assert.notEqual(trusted({...base, trust: {pin: PIN}}), ca)
    assert.equal(trusted({...base, token: 'b'.repeat(64)}), ca, 'the token is re-read from its file')
  })

  it('above one replica: pods prefer separate nodes and a PodDisruptionBudget keeps one; egress proxy and resources as asked', () => {
    const objects = renderKsctlAgentManifest({
      ...base,
      replicas: 2,
      httpProxy: 'http://proxy.example.com:3128',
      resources: {memoryLimit: '1Gi'},
    })
    const spec = deployment(objects).spec
    assert.equal(spec?.replicas, 2)
    assert.deepEqual(
      spec?.template.spec?.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution,
      [
        {
          weight: 100,
          podAffinityTerm: {
            labelSelector: {matchLabels: {'app.kubernetes.io/name': 'ksctl-tower-agent'}},
            topologyKey: 'kubernetes.io/hostname',
          },
        },
      ],
    )
    assert.deepEqual(objects.at(-1), {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: {
        name: 'ksctl-tower-agent',
        namespace: 'kubesphere-system',
        labels: {'app.kubernetes.io/name': 'ksctl-tower-agent', 'app.kubernetes.io/managed-by': 'ksctl'},
      },
      spec: {minAvailable: 1, selector: {matchLabels: {'app.kubernetes.io/name': 'ksctl-tower-agent'}}},
    })
    const agent = container(objects)
    assert.deepEqual(agent.env, [
      {name: 'HTTP_PROXY', value: 'http://proxy.example.com:3128'},
      {name: 'HTTPS_PROXY', value: 'http://proxy.example.com:3128'},
      {name: 'NO_PROXY', value: AGENT_NO_PROXY},
    ])
    assert.deepEqual(agent.resources?.limits, {cpu: '1', memory: '1Gi'})
    assert.ok(!renderKsctlAgentManifest(base).some((object) => object.kind === 'PodDisruptionBudget'))
  })

  it('shows the Secret redacted wherever ksctl redacts (diffs, errors), the token only in the manifest itself', () => {
    const objects = renderKsctlAgentManifest(base)
    const redacted = JSON.stringify(redactObject(objects))
    assert.ok(!redacted.includes(AGENT_TOKEN))
    assert.ok(!redacted.includes(Buffer.from(AGENT_TOKEN).toString('base64')))
    assert.match(redacted, /"token":"<redacted sha256:[0-9a-f]{8}>"/)
    assert.ok(agentManifestYaml(objects).includes(Buffer.from(AGENT_TOKEN).toString('base64')))
  })

  describe('golden files (UPDATE_GOLDEN=1 rewrites them)', () => {
    for (const [name, options] of Object.entries(ksctlGoldenCases)) {
      it(`${name}.yaml`, () => {
        const yaml = agentManifestYaml(renderKsctlAgentManifest(options))
        if (process.env.UPDATE_GOLDEN === '1') {
          mkdirSync(goldenDir, {recursive: true})
          writeFileSync(join(goldenDir, `${name}.yaml`), yaml)
        }
        assert.equal(yaml, golden(name))
      })
    }
  })
})

describe("ksctl's runtime on a host", () => {
  it("is the host's when its tower Service selects exactly ksctl's proxy pods", () => {
    const service = (selector?: Record<string, string>) => ({spec: {...(selector && {selector})}})
    assert.equal(selectsKsctlProxy(service({'app.kubernetes.io/name': 'ksctl-tower-proxy'})), true)
    assert.equal(selectsKsctlProxy(service({app: 'tower', 'app.kubernetes.io/name': 'tower'})), false)
    assert.equal(
      selectsKsctlProxy(service({'app.kubernetes.io/name': 'ksctl-tower-proxy', app: 'tower'})),
      false,
      'a selector that also asks for Tower pods selects neither',
    )
    assert.equal(selectsKsctlProxy(service()), false)
    assert.equal(selectsKsctlProxy(undefined), false)
  })

  it('dials the published address over wss://, the port kept (http:// defaults to 80, not 443)', () => {
    assert.equal(ksctlProxyAddress('http://192.0.2.10:30721', 'x'), 'wss://192.0.2.10:30721')
    assert.equal(ksctlProxyAddress('https://tower.example.com:8443', 'x'), 'wss://tower.example.com:8443')
    assert.equal(ksctlProxyAddress('http://192.0.2.10:80', 'x'), 'wss://192.0.2.10:80')
    assert.equal(ksctlProxyAddress('https://192.0.2.10:443', 'x'), 'wss://192.0.2.10:443')
    assert.equal(ksctlProxyAddress('http://[2001:db8::1]:8080', 'x'), 'wss://[2001:db8::1]:8080')
  })

  it('lists for removal every object a manifest can make, the Deployment and its budget first, never the Namespace', () => {
    assert.deepEqual(
      ksctlAgentObjectRefs().map(
        (ref) => `${ref.kind} ${ref.metadata.namespace ?? '-'}/${ref.metadata.name}`,
      ),
      [
        'Deployment kubesphere-system/ksctl-tower-agent',
        'PodDisruptionBudget kubesphere-system/ksctl-tower-agent',
        'ConfigMap kubesphere-system/ksctl-tower-agent-proxy-ca',
        'Secret kubesphere-system/ksctl-tower-agent-token',
        'RoleBinding kubesphere-system/ksctl-tower-agent-token-rotation',
        'Role kubesphere-system/ksctl-tower-agent-token-rotation',
        'ClusterRoleBinding -/ksctl-kubesphere-identity',
        'ClusterRoleBinding -/ksctl-tower-agent-impersonator',
        'ClusterRole -/ksctl-tower-agent-impersonator',
        'ServiceAccount kubesphere-system/ksctl-tower-agent',
      ],
    )
  })
})
