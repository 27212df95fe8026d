import assert from 'node:assert/strict'

import {ClusterClients} from '../../../src/k8s/clients.js'
import {migrateMembersToKsctlAgent} from '../../../src/kubesphere/runtime-migration.js'
import {AGENT_TOKEN, proxyCluster} from '../../fixtures/kubesphere/agent-cluster.js'
import {restPath} from '../../fixtures/kubesphere/rest-path.js'
import {
  kubeconfigYaml,
  MEMBER_TOKEN,
  seedFake,
  startFakeClusters,
  type FakeClusters,
} from '../../helpers/fake-clusters.js'
import {loopbackPki} from '../../helpers/test-pki.js'

const agentPath = '/apis/apps/v1/namespaces/kubesphere-system/deployments/cluster-agent'

describe('runtime migration, planned and empty', () => {
  let clusters: FakeClusters

  beforeEach(async () => {
    clusters = await startFakeClusters()
    seedFake(clusters.host, 'ks41-host', {proxyPublishAddress: 'http://192.0.2.10:30721'})
    const {ca} = await loopbackPki('ksctl-proxy')
    clusters.host.put('/api/v1/namespaces/kubesphere-system/secrets/ksctl-tower-ca', {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: {name: 'ksctl-tower-ca', namespace: 'kubesphere-system'},
      data: {'tls.crt': Buffer.from(ca.certPem).toString('base64')},
    })
  })

  afterEach(async () => {
    await clusters.stop()
  })

  const host = () => ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')

  /** A kubeconfig that reaches the member (the fake member), as Tower's tunnel or a direct connection's does. */
  const reachesMember = () =>
    Buffer.from(
      kubeconfigYaml({member: [clusters.member.url, MEMBER_TOKEN]}, clusters.member.caPem, 'member'),
    ).toString('base64')

  /** Proxy member member1 on Tower's agent: its Cluster with a tunnel that reaches the member, which runs cluster-agent. */
  function putTowerMember(): void {
    const cluster = proxyCluster('member1')
    ;(cluster.spec as {connection: Record<string, unknown>}).connection.kubeconfig = reachesMember()
    clusters.host.put(restPath(cluster), cluster)
    clusters.member.put(agentPath, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: {name: 'cluster-agent', namespace: 'kubesphere-system'},
      spec: {replicas: 2, template: {spec: {containers: [{name: 'agent', command: ['/agent']}]}}},
    })
  }

  /**
   * Clusters on the host that are not proxy members (isProxyCluster): direct connections and proxy Clusters outside
   * the federation (joinFederation false), each with a kubeconfig that reaches the member and without one. ksctl's
   * proxy serves none of them, so a migration to it must neither move nor skip them: they are not its business.
   */
  function putNonProxyClusters(): void {
    for (const [kind, options] of [
      ['direct', {type: 'direct'}],
      ['unfederated', {joinFederation: false}],
    ] as const) {
      for (const connected of [true, false]) {
        const cluster = proxyCluster(`${kind}-${connected ? 'connected' : 'fresh'}`, options)
        if (connected)
          (cluster.spec as {connection: Record<string, unknown>}).connection.kubeconfig = reachesMember()
        clusters.host.put(restPath(cluster), cluster)
      }
    }
  }

  it('a dry run plans each member through its tunnel with server dry runs, and switches and writes nothing', async () => {
    putTowerMember()
    let switched = false
    const report = await migrateMembersToKsctlAgent(host(), {
      dryRun: true,
      switchProxy: () => {
        switched = true
        return Promise.resolve()
      },
      say: () => undefined,
    })
    assert.equal(switched, false)
    assert.deepEqual(
      {switched: report.switched, outcomes: report.members.map((member) => [member.name, member.outcome])},
      {switched: false, outcomes: [['member1', 'planned']]},
    )
    const planned = report.members[0]?.changes ?? []
    assert.ok(planned.some((change) => change.summary === 'create Deployment ksctl-tower-agent'))
    assert.ok(planned.every((change) => change.context === "cluster member1 (Tower's tunnel)"))
    assert.ok(!JSON.stringify(report).includes(AGENT_TOKEN), 'the token only as a fingerprint')
    assert.ok(clusters.member.writes().length > 0)
    assert.ok(clusters.member.writes().every((write) => write.dryRun))
    assert.deepEqual(clusters.host.writes(), [])
    assert.equal(
      clusters.member.get('/apis/apps/v1/namespaces/kubesphere-system/deployments/ksctl-tower-agent'),
      undefined,
    )
  })

  it('a host without proxy members switches at once', async () => {
    let switched = 0
    const report = await migrateMembersToKsctlAgent(host(), {
      switchProxy: () => {
        switched++
        return Promise.resolve()
      },
      say: () => undefined,
    })
    assert.equal(switched, 1)
    assert.deepEqual(report, {from: 'tower', to: 'ksctl', switched: true, members: []})
  })

  it('plans only the proxy members: a direct Cluster and one outside the federation are neither planned nor skipped', async () => {
    putTowerMember()
    putNonProxyClusters()
    const report = await migrateMembersToKsctlAgent(host(), {
      dryRun: true,
      switchProxy: () => Promise.reject(new Error('a dry run switches nothing')),
      say: () => undefined,
    })
    assert.deepEqual(
      report.members.map((member) => [member.name, member.outcome]),
      [['member1', 'planned']],
    )
    assert.ok(
      report.members[0]?.changes.every((change) => change.context === "cluster member1 (Tower's tunnel)"),
    )
  })

  it('leaves a host whose Clusters are all direct or outside the federation untouched: nothing moved or skipped, switched at once', async () => {
    putNonProxyClusters()
    let switched = 0
    const report = await migrateMembersToKsctlAgent(host(), {
      switchProxy: () => {
        switched++
        return Promise.resolve()
      },
      // Were one of them taken for a member, its new agent would not connect: fail fast rather than wait 5 minutes.
      connectTimeoutMs: 1000,
      say: () => undefined,
    })
    assert.equal(switched, 1)
    assert.deepEqual(report, {from: 'tower', to: 'ksctl', switched: true, members: []})
    assert.deepEqual(clusters.member.writes(), [], 'nothing was written through their kubeconfigs')
    assert.deepEqual(clusters.host.writes(), [])
  })
})
