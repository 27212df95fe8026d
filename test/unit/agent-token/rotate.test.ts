import assert from 'node:assert/strict'

import {rotateAgentToken} from '../../../src/agent-token/rotate.js'
import {ClusterClients} from '../../../src/k8s/clients.js'
import type {ClusterClient} from '../../../src/k8s/cluster-client.js'
import {
  AGENT_TOKEN_SECRET_ANNOTATION,
  AGENT_TOKENS_SECRET,
  type AgentTokenRecord,
} from '../../../src/kubesphere/agent-token-secret.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'

const towerServicePath = '/api/v1/namespaces/kubesphere-system/services/tower'
const clusterPath = '/apis/cluster.kubesphere.io/v1alpha1/clusters/member1'
const recordsPath = `/api/v1/namespaces/kubesphere-system/secrets/${AGENT_TOKENS_SECRET}`
const now = new Date('2026-12-07T12:00:00Z')

describe('agent-token rotate: the request it writes', () => {
  let clusters: FakeClusters
  let host: ClusterClient

  beforeEach(async () => {
    clusters = await startFakeClusters()
    seedFake(clusters.host, 'ks41-host')
    const service = clusters.host.get(towerServicePath)!
    clusters.host.put(towerServicePath, {
      ...service,
      spec: {...(service.spec as object), selector: {'app.kubernetes.io/name': 'ksctl-tower-proxy'}},
    })
    clusters.host.put(clusterPath, {
      apiVersion: 'cluster.kubesphere.io/v1alpha1',
      kind: 'Cluster',
      metadata: {name: 'member1'},
      spec: {joinFederation: true, connection: {type: 'proxy', token: 'a'.repeat(64)}},
    })
    host = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
  })

  afterEach(() => clusters.stop())

  function records(): Record<string, AgentTokenRecord> {
    const data = (clusters.host.get(recordsPath) as unknown as {data: Record<string, string>}).data
    return Object.fromEntries(
      Object.entries(data)
        .filter(([key]) => key !== 'other')
        .map(([key, value]) => [
          key,
          JSON.parse(Buffer.from(value, 'base64').toString('utf8')) as AgentTokenRecord,
        ]),
    )
  }

  const rotate = (lifetime: string | null | undefined, at = now) =>
    rotateAgentToken(host, {cluster: 'member1', lifetime, wait: false, dryRun: false, now: at})

  it('asks for a new token with its lifetime, references the Secret from the Cluster, and keeps other keys', async () => {
    clusters.host.put(recordsPath, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {name: AGENT_TOKENS_SECRET, namespace: 'kubesphere-system'},
      type: 'ksctl.io/agent-tokens',
      data: {
        member1: Buffer.from(
          JSON.stringify({issuedAt: '2026-11-01T00:00:00.000Z', lifetime: '48h'}),
        ).toString('base64'),
        other: Buffer.from('not a record').toString('base64'),
      },
    })
    const result = await rotate('720h')
    assert.equal(result.state, 'requested')
    const {member1} = records()
    assert.match(member1?.next ?? '', /^[0-9a-f]{64}$/)
    assert.notEqual(member1?.next, 'a'.repeat(64))
    assert.deepEqual(
      {...member1, next: 'N'},
      {issuedAt: '2026-11-01T00:00:00.000Z', lifetime: '720h', next: 'N', requestedAt: now.toISOString()},
    )
    assert.equal(
      Buffer.from(
        (clusters.host.get(recordsPath) as unknown as {data: Record<string, string>}).data.other ?? '',
        'base64',
      ).toString(),
      'not a record',
    )
    const cluster = clusters.host.get(clusterPath) as unknown as {
      metadata: {annotations: Record<string, string>}
    }
    assert.equal(cluster.metadata.annotations[AGENT_TOKEN_SECRET_ANNOTATION], AGENT_TOKENS_SECRET)
    assert.ok(!JSON.stringify(result).includes(member1?.next ?? 'none'), 'the result holds no token')
  })

  it('follows a rotation under way rather than replace its token, taking a new lifetime into it, or removing it', async () => {
    await rotate('720h')
    const first = records().member1
    await rotate(undefined, new Date(now.getTime() + 60_000))
    assert.deepEqual(records().member1, first, 'the same token, asked for at the same time')
    await rotate('24h')
    assert.deepEqual(records().member1, {...first, lifetime: '24h'})
    await rotate(null)
    const {lifetime, ...rest} = first ?? {}
    assert.equal(lifetime, '720h')
    assert.deepEqual(records().member1, rest)
  })
})
