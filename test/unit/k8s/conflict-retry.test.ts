import assert from 'node:assert/strict'

import {ClusterClients} from '../../../src/k8s/clients.js'
import {retryOnConflict} from '../../../src/k8s/conflict-retry.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'

describe('updates with optimistic concurrency', () => {
  let clusters: FakeClusters
  const path = '/api/v1/namespaces/kubesphere-system/configmaps/kubesphere-config'

  beforeEach(async () => {
    clusters = await startFakeClusters()
    seedFake(clusters.host, 'ks34-host')
  })

  afterEach(async () => {
    await clusters.stop()
  })

  it('re-reads and writes again when someone else wrote in between, keeping their change', async () => {
    const client = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
    let interfered = false
    await retryOnConflict(async () => {
      const current = await client.findConfigMap('kubesphere-system', 'kubesphere-config')
      if (current === undefined) throw new Error('fixture missing')
      if (!interfered) {
        interfered = true
        const stored = clusters.host.get(path)!
        clusters.host.put(path, {...stored, data: {...(stored.data as object), other: 'theirs'}})
      }
      current.data = {...current.data, mine: 'ours'}
      return client.replaceConfigMap(current)
    })
    const data = clusters.host.get(path)?.data as Record<string, string>
    assert.equal(data.mine, 'ours')
    assert.equal(data.other, 'theirs')
    assert.equal(clusters.host.requests.filter((request) => request.method === 'PUT').length, 2)
  })

  it('gives up after a bounded number of conflicts with a conflict error naming the object', async () => {
    const client = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
    clusters.host.failNext('PUT', /kubesphere-config$/, 409, 'the object has been modified', 10)
    await assert.rejects(
      retryOnConflict(async () => {
        const current = await client.findConfigMap('kubesphere-system', 'kubesphere-config')
        return client.replaceConfigMap(current!)
      }, 3),
      /conflict on configmaps kubesphere-system\/kubesphere-config in context "host"/,
    )
    assert.equal(clusters.host.requests.filter((request) => request.method === 'PUT').length, 3)
  })
})
