import assert from 'node:assert/strict'

import {ClusterClients} from '../../../../../src/k8s/clients.js'
import {
  AGENT_TOKEN_SECRET_ANNOTATION,
  AGENT_TOKENS_SECRET,
  type AgentTokenRecord,
} from '../../../../../src/kubesphere/agent-token-secret.js'
import type {KubeSphereCluster} from '../../../../../src/kubesphere/cluster-object.js'
import {Logger} from '../../../../../src/log.js'
import {createCertificateAuthority} from '../../../../../src/pki/certificates.js'
import {KubernetesClusterRegistry} from '../../../../../src/tower/proxy/kubernetes/kubernetes-registry.js'
import type {AgentPresence, TunnelRequest, TunnelResponse} from '../../../../../src/tower/proxy/registry.js'
import {AGENT_TOKEN_ROTATION_IDENTITY} from '../../../../../src/tower/shared/identity.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../../../helpers/fake-clusters.js'

const clusterPath = '/apis/cluster.kubesphere.io/v1alpha1/clusters/member1'
const recordsPath = `/api/v1/namespaces/kubesphere-system/secrets/${AGENT_TOKENS_SECRET}`
const currentToken = 'a'.repeat(64)
const issuedAt = new Date('2026-12-01T00:00:00Z')

const presence = (onNext: number, onOthers: number): AgentPresence => ({
  sessions: onNext + onOthers,
  servingOnNextToken: onNext,
  servingOnOtherTokens: onOthers,
})

