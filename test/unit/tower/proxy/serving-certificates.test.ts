import assert from 'node:assert/strict'
import {X509Certificate} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import http2 from 'node:http2'
import {isIP} from 'node:net'
import path from 'node:path'
import tls from 'node:tls'

import {ClusterClients} from '../../../../src/k8s/clients.js'
import {
  certificateFingerprint,
  createCertificateAuthority,
  issueCertificate,
  type CertificateAndKey,
} from '../../../../src/pki/certificates.js'
import {CurrentCa} from '../../../../src/tower/proxy/current-ca.js'
import {KubernetesClusterRegistry} from '../../../../src/tower/proxy/kubernetes/kubernetes-registry.js'
import {TowerProxy} from '../../../../src/tower/proxy/proxy.js'
import {FileServingKeyStore, servingKeyFile} from '../../../../src/tower/proxy/serving-key-store.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../../helpers/fake-clusters.js'
import {tempDir} from '../../../helpers/temp-dir.js'
import {freeClusterPorts} from '../../../testbed/http.js'
import {CapturedLog, until} from '../harness.js'

const clusterPath = (name: string) => `/apis/cluster.kubesphere.io/v1alpha1/clusters/${name}`

/** The certificate a TLS server at 127.0.0.1:port presents, verified against `caPem` for the name `as`. */
function presented(port: number, caPem: string, as: string): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ca: caPem,
      ...(isIP(as) === 0 && {servername: as}),
      checkServerIdentity: (_host, certificate) => tls.checkServerIdentity(as, certificate),
    })
    socket.once('secureConnect', () => {
      const certificate = socket.getPeerX509Certificate()
      socket.destroy()
      if (certificate === undefined) reject(new Error('no certificate'))
      else resolve(certificate)
    })
    socket.once('error', reject)
  })
}

