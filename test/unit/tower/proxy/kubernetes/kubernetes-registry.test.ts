import assert from 'node:assert/strict'
import {X509Certificate} from 'node:crypto'

import {dump, load} from 'js-yaml'

import {ClusterClients} from '../../../../../src/k8s/clients.js'
import {Logger} from '../../../../../src/log.js'
import {
  createCertificateAuthority,
  issueCertificate,
  issuedBy,
  type CertificateAndKey,
} from '../../../../../src/pki/certificates.js'
import {assignClusters} from '../../../../../src/tower/proxy/kubernetes/cluster-reconcile.js'
import {KubernetesClusterRegistry} from '../../../../../src/tower/proxy/kubernetes/kubernetes-registry.js'
import {loadOrCreateProxyCa} from '../../../../../src/tower/proxy/kubernetes/proxy-ca.js'
import {SecretServingKeyStore} from '../../../../../src/tower/proxy/kubernetes/serving-secret.js'
import {CurrentCa} from '../../../../../src/tower/proxy/current-ca.js'
import {certificateClaims} from '../../../../../src/tower/proxy/client-binding.js'
import {KUBESPHERE_IDENTITY} from '../../../../../src/tower/shared/identity.js'
import type {KubeSphereCluster} from '../../../../../src/kubesphere/cluster-object.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../../../helpers/fake-clusters.js'

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
    const {assignments, unassigned} = assignClusters(many, undefined, () => 't')
    const ports = assignments.map((a) => a.kubernetesPort)
    assert.equal(new Set(ports).size, 202)
    assert.deepEqual(unassigned, [])
    assert.equal(assignments.find((a) => a.name === 'aa-first')?.kubernetesPort, 6000)
    assert.notEqual(assignments.find((a) => a.name === 'zz-dup')?.kubernetesPort, 6000)
  })

  it('serves the Clusters that got a port when the range is full, and names the others', () => {
    const three = ['a', 'b', 'c'].map((name) => cluster(name)) as KubeSphereCluster[]
    const {assignments, unassigned} = assignClusters(three, {first: 7000, last: 7001}, () => 't')
    assert.deepEqual(
      assignments.map((a) => [a.name, a.kubernetesPort, a.kubespherePort]),
      [
        ['a', 7000, 17000],
        ['b', 7001, 17001],
      ],
    )
    assert.deepEqual(unassigned, ['c'])
  })

  it('reconciles each Cluster on its own: a refused write or no free port gets a Warning Event on that Cluster, the others are served, and the next pass retries', async () => {
    const client = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
    const oneFreePort = new KubernetesClusterRegistry(client, {
      ca,
      kubeconfigValidityDays: 365,
      resyncMs: 60_000,
      portRange: {first: 6100, last: 6101},
      log: new Logger('debug', 'text', {write: (line) => logged.push(line)}),
    })
    try {
      // `held` already has its token and port: it is served even while its writes fail.
      clusters.host.put(
        clusterPath('held'),
        cluster('held', {
          joinFederation: true,
          connection: {type: 'proxy', token: 'h'.repeat(64), kubernetesAPIServerPort: 6100},
        }),
      )
      for (const name of ['member1', 'member2']) clusters.host.put(clusterPath(name), cluster(name))
      clusters.host.failNext(
        'PATCH',
        /\/clusters\/held$/,
        403,
        'clusters "held" is forbidden: refused by a test',
      )
      await oneFreePort.start()
      assert.deepEqual(
        oneFreePort.list().map((c) => [c.name, c.kubernetesPort]),
        [
          ['held', 6100],
          ['member1', 6101],
        ],
      )
      assert.match(stored('member1').spec?.connection?.token ?? '', /^[0-9a-f]{64}$/)
      const events = clusters.host
        .writes()
        .filter((write) => write.path === '/api/v1/namespaces/default/events')
        .map(
          (write) =>
            write.body as {
              involvedObject: {kind: string; name: string}
              reason: string
              type: string
              message: string
            },
        )
      assert.deepEqual(
        events.map((event) => [
          event.involvedObject.kind,
          event.involvedObject.name,
          event.type,
          event.reason,
        ]),
        [
          ['Cluster', 'held', 'Warning', 'ReconcileFailed'],
          ['Cluster', 'member2', 'Warning', 'NoFreePort'],
        ],
      )
      assert.match(events[0]?.message ?? '', /refused by a test/)
      assert.match(events[1]?.message ?? '', /no free port in 6100-6101/)
      assert.ok(!logged.join('').includes('h'.repeat(64)), 'the token is never logged')

      await oneFreePort.reconcile()
      assert.equal(stored('held').status?.conditions?.find((c) => c.type === 'Initialized')?.status, 'True')
    } finally {
      await oneFreePort.close()
    }
  })

  it('writes a Cluster again when it changed since it was listed (conflict), keeping a token set meanwhile', async () => {
    clusters.host.put(clusterPath('member1'), cluster('member1'))
    clusters.host.failNext('PATCH', /\/clusters\/member1$/, 409, 'the object has been modified')
    await registry.reconcile()
    assert.equal(stored('member1').status?.conditions?.find((c) => c.type === 'Initialized')?.status, 'True')
    assert.equal(registry.get('member1')?.token, stored('member1').spec?.connection?.token)
  })

  it('waits out HTTP 429 on the first list, as right after the Cluster CRD is created, with backoff', async () => {
    const client = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
    const waits: number[] = []
    const patient = new KubernetesClusterRegistry(client, {
      ca,
      kubeconfigValidityDays: 365,
      resyncMs: 60_000,
      log: new Logger('debug', 'text', {write: (line) => logged.push(line)}),
      sleep: (ms) => {
        waits.push(ms)
        return Promise.resolve()
      },
    })
    try {
      clusters.host.put(clusterPath('member1'), cluster('member1'))
      clusters.host.failNext('GET', /\/clusters$/, 429, 'storage is (re)initializing', 3)
      await patient.start()
      assert.equal(waits.length, 3)
      assert.ok(waits.every((ms) => ms > 0 && ms <= 30_000))
      assert.deepEqual(
        patient.list().map((c) => c.name),
        ['member1'],
      )
      assert.match(logged.join(''), /cannot list the Clusters yet; retrying/)
    } finally {
      await patient.close()
    }
  })

  it('fails at once on a failure that waiting cannot fix (forbidden)', async () => {
    clusters.host.failNext('GET', /\/clusters$/, 403, 'clusters is forbidden')
    await assert.rejects(registry.start(), /forbidden/)
  })

  it("points Service mc-NAME at ksctl's proxy pods: Tower's Service is taken over, and one of ksctl's that selects other pods is applied again", async () => {
    const towerSelector = {app: 'tower', 'app.kubernetes.io/name': 'tower'}
    const ports = (port: number) => [
      {name: 'kubernetes', protocol: 'TCP', port: 6443, targetPort: port},
      {name: 'kubesphere', protocol: 'TCP', port: 80, targetPort: port + 10000},
    ]
    const proxyCluster = (name: string) =>
      cluster(name, {
        joinFederation: true,
        connection: {type: 'proxy', kubernetesAPIServerPort: 6000 + name.length},
      })
    // As Tower leaves it: its labels, its pods.
    clusters.host.put(clusterPath('tower1'), proxyCluster('tower1'))
    clusters.host.put(servicePath('tower1'), {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: {name: 'mc-tower1', namespace: 'kubesphere-system', labels: {app: 'mc-tower1'}},
      spec: {selector: towerSelector, ports: ports(6006), clusterIP: '10.96.0.11'},
    })
    // As an older ksctl left it: ksctl's labels and the right ports, but Tower's pods.
    clusters.host.put(clusterPath('ksctl01'), proxyCluster('ksctl01'))
    clusters.host.put(servicePath('ksctl01'), {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: {
        name: 'mc-ksctl01',
        namespace: 'kubesphere-system',
        labels: {'app.kubernetes.io/managed-by': 'ksctl-tower', 'ksctl.io/cluster': 'ksctl01'},
      },
      spec: {selector: towerSelector, ports: ports(6007), clusterIP: '10.96.0.12'},
    })
    await registry.reconcile()
    for (const name of ['tower1', 'ksctl01']) {
      const spec = clusters.host.get(servicePath(name))?.spec as {selector: Record<string, string>}
      assert.equal(spec.selector['app.kubernetes.io/name'], 'ksctl-tower-proxy', name)
    }
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
    registry.agentConnected('member1', {sessions: 1, servingOnNextToken: 0, servingOnOtherTokens: 1})
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
    assert.deepEqual(certificateClaims(certificate.toLegacyObject()), {
      identity: KUBESPHERE_IDENTITY,
      boundCluster: 'member1',
    })
    const days = (Date.parse(certificate.validTo) - Date.parse(certificate.validFrom)) / 86_400_000
    assert.ok(days > 364 && days < 366, `valid for ${String(days)} days, not ten years`)

    registry.agentDisconnected('member1', {sessions: 0, servingOnNextToken: 0, servingOnOtherTokens: 0})
    await registry.close()
    const gone = stored('member1').status?.conditions?.find((c) => c.type === 'AgentAvailable')
    assert.deepEqual([gone?.status, gone?.message], ['False', 'Agent has not connected to proxy.'])
  })

  it("issues again a Cluster's kubeconfig that is not bound to its cluster (one issued before the binding)", async () => {
    clusters.host.put(clusterPath('member1'), cluster('member1'))
    await registry.reconcile()
    const server = stored('member1').spec?.connection?.kubernetesAPIEndpoint ?? ''
    const unbound = await issueCertificate(ca, {commonName: 'ksctl-tower-client', usage: 'client'})
    const before = dump({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'member1',
          cluster: {server, 'certificate-authority-data': Buffer.from(ca.certPem).toString('base64')},
        },
      ],
      users: [
        {name: 'u', user: {'client-certificate-data': Buffer.from(unbound.certPem).toString('base64')}},
      ],
      contexts: [{name: 'member1', context: {cluster: 'member1', user: 'u'}}],
      'current-context': 'member1',
    })
    const raw = clusters.host.get(clusterPath('member1'))
    assert.ok(raw !== undefined)
    const spec = raw.spec as {connection: Record<string, unknown>}
    clusters.host.put(clusterPath('member1'), {
      ...raw,
      spec: {...spec, connection: {...spec.connection, kubeconfig: Buffer.from(before).toString('base64')}},
    })
    registry.agentConnected('member1', {sessions: 1, servingOnNextToken: 0, servingOnOtherTokens: 1})
    await registry.close()
    await registry.reconcile()
    const document = load(
      Buffer.from(stored('member1').spec?.connection?.kubeconfig ?? '', 'base64').toString(),
    ) as {users: {user: {'client-certificate-data': string}}[]}
    const renewed = new X509Certificate(
      Buffer.from(document.users[0]?.user['client-certificate-data'] ?? '', 'base64'),
    )
    assert.equal(certificateClaims(renewed.toLegacyObject()).boundCluster, 'member1')
    assert.match(logged.join(''), /issued the kubeconfig of a cluster again.*not bound to its cluster/)
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

  it("issues the Cluster's kubeconfig again at two thirds of its validity and after a CA rotation (read from its source on each pass), and names Service mc-NAME for the serving certificates", async () => {
    const client = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
    let now = new Date()
    let inSecret = ca
    const renewing = new KubernetesClusterRegistry(client, {
      ca: new CurrentCa(ca, () => Promise.resolve(inSecret)),
      kubeconfigValidityDays: 30,
      resyncMs: 60_000,
      log: new Logger('debug', 'text', {write: (line) => logged.push(line)}),
      now: () => now,
    })
    const kubeconfigOf = () => {
      const text = Buffer.from(stored('member1').spec?.connection?.kubeconfig ?? '', 'base64').toString()
      const document = load(text) as {
        clusters: {cluster: {'certificate-authority-data': string}}[]
        users: {user: {'client-certificate-data': string}}[]
      }
      return {
        text,
        caPem: Buffer.from(
          document.clusters[0]?.cluster['certificate-authority-data'] ?? '',
          'base64',
        ).toString(),
        client: Buffer.from(document.users[0]?.user['client-certificate-data'] ?? '', 'base64').toString(),
      }
    }
    try {
      clusters.host.put(clusterPath('member1'), cluster('member1'))
      await renewing.reconcile()
      const clusterIp = (clusters.host.get(servicePath('member1'))?.spec as {clusterIP: string}).clusterIP
      assert.deepEqual(renewing.get('member1')?.serverNames, [
        clusterIp,
        'mc-member1',
        'mc-member1.kubesphere-system',
        'mc-member1.kubesphere-system.svc',
        'mc-member1.kubesphere-system.svc.cluster.local',
      ])
      renewing.agentConnected('member1', {sessions: 1, servingOnNextToken: 0, servingOnOtherTokens: 1})
      await renewing.close()
      const first = kubeconfigOf()

      await renewing.reconcile()
      assert.equal(kubeconfigOf().text, first.text, 'a kubeconfig not yet due is kept')

      now = new Date(Date.now() + 21 * 86_400_000)
      // Without an agent KubeSphere's Cluster webhook would refuse the write (it tries the kubeconfig): it waits.
      renewing.agentDisconnected('member1', {sessions: 0, servingOnNextToken: 0, servingOnOtherTokens: 0})
      await renewing.close()
      await renewing.reconcile()
      assert.equal(kubeconfigOf().text, first.text, 'not renewed while no agent is connected')
      renewing.agentConnected('member1', {sessions: 1, servingOnNextToken: 0, servingOnOtherTokens: 1})
      await renewing.close()
      await renewing.reconcile()
      const renewed = kubeconfigOf()
      assert.notEqual(renewed.client, first.client)
      assert.ok(issuedBy(renewed.client, ca.certPem))
      assert.match(
        logged.join(''),
        /issued the kubeconfig of a cluster again.*two thirds of its validity have passed/,
      )

      now = new Date()
      inSecret = await createCertificateAuthority({commonName: 'test-tower-ca-rotated', validityDays: 2})
      await renewing.reconcile()
      const rotated = kubeconfigOf()
      assert.equal(rotated.caPem, inSecret.certPem)
      assert.ok(issuedBy(rotated.client, inSecret.certPem))
      assert.match(logged.join(''), /the proxy CA changed/)
      const writes = clusters.host.writes().length
      await renewing.reconcile()
      assert.equal(clusters.host.writes().length, writes, 'nothing is written once all is current')
    } finally {
      await renewing.close()
    }
  })

  it('keeps the serving key in Secret ksctl-tower-serving: the first written wins a race, and a Secret without a key is refused', async () => {
    const client = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
    const store = new SecretServingKeyStore(client, 'kubesphere-system')
    const mine = {certPem: 'c1', keyPem: 'k1'}
    const theirs = {certPem: 'c2', keyPem: 'k2'}
    assert.equal(await store.load(), undefined)
    assert.deepEqual(await store.create(mine), mine)
    // Another replica that lost the race gets the first one.
    assert.deepEqual(await new SecretServingKeyStore(client, 'kubesphere-system').create(theirs), mine)
    const secretPath = '/api/v1/namespaces/kubesphere-system/secrets/ksctl-tower-serving'
    assert.equal(clusters.host.get(secretPath)?.type, 'kubernetes.io/tls')
    await store.update({certPem: 'c1-renewed', keyPem: 'k1'})
    assert.deepEqual(await store.load(), {certPem: 'c1-renewed', keyPem: 'k1'})

    clusters.host.put(secretPath, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {name: 'ksctl-tower-serving', namespace: 'kubesphere-system'},
      type: 'kubernetes.io/tls',
      data: {'tls.crt': Buffer.from('c').toString('base64')},
    })
    await assert.rejects(
      store.load(),
      /secret kubesphere-system\/ksctl-tower-serving has no tls.key: delete it/,
    )
  })
})
