import assert from 'node:assert/strict'

import {ClusterClients} from '../../src/k8s/clients.js'
import {ClusterResource} from '../../src/k8s/resources.js'
import type {KubeSphereCluster} from '../../src/kubesphere/cluster-object.js'
import {Logger} from '../../src/log.js'
import {createCertificateAuthority} from '../../src/pki/certificates.js'
import {KubernetesClusterRegistry} from '../../src/tower/kubernetes-registry.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {testBed} from './hooks.js'

const COUNT = 200

describe('tower proxy, Kubernetes mode, against the real host apiserver', function () {
  this.timeout(240_000)

  it('initializes two hundred proxy Clusters with distinct ports and Services, and removes the Service of a deleted one', async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks41-host')
    const host = ClusterClients.load({kubeconfig: testBed().kubeconfigPath}).forContext('host')
    const names = Array.from({length: COUNT}, (_, i) => `member-${String(i).padStart(3, '0')}`)
    for (const name of names) {
      await host.createCustomObject(ClusterResource, {
        apiVersion: 'cluster.kubesphere.io/v1alpha1',
        kind: 'Cluster',
        metadata: {name},
        spec: {joinFederation: true, connection: {type: 'proxy'}},
      })
    }
    const registry = new KubernetesClusterRegistry(host, {
      ca: await createCertificateAuthority({commonName: 'test-tower-ca', validityDays: 2}),
      kubeconfigValidityDays: 365,
      resyncMs: 60_000,
      log: new Logger('error'),
    })
    try {
      await registry.reconcile()
      const clusters = (await host.listCustomObjects<KubeSphereCluster>(ClusterResource)).filter((c) =>
        c.metadata?.name?.startsWith('member-'),
      )
      assert.equal(clusters.length, COUNT)
      const ports = clusters.map(
        (c) => (c.spec?.connection as {kubernetesAPIServerPort?: number}).kubernetesAPIServerPort,
      )
      assert.equal(new Set(ports).size, COUNT)
      for (const cluster of clusters) {
        assert.match(cluster.spec?.connection?.token ?? '', /^[0-9a-f]{64}$/)
        assert.match(cluster.spec?.connection?.kubernetesAPIEndpoint ?? '', /^https:\/\/10\.0\.0\.\d+:6443$/)
        assert.equal(cluster.status?.conditions?.find((c) => c.type === 'Initialized')?.status, 'True')
      }
      const services = await host.listServices(
        'kubesphere-system',
        'app.kubernetes.io/managed-by=ksctl-tower',
      )
      assert.equal(services.length, COUNT)

      await host.deleteCustomObject(ClusterResource, 'member-007')
      await registry.reconcile()
      const apis = adminApis(testBed().kubeconfigPath, 'host')
      await assert.rejects(
        apis.core.readNamespacedService({name: 'mc-member-007', namespace: 'kubesphere-system'}),
      )
      assert.equal(registry.list().length, COUNT - 1)
    } finally {
      await registry.close()
    }
  })
})
