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

  it('a dry run plans each member through its tunnel with server dry runs, and switches and writes nothing', async () => {
    // The member's tunnel: a kubeconfig that reaches it (the fake member), as Tower's would.
    const tunnel = kubeconfigYaml(
      {member: [clusters.member.url, MEMBER_TOKEN]},
      clusters.member.caPem,
      'member',
    )
    const cluster = proxyCluster('member1')
    ;(cluster.spec as {connection: Record<string, unknown>}).connection.kubeconfig =
      Buffer.from(tunnel).toString('base64')
    clusters.host.put(restPath(cluster), cluster)
    clusters.member.put(agentPath, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: {name: 'cluster-agent', namespace: 'kubesphere-system'},
      spec: {replicas: 2, template: {spec: {containers: [{name: 'agent', command: ['/agent']}]}}},
    })
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
})
