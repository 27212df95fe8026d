import assert from 'node:assert/strict'
import {X509Certificate} from 'node:crypto'

import {load} from 'js-yaml'

import {ClusterClients} from '../../../src/k8s/clients.js'
import {Logger} from '../../../src/log.js'
import {createCertificateAuthority, type CertificateAndKey} from '../../../src/pki/certificates.js'
import {assignClusters} from '../../../src/tower/cluster-reconcile.js'
import {KubernetesClusterRegistry} from '../../../src/tower/kubernetes-registry.js'
import {loadOrCreateProxyCa} from '../../../src/tower/proxy-ca.js'
import type {KubeSphereCluster} from '../../../src/kubesphere/cluster-object.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'

const clusterPath = (name: string) => `/apis/cluster.kubesphere.io/v1alpha1/clusters/${name}`
const servicePath = (name: string) => `/api/v1/namespaces/kubesphere-system/services/mc-${name}`

function cluster(
  name: string,
  spec: Record<string, unknown> = {joinFederation: true, connection: {type: 'proxy'}},
) {
  return {apiVersion: 'cluster.kubesphere.io/v1alpha1', kind: 'Cluster', metadata: {name}, spec}
}

describe('tower proxy, Kubernetes mode: the Cluster registry', () => {
  let clusters: FakeClusters
  let ca: CertificateAndKey
  let logged: string[]
  let registry: KubernetesClusterRegistry

  before(async () => {
    ca = await createCertificateAuthority({commonName: 'test-tower-ca', validityDays: 2})
  })

  beforeEach(async () => {
    clusters = await startFakeClusters()
    seedFake(clusters.host, 'ks41-host')
    logged = []
    const client = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
    registry = new KubernetesClusterRegistry(client, {
      ca,
      kubeconfigValidityDays: 365,
      resyncMs: 60_000,
      log: new Logger('debug', 'text', {write: (line) => logged.push(line)}),
      now: () => new Date('2026-11-21T10:00:00Z'),
    })
  })

  afterEach(async () => {
    await registry.close()
    await clusters.stop()
  })

  const stored = (name: string) => clusters.host.get(clusterPath(name)) as unknown as KubeSphereCluster

  it('gives a proxy Cluster a token, ports, Service mc-NAME, its endpoints and Initialized, and ignores the others', async () => {
    clusters.host.put(clusterPath('member1'), cluster('member1'))
    clusters.host.put(
      clusterPath('direct1'),
      cluster('direct1', {joinFederation: true, connection: {type: 'direct'}}),
    )
    clusters.host.put(
      clusterPath('unfederated'),
      cluster('unfederated', {joinFederation: false, connection: {type: 'proxy'}}),
    )
    await registry.reconcile()
    const connection = stored('member1').spec?.connection as Record<string, unknown>
    assert.match(connection.token as string, /^[0-9a-f]{64}$/)
    assert.equal(connection.kubernetesAPIServerPort, 6000)
    assert.equal(connection.kubesphereAPIServerPort, 16000)
    const service = clusters.host.get(servicePath('member1'))!
    const clusterIp = (service.spec as {clusterIP: string}).clusterIP
    assert.equal(connection.kubernetesAPIEndpoint, `https://${clusterIp}:6443`)
    assert.equal(connection.kubesphereAPIEndpoint, `http://${clusterIp}:80`)
    assert.deepEqual((service.spec as {ports: unknown}).ports, [
      {name: 'kubernetes', protocol: 'TCP', port: 6443, targetPort: 6000},
      {name: 'kubesphere', protocol: 'TCP', port: 80, targetPort: 16000},
    ])
    assert.equal(stored('member1').status?.conditions?.find((c) => c.type === 'Initialized')?.status, 'True')
    assert.deepEqual(
      registry.list().map((c) => c.name),
      ['member1'],
    )
    assert.equal(clusters.host.get(servicePath('direct1')), undefined)
    assert.ok(
      logged.every((line) => !line.includes(connection.token as string)),
      'the token is never logged',
    )
  })

  it('keeps a token that is set, and writes nothing on the next pass', async () => {
    clusters.host.put(
      clusterPath('member1'),
      cluster('member1', {joinFederation: true, connection: {type: 'proxy', token: 'a'.repeat(64)}}),
    )
    await registry.reconcile()
    assert.equal(stored('member1').spec?.connection?.token, 'a'.repeat(64))
    const writes = clusters.host.writes().length
    await registry.reconcile()
    assert.equal(clusters.host.writes().length, writes)
  })

  it('gives two hundred Clusters distinct ports, and moves a Cluster whose port another one holds', () => {
    const many = Array.from({length: 200}, (_, i) =>
      cluster(`c${String(i).padStart(3, '0')}`),
    ) as KubeSphereCluster[]
    many.push(
      cluster('zz-dup', {
        joinFederation: true,
        connection: {type: 'proxy', kubernetesAPIServerPort: 6000},
      }),
    )
    many.push(
      cluster('aa-first', {
        joinFederation: true,
        connection: {type: 'proxy', kubernetesAPIServerPort: 6000},
      }),
    )
    const assignments = assignClusters(many, () => 't')
    const ports = assignments.map((a) => a.kubernetesPort)
    assert.equal(new Set(ports).size, 202)
    assert.equal(assignments.find((a) => a.name === 'aa-first')?.kubernetesPort, 6000)
    assert.notEqual(assignments.find((a) => a.name === 'zz-dup')?.kubernetesPort, 6000)
  })

  it('removes the Service of a deleted Cluster and tells the proxy', async () => {
    clusters.host.put(clusterPath('member1'), cluster('member1'))
    await registry.reconcile()
    let changes = 0
    registry.onChange(() => changes++)
    clusters.host.delete(clusterPath('member1'))
    await registry.reconcile()
    assert.equal(clusters.host.get(servicePath('member1')), undefined)
    assert.equal(registry.get('member1'), undefined)
    assert.equal(changes, 1)
  })

  it('sets AgentAvailable from the sessions and gives the Cluster a kubeconfig signed by the proxy CA', async () => {
    clusters.host.put(clusterPath('member1'), cluster('member1'))
    await registry.reconcile()
    registry.agentConnected('member1', {sessions: 1})
    await registry.close()
    const connected = stored('member1')
    assert.equal(connected.status?.conditions?.find((c) => c.type === 'AgentAvailable')?.status, 'True')
    const kubeconfig = load(
      Buffer.from(connected.spec?.connection?.kubeconfig ?? '', 'base64').toString(),
    ) as {
      clusters: {cluster: {server: string}}[]
      users: {user: {'client-certificate-data': string}}[]
    }
    assert.equal(kubeconfig.clusters[0]?.cluster.server, connected.spec?.connection?.kubernetesAPIEndpoint)
    const certificate = new X509Certificate(
      Buffer.from(kubeconfig.users[0]?.user['client-certificate-data'] ?? '', 'base64'),
    )
    assert.ok(certificate.checkIssued(new X509Certificate(ca.certPem)))
    const days = (Date.parse(certificate.validTo) - Date.parse(certificate.validFrom)) / 86_400_000
    assert.ok(days > 364 && days < 366, `valid for ${String(days)} days, not ten years`)

    registry.agentDisconnected('member1', {sessions: 0})
    await registry.close()
    const gone = stored('member1').status?.conditions?.find((c) => c.type === 'AgentAvailable')
    assert.deepEqual([gone?.status, gone?.message], ['False', 'Agent has not connected to proxy.'])
  })

  it('stores a generated CA in a Secret on first start and reads the same one after', async () => {
    const client = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
    const log = new Logger('error')
    const first = await loadOrCreateProxyCa(client, 'kubesphere-system', log)
    const second = await loadOrCreateProxyCa(client, 'kubesphere-system', log)
    assert.equal(second.certPem, first.certPem)
    assert.equal(
      clusters.host.get('/api/v1/namespaces/kubesphere-system/secrets/ksctl-tower-ca')?.type,
      'kubernetes.io/tls',
    )
  })
})