describe('tower proxy, Kubernetes mode: agent token rotation', () => {
  let clusters: FakeClusters
  let registry: KubernetesClusterRegistry
  let logged: string[]
  let now: Date
  /** What the member's kube-apiserver answers through the tunnel, and what it was asked. */
  let memberAnswers: number
  let sent: {cluster: string; request: TunnelRequest}[] = []

  beforeEach(async () => {
    clusters = await startFakeClusters()
    seedFake(clusters.host, 'ks41-host')
    clusters.host.put(clusterPath, {
      apiVersion: 'cluster.kubesphere.io/v1alpha1',
      kind: 'Cluster',
      metadata: {name: 'member1', annotations: {[AGENT_TOKEN_SECRET_ANNOTATION]: AGENT_TOKENS_SECRET}},
      spec: {joinFederation: true, connection: {type: 'proxy', token: currentToken}},
    })
    putRecord({lifetime: '30m', issuedAt: issuedAt.toISOString()})
    logged = []
    now = new Date(issuedAt.getTime() + 10 * 60_000)
    memberAnswers = 200
    sent = []
    const client = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
    registry = new KubernetesClusterRegistry(client, {
      ca: await createCertificateAuthority({commonName: 'test-tower-ca', validityDays: 2}),
      kubeconfigValidityDays: 365,
      resyncMs: 60_000,
      log: new Logger('debug', 'text', {write: (line) => logged.push(line)}),
      now: () => now,
    })
    registry.attachTunnel({
      request: (cluster: string, request: TunnelRequest): Promise<TunnelResponse> => {
        sent.push({cluster, request})
        return Promise.resolve({status: memberAnswers, body: {message: 'from the test'}})
      },
    })
  })

  afterEach(async () => {
    await registry.close()
    await clusters.stop()
  })

  function putRecord(record: AgentTokenRecord): void {
    clusters.host.put(recordsPath, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {name: AGENT_TOKENS_SECRET, namespace: 'kubesphere-system'},
      type: 'ksctl.io/agent-tokens',
      data: {member1: Buffer.from(JSON.stringify(record)).toString('base64')},
    })
  }

  function record(): AgentTokenRecord {
    const data = (clusters.host.get(recordsPath) as unknown as {data: Record<string, string>}).data
    return JSON.parse(Buffer.from(data.member1 ?? '', 'base64').toString('utf8')) as AgentTokenRecord
  }

  const clusterToken = () =>
    (clusters.host.get(clusterPath) as unknown as KubeSphereCluster).spec?.connection?.token

  it('renews a token at two thirds of its lifetime, delivers it through the tunnel, and promotes it once every serving agent is on it', async () => {
    await registry.reconcile()
    assert.equal(record().next, undefined, 'not renewed before two thirds of the lifetime')
    assert.equal(registry.get('member1')?.tokenExpiresAt, issuedAt.getTime() + 30 * 60_000)

    now = new Date(issuedAt.getTime() + 21 * 60_000)
    await registry.reconcile()
    const next = record().next ?? ''
    assert.match(next, /^[0-9a-f]{64}$/)

    // No agent yet: nothing can reach the member; the record says why. The next token is accepted from the
    // pass that reads it on, before it can reach the member.
    await registry.reconcile()
    assert.equal(registry.get('member1')?.nextToken, next)
    assert.equal(registry.get('member1')?.token, currentToken)
    assert.equal(sent.length, 0)
    assert.match(record().error ?? '', /no agent of the cluster is connected/)

    registry.agentConnected('member1', presence(0, 1))
    await registry.reconcile()
    assert.equal(sent.length, 1)
    assert.deepEqual(sent[0]?.request, {
      identity: AGENT_TOKEN_ROTATION_IDENTITY,
      method: 'PATCH',
      path: '/api/v1/namespaces/kubesphere-system/secrets/ksctl-tower-agent-token',
      contentType: 'application/merge-patch+json',
      body: {data: {token: Buffer.from(next).toString('base64')}},
    })
    assert.ok(record().deliveredAt !== undefined)
    assert.equal(record().error, undefined)

    // One agent on the next token, one still serving on the current one: not yet.
    registry.agentConnected('member1', presence(1, 1))
    await registry.reconcile()
    assert.equal(clusterToken(), currentToken)

    let changes = 0
    registry.onChange(() => changes++)
    registry.agentConnected('member1', presence(2, 0))
    await registry.reconcile()
    assert.equal(clusterToken(), next)
    assert.deepEqual(record(), {lifetime: '30m', issuedAt: now.toISOString()})
    assert.equal(registry.get('member1')?.token, next)
    assert.equal(registry.get('member1')?.nextToken, undefined, 'the old token is refused from now on')
    assert.equal(registry.get('member1')?.tokenExpiresAt, now.getTime() + 30 * 60_000)
    assert.ok(changes > 0, 'the proxy hears of it, and closes what is left on the old token')
    assert.equal(sent.length, 1, 'delivered once')
    for (const token of [currentToken, next])
      assert.ok(
        logged.every((line) => !line.includes(token)),
        'no token is logged',
      )
  })

  it('says why a member refuses the next token, on the record and in a Warning Event, and tries again', async () => {
    putRecord({next: 'b'.repeat(64), requestedAt: issuedAt.toISOString()})
    registry.agentConnected('member1', presence(0, 1))
    memberAnswers = 403
    await registry.reconcile()
    assert.match(
      record().error ?? '',
      /does not let ksctl:agent-token-rotation patch .*apply ksctl's agent manifest again/,
    )
    const events = clusters.host
      .writes()
      .filter((write) => write.path === '/api/v1/namespaces/default/events')
      .map((write) => write.body as {reason: string; type: string})
    assert.deepEqual(
      events.map((event) => [event.type, event.reason]),
      [['Warning', 'AgentTokenRotationFailed']],
    )
    memberAnswers = 404
    await registry.reconcile()
    assert.match(record().error ?? '', /runs Tower's agent, which takes its token on its command line/)
    memberAnswers = 200
    await registry.reconcile()
    assert.equal(record().error, undefined)
    assert.ok(record().deliveredAt !== undefined)
    assert.equal(sent.length, 3)
  })

  it('acts only on the record of a Cluster that references it', async () => {
    const stored = clusters.host.get(clusterPath) as unknown as KubeSphereCluster
    clusters.host.put(clusterPath, {...stored, metadata: {name: 'member1'}})
    putRecord({next: 'b'.repeat(64), requestedAt: issuedAt.toISOString()})
    registry.agentConnected('member1', presence(0, 1))
    await registry.reconcile()
    assert.equal(registry.get('member1')?.nextToken, undefined)
    assert.deepEqual(sent, [])
  })
})
