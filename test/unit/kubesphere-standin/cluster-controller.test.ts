import assert from 'node:assert/strict'

import {KubeConfig} from '@kubernetes/client-node'

import {ClusterClients} from '../../../src/k8s/clients.js'
import type {KubeSphereCluster} from '../../../src/kubesphere/cluster-object.js'
import {ClusterControllerStandIn} from '../../../src/kubesphere-standin/cluster-controller.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'

const CLUSTER_PATH = '/apis/cluster.kubesphere.io/v1alpha1/clusters/member1'

function memberCluster(conditions: {type: string; status: string}[] = []) {
  return {
    apiVersion: 'cluster.kubesphere.io/v1alpha1',
    kind: 'Cluster',
    metadata: {name: 'member1'},
    spec: {joinFederation: true, connection: {type: 'proxy'}},
    status: {conditions},
  }
}

/** A route nowhere: port 9 (discard) on loopback refuses the connection at once. */
function unreachable(): KubeConfig {
  const config = new KubeConfig()
  config.loadFromOptions({
    clusters: [{name: 'nowhere', server: 'https://127.0.0.1:9', skipTLSVerify: true}],
    users: [{name: 'nobody'}],
    contexts: [{name: 'nowhere', cluster: 'nowhere', user: 'nobody'}],
    currentContext: 'nowhere',
  })
  return config
}

describe("the host's cluster controller (stand-in)", function () {
  let fakes: FakeClusters

  beforeEach(async () => {
    fakes = await startFakeClusters()
    seedFake(fakes.host, 'ks34-host')
    seedFake(fakes.member, 'plain')
  })

  afterEach(async () => {
    await fakes.stop()
  })

  it('marks Ready only from a request that reached the member, and retries at once when the Cluster is updated', async () => {
    const clients = ClusterClients.load({kubeconfig: fakes.kubeconfigPath})
    let reachable = false
    const controller = new ClusterControllerStandIn(clients.forContext('host'), {
      route: () => (reachable ? clients.forContext('member').config : unreachable()),
      requestTimeoutMs: 2000,
    })
    fakes.host.put(CLUSTER_PATH, memberCluster())
    const ready = () =>
      (fakes.host.get(CLUSTER_PATH) as KubeSphereCluster | undefined)?.status?.conditions?.find(
        (condition) => condition.type === 'Ready',
      )

    await controller.pass()
    assert.equal(ready(), undefined, 'Ready without an answer from the member')

    // The member answers now, but the Cluster is as it was: the failed try's backoff holds.
    reachable = true
    await controller.pass()
    assert.equal(ready(), undefined, 'retried before its backoff with nothing changed')

    // The tower proxy reports the agent: an update of the Cluster, which requeues it at once.
    fakes.host.put(CLUSTER_PATH, memberCluster([{type: 'AgentAvailable', status: 'True'}]))
    await controller.pass()
    assert.equal(ready()?.status, 'True')
    const status = (fakes.host.get(CLUSTER_PATH) as KubeSphereCluster).status as {uid?: string}
    assert.equal(status.uid, 'member-kube-system-uid', "the member's kube-system uid, read through the route")
  })
})
