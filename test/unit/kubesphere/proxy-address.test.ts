import assert from 'node:assert/strict'

import {ClusterClients} from '../../../src/k8s/clients.js'
import {setProxyAddress, type AddressChoice} from '../../../src/kubesphere/proxy-address.js'
import {TOWER_NODE_PORT} from '../../../src/kubesphere-standin/fixtures.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'

const installerPath =
  '/apis/installer.kubesphere.io/v1alpha1/namespaces/kubesphere-system/clusterconfigurations/ks-installer'

function node(name: string, addresses: {type: string; address: string}[]) {
  return {apiVersion: 'v1', kind: 'Node', metadata: {name}, status: {addresses}}
}

describe('proxy address: choosing and reloading', () => {
  let clusters: FakeClusters

  beforeEach(async () => {
    clusters = await startFakeClusters()
  })

  afterEach(async () => {
    await clusters.stop()
  })

  const host = () => ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')

  it("offers the nodes' external addresses first, then internal ones, each with the tower NodePort", async () => {
    seedFake(clusters.host, 'ks41-host')
    clusters.host.put(
      '/api/v1/nodes/node-a',
      node('node-a', [
        {type: 'InternalIP', address: '10.1.0.1'},
        {type: 'ExternalIP', address: '203.0.113.1'},
      ]),
    )
    clusters.host.put(
      '/api/v1/nodes/node-b',
      node('node-b', [
        {type: 'InternalIP', address: 'fd00::2'},
        {type: 'Hostname', address: 'node-b'},
      ]),
    )
    let offered: AddressChoice[] = []
    const result = await setProxyAddress(host(), {
      restart: false,
      dryRun: 'client',
      choose: async (offer) => {
        offered = offer.choices
        return offer.choices[0]?.value ?? ''
      },
    })
    assert.deepEqual(offered, [
      {name: 'node-a ExternalIP 203.0.113.1', value: `http://203.0.113.1:${TOWER_NODE_PORT}`},
      {name: 'node-a InternalIP 10.1.0.1', value: `http://10.1.0.1:${TOWER_NODE_PORT}`},
      {name: 'node-b InternalIP fd00::2', value: `http://[fd00::2]:${TOWER_NODE_PORT}`},
    ])
    assert.equal(result.source, 'chosen')
    assert.equal(result.address, `http://203.0.113.1:${TOWER_NODE_PORT}`)
  })

  for (const [version, restarted] of [
    ['v3.2.1', ['ks-apiserver']],
    ['v3.3.2', []],
  ] as const) {
    it(`restarts ks-apiserver on ${version} only where it does not reload its configuration`, async () => {
      seedFake(clusters.host, 'ks34-host')
      const installer = clusters.host.get(installerPath)!
      clusters.host.put(installerPath, {
        ...installer,
        status: {...(installer.status as object), core: {status: 'enabled', version}},
      })
      const result = await setProxyAddress(host(), {
        address: 'http://203.0.113.1:30721',
        restart: true,
        dryRun: false,
        choose: () => Promise.reject(new Error('not asked')),
      })
      assert.deepEqual(result.restarted, restarted)
    })
  }
})