async function eventually(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

describe('tower proxy: serving certificates that name every address and last', function () {
  let clusters: FakeClusters
  let ca: CertificateAndKey
  let log: CapturedLog
  const running: (TowerProxy | KubernetesClusterRegistry)[] = []
  const sessions: http2.ClientHttp2Session[] = []

  before(async () => {
    ca = await createCertificateAuthority({commonName: 'test-serving-ca', validityDays: 2})
  })

  beforeEach(async () => {
    clusters = await startFakeClusters()
    seedFake(clusters.host, 'ks41-host')
    log = new CapturedLog()
  })

  afterEach(async () => {
    for (const session of sessions.splice(0)) session.destroy()
    for (const closable of running.splice(0).reverse()) {
      await (closable instanceof TowerProxy ? closable.stop() : closable.close())
    }
    await clusters.stop()
  })

  async function startProxy(
    options: Partial<ConstructorParameters<typeof TowerProxy>[0]> = {},
  ): Promise<{proxy: TowerProxy; registry: KubernetesClusterRegistry}> {
    const client = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
    const registry = new KubernetesClusterRegistry(client, {
      ca: options.ca ?? ca,
      kubeconfigValidityDays: 1,
      resyncMs: 60_000,
      portRange: await freeClusterPorts(2),
      log: log.logger(),
    })
    running.push(registry)
    await registry.start()
    const proxy = new TowerProxy({
      registry,
      ca,
      listen: '127.0.0.1:0',
      agentTls: 'serving',
      frontEnd: '127.0.0.1:0',
      serverNames: ['tower.example.com'],
      log: log.logger(),
      ...options,
    })
    running.push(proxy)
    await proxy.start()
    return {proxy, registry}
  }

  /** An HTTP/2 connection to the path-routed front end, kept open across the changes a test makes. */
  async function openSession(
    port: number,
    caPem: string,
    client: {cert?: string; key?: string} = {},
  ): Promise<http2.ClientHttp2Session> {
    const session = http2.connect(`https://127.0.0.1:${port}`, {ca: caPem, ...client})
    sessions.push(session)
    session.on('error', () => undefined)
    await new Promise((resolve) => session.once('connect', resolve))
    return session
  }

  function status(session: http2.ClientHttp2Session): Promise<number> {
    return new Promise((resolve, reject) => {
      const stream = session.request({':path': '/clusters/member1/version'})
      stream.once('response', (headers) => resolve(Number(headers[':status'])))
      stream.once('error', reject)
      stream.resume()
      stream.end()
    })
  }

  it("gives a Cluster that appears later a port whose certificate names Service mc-NAME's ClusterIP and DNS names and the published names, while open connections carry on", async () => {
    const {proxy, registry} = await startProxy()
    const open = await openSession(proxy.frontEndPort, ca.certPem)

    clusters.host.put(clusterPath('member1'), {
      apiVersion: 'cluster.kubesphere.io/v1alpha1',
      kind: 'Cluster',
      metadata: {name: 'member1'},
      spec: {joinFederation: true, connection: {type: 'proxy'}},
    })
    await registry.reconcile()
    await until(() => proxy.clusterPorts('member1').kubernetes !== undefined)
    const port = proxy.clusterPorts('member1').kubernetes ?? 0
    const endpoint = new URL(
      (clusters.host.get(clusterPath('member1'))?.spec as {connection: {kubernetesAPIEndpoint: string}})
        .connection.kubernetesAPIEndpoint,
    )
    const clusterIp = endpoint.hostname
    assert.match(clusterIp, /^10\.0\.\d+\.\d+$/)
    const names = [
      clusterIp,
      'mc-member1',
      'mc-member1.kubesphere-system',
      'mc-member1.kubesphere-system.svc',
      'mc-member1.kubesphere-system.svc.cluster.local',
      'tower.example.com',
      'localhost',
      '127.0.0.1',
    ]
    for (const name of names) {
      const certificate = await presented(port, ca.certPem, name)
      assert.equal(certificateFingerprint(certificate.toString()), proxy.servingPin)
    }
    // The path-routed port and the agent listener name the published names only, with the same key.
    await presented(proxy.frontEndPort, ca.certPem, 'tower.example.com')
    await assert.rejects(presented(proxy.frontEndPort, ca.certPem, clusterIp), /IP: 10\.0\./)
    const agents = await presented(proxy.agentPort, ca.certPem, 'tower.example.com')
    assert.equal(certificateFingerprint(agents.toString()), proxy.servingPin)
    // The connection opened before is still served (401: it has no client certificate).
    assert.equal(await status(open), 401)
  })

  it('keeps the serving key in --state-dir: a proxy started again has the same pin', async () => {
    const dir = tempDir('ksctl-serving-')
    const first = await startProxy({servingKeyStore: new FileServingKeyStore(dir)})
    const pin = first.proxy.servingPin
    const key = await readFile(path.join(dir, servingKeyFile), 'utf8')
    await first.proxy.stop()

    const second = await startProxy({servingKeyStore: new FileServingKeyStore(dir)})
    assert.equal(second.proxy.servingPin, pin)
    const agents = await presented(second.proxy.agentPort, ca.certPem, 'localhost')
    assert.equal(certificateFingerprint(agents.toString()), pin)
    assert.equal(await readFile(path.join(dir, servingKeyFile), 'utf8'), key)
    assert.ok(!log.text.includes(key.split('\n')[1] ?? 'x'), 'the key is never logged')
  })

  it('issues the serving certificates again at two thirds of their validity, of the same key, while open connections carry on', async () => {
    const {proxy} = await startProxy({servingValidityMs: 3000})
    const open = await openSession(proxy.frontEndPort, ca.certPem)
    const before = await presented(proxy.frontEndPort, ca.certPem, 'localhost')
    const agentsBefore = await presented(proxy.agentPort, ca.certPem, 'localhost')
    await eventually(
      async () =>
        (await presented(proxy.frontEndPort, ca.certPem, 'localhost')).serialNumber !== before.serialNumber,
    )
    await eventually(
      async () =>
        (await presented(proxy.agentPort, ca.certPem, 'localhost')).serialNumber !==
        agentsBefore.serialNumber,
    )
    const after = await presented(proxy.frontEndPort, ca.certPem, 'localhost')
    assert.ok(after.validFromDate.getTime() >= before.validFromDate.getTime())
    assert.equal(certificateFingerprint(after.toString()), proxy.servingPin)
    assert.equal(await status(open), 401)
  })

  it('serves certificates of the new CA after a rotation, and trusts client certificates of the new CA only', async () => {
    const current = new CurrentCa(ca)
    const {proxy} = await startProxy({ca: current})
    const pin = proxy.servingPin
    const rotated = await createCertificateAuthority({commonName: 'test-serving-ca-2', validityDays: 2})
    // Once the replacement resolved, the proxy serves and trusts the new CA (a kubeconfig of it may be written).
    assert.equal(await current.replace(rotated), true)
    await presented(proxy.frontEndPort, rotated.certPem, 'localhost')
    await presented(proxy.agentPort, rotated.certPem, 'localhost')
    assert.equal(proxy.servingPin, pin)
    await assert.rejects(
      presented(proxy.frontEndPort, ca.certPem, 'localhost'),
      /self-signed|unable to verify|issuer/,
    )
    const asClientOf = async (issuer: CertificateAndKey) => {
      const client = await issueCertificate(issuer, {commonName: 'ksctl-admin', usage: 'client'})
      return status(
        await openSession(proxy.frontEndPort, rotated.certPem, {cert: client.certPem, key: client.keyPem}),
      )
    }
    assert.equal(await asClientOf(ca), 401)
    // Authenticated: the cluster is unknown to this registry (404), which only an authenticated client learns.
    assert.equal(await asClientOf(rotated), 404)
  })
})
