import assert from 'node:assert/strict'

import {ClusterClients} from '../../../src/k8s/clients.js'
import {HOST_TOKEN, MEMBER_TOKEN, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'

describe('two contexts in one kubeconfig', () => {
  let clusters: FakeClusters

  beforeEach(async () => {
    clusters = await startFakeClusters()
    for (const fake of [clusters.host, clusters.member]) {
      fake.put('/api/v1/namespaces/kube-system', {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: {name: 'kube-system', uid: `${fake.name}-uid`},
      })
    }
  })

  afterEach(async () => {
    await clusters.stop()
  })

  it('sends every member request to the member server with the member credentials, interleaved with host requests', async () => {
    const clients = ClusterClients.load({kubeconfig: clusters.kubeconfigPath})
    const host = clients.forContext('host')
    const member = clients.forContext('member')
    const answers = await Promise.all([
      member.findNamespace('kube-system'),
      host.findNamespace('kube-system'),
      member.findNamespace('kube-system'),
      host.version(),
      member.version(),
    ])
    assert.equal(answers[0]?.metadata?.uid, 'member-uid')
    assert.equal(answers[1]?.metadata?.uid, 'host-uid')
    assert.equal(answers[2]?.metadata?.uid, 'member-uid')
    assert.equal(clusters.member.requests.length, 3)
    assert.equal(clusters.host.requests.length, 2)
    assert.ok(clusters.member.requests.every((request) => request.authorization === `Bearer ${MEMBER_TOKEN}`))
    assert.ok(clusters.host.requests.every((request) => request.authorization === `Bearer ${HOST_TOKEN}`))
  })

  it('gives the current context when none is named, and the same client for the same context', () => {
    const clients = ClusterClients.load({kubeconfig: clusters.kubeconfigPath})
    assert.equal(clients.forContext(undefined).context, 'host')
    assert.equal(clients.forContext('member'), clients.forContext('member'))
    assert.equal(clients.forContext('member').server, clusters.member.url)
  })
})
