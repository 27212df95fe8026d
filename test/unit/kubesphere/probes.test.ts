import assert from 'node:assert/strict'
import {writeFile} from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import {createServer, type AddressInfo, type Server} from 'node:net'
import path from 'node:path'

import {KubeConfig} from '@kubernetes/client-node'
import {WebSocketServer} from 'ws'

import {createCertificateAuthority} from '../../../src/pki/certificates.js'
import {probeProxyAddress} from '../../../src/kubesphere/proxy-probe.js'
import {probeTunnel} from '../../../src/kubesphere/tunnel-probe.js'
import {serviceAccountCredentials} from '../../../src/tower/agent/agent-dial.js'
import {issueKubeconfig} from '../../../src/tower/proxy/issue-kubeconfig.js'
import {serverCertificate, type TowerProxy} from '../../../src/tower/proxy/proxy.js'
import {startFakeClusters, MEMBER_TOKEN, type FakeClusters} from '../../helpers/fake-clusters.js'
import {freePort} from '../../testbed/http.js'
import {CapturedLog, startAgent, startProxy, tempDir, until, type ProxyHarness} from '../tower/harness.js'

const TIMEOUT_MS = 400

/** Listens on 127.0.0.1; `close` also ends the connections it holds. */
async function listening<T extends Server | http.Server>(
  server: T,
): Promise<{server: T; port: number; close: () => Promise<void>}> {
  const sockets = new Set<import('node:net').Socket>()
  server.on('connection', (socket: import('node:net').Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/**
 * What KubeSphere's Tower answers on its agent port (TOWER v0.2.1 and master, pkg/proxy/proxy.go
 * handleClientHandler): an upgrade offering exactly kubesphere-v1, on any path, becomes an SSH server whose first
 * message is its greeting; everything else gets /health, /version or a 404. Tower cannot run here.
 */
async function towerStandIn() {
  const webSockets = new WebSocketServer({noServer: true, handleProtocols: () => false})
  const server = http.createServer((request, response) => {
    response.writeHead(request.url === '/health' ? 200 : 404)
    response.end(request.url === '/health' ? 'OK\n' : 'Not Found')
  })
  server.on('upgrade', (request: http.IncomingMessage, socket, head: Buffer) => {
    if (request.headers['sec-websocket-protocol'] !== 'kubesphere-v1') {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nNot Found')
      return
    }
    webSockets.handleUpgrade(request, socket, head, (webSocket) => {
      webSocket.send(Buffer.from('SSH-kubesphere-v1-server\r\n'))
    })
  })
  return listening(server)
}

describe('doctor probes', () => {
  describe('the proxy address', () => {
    const closers: (() => Promise<void>)[] = []
    afterEach(async () => {
      for (const close of closers.splice(0)) await close()
    })

    it("recognises KubeSphere's Tower by its SSH greeting to an agent's upgrade", async () => {
      const tower = await towerStandIn()
      closers.push(tower.close)
      assert.deepEqual(await probeProxyAddress(`http://127.0.0.1:${tower.port}`, TIMEOUT_MS), {kind: 'tower'})
    })

    it("recognises ksctl's proxy by its refusal of an agent without a token", async () => {
      const harness = await startProxy(new CapturedLog(), [])
      closers.push(() => harness.proxy.stop())
      assert.deepEqual(await probeProxyAddress(`http://127.0.0.1:${harness.proxy.agentPort}`, TIMEOUT_MS), {
        kind: 'ksctl',
      })
    })

    it('tells an ordinary web server, a listener that hangs up and one that never answers from a tower proxy', async () => {
      const web = await listening(http.createServer((_request, response) => response.end('hello')))
      const hangUp = await listening(createServer((socket) => socket.end()))
      const silent = await listening(createServer(() => undefined))
      closers.push(web.close, hangUp.close, silent.close)
      assert.deepEqual(await probeProxyAddress(`http://127.0.0.1:${web.port}`, TIMEOUT_MS), {
        kind: 'other',
        answer: "HTTP 200 to a Tower agent's upgrade, HTTP 200 to a ksctl agent's upgrade at /connect",
      })
      const hungUp = await probeProxyAddress(`http://127.0.0.1:${hangUp.port}`, TIMEOUT_MS)
      assert.equal(hungUp.kind, 'other')
      assert.deepEqual(await probeProxyAddress(`http://127.0.0.1:${silent.port}`, TIMEOUT_MS), {
        kind: 'other',
        answer: "no answer within 0.4s to a Tower agent's upgrade",
      })
    })

    it('says when nothing listens', async () => {
      const port = await freePort()
      assert.deepEqual(await probeProxyAddress(`http://127.0.0.1:${port}`, TIMEOUT_MS), {
        kind: 'unreachable',
        reason: 'ECONNREFUSED',
      })
    })
  })

  describe('the tunnel', () => {
    let clusters: FakeClusters
    let harness: ProxyHarness | undefined
    const closers: (() => Promise<void>)[] = []
    const servicePath =
      '/api/v1/namespaces/kubesphere-system/services/https:mc-member:kubernetes/proxy/version'

    beforeEach(async () => {
      clusters = await startFakeClusters()
    })

    afterEach(async () => {
      for (const close of closers.splice(0)) await close()
      await harness?.proxy.stop()
      harness = undefined
      await clusters.stop()
    })

    const hostConfig = () => {
      const config = new KubeConfig()
      config.loadFromFile(clusters.kubeconfigPath)
      config.setCurrentContext('host')
      return config
    }

    /** ksctl's proxy and agent, the agent's kube-apiserver the member fake; the kubeconfig the proxy issues. */
    async function tunnel(): Promise<{issued: string; proxy: TowerProxy; port: number}> {
      const port = await freePort()
      harness = await startProxy(new CapturedLog(), [
        {name: 'member', token: 'member-token-0123456789abcdef', kubernetesPort: port},
      ])
      const saDir = await tempDir()
      await writeFile(path.join(saDir, 'token'), MEMBER_TOKEN)
      await writeFile(path.join(saDir, 'ca.crt'), clusters.member.caPem)
      const agent = startAgent(new CapturedLog(), harness.proxy.agentPort, {
        kubernetes: serviceAccountCredentials(new URL(clusters.member.url).host, saDir),
      })
      closers.push(() => agent.stop())
      await until(() => harness?.proxy.pool.count('member') === 1)
      const issued = await issueKubeconfig({
        ca: harness.ca,
        cluster: 'member',
        server: `https://10.0.0.99:6443`,
      })
      return {issued: Buffer.from(issued).toString('base64'), proxy: harness.proxy, port}
    }

    it("reaches the member through ksctl's proxy with the issued kubeconfig, at the address given for its server", async () => {
      const {issued, port} = await tunnel()
      const probe = await probeTunnel({
        name: 'member',
        issuedKubeconfig: issued,
        server: `https://127.0.0.1:${port}`,
        host: hostConfig(),
        timeoutMs: 5000,
      })
      assert.equal(probe.kind, 'answered', JSON.stringify(probe))
      assert.equal(probe.kind === 'answered' && probe.kubernetesVersion, 'v1.35.4')
      assert.deepEqual(clusters.host.requests, [], 'the host kube-apiserver is not needed')
    })

    it('reports a proxy that takes the request and never answers as broken, within the time-out', async () => {
      const ca = await createCertificateAuthority({commonName: 'probe-test-ca', validityDays: 1})
      const serving = await serverCertificate(ca, [])
      const hung = await listening(
        https.createServer({cert: serving.certPem, key: serving.keyPem}, () => undefined),
      )
      closers.push(hung.close)
      const issued = await issueKubeconfig({ca, cluster: 'member', server: 'https://10.0.0.99:6443'})
      const started = Date.now()
      const probe = await probeTunnel({
        name: 'member',
        issuedKubeconfig: Buffer.from(issued).toString('base64'),
        server: `https://127.0.0.1:${hung.port}`,
        host: hostConfig(),
        timeoutMs: TIMEOUT_MS,
      })
      assert.deepEqual(probe, {
        kind: 'broken',
        via: `the issued kubeconfig at https://127.0.0.1:${hung.port}`,
        reason: 'no answer within 0.4s',
      })
      assert.ok(Date.now() - started < 2000)
    })

    it("counts a server whose certificate is not the proxy CA's as not reached, then asks the host kube-apiserver's service proxy", async () => {
      // Another CA's server at the issued address: an intercepting proxy, or a different service.
      const other = await createCertificateAuthority({commonName: 'someone-else', validityDays: 1})
      const serving = await serverCertificate(other, [])
      const impostor = await listening(
        https.createServer({cert: serving.certPem, key: serving.keyPem}, (_request, response) =>
          response.end('{}'),
        ),
      )
      closers.push(impostor.close)
      const proxyCa = await createCertificateAuthority({commonName: 'probe-test-ca', validityDays: 1})
      const issued = await issueKubeconfig({
        ca: proxyCa,
        cluster: 'member',
        server: `https://127.0.0.1:${impostor.port}`,
      })
      // Tower's front end adds the agent's credential to what the host kube-apiserver forwards.
      clusters.host.put(servicePath, {metadata: {name: 'version'}, gitVersion: 'v1.35.4'})
      const probe = await probeTunnel({
        name: 'member',
        issuedKubeconfig: Buffer.from(issued).toString('base64'),
        host: hostConfig(),
        timeoutMs: TIMEOUT_MS,
      })
      assert.equal(probe.kind, 'answered', JSON.stringify(probe))
      assert.equal(
        probe.kind === 'answered' && probe.via,
        "the host kube-apiserver's service proxy to kubesphere-system/mc-member",
      )
    })

    it('counts an issued kubeconfig whose key Node cannot read as unusable, not as an error of doctor', async () => {
      clusters.host.failNext(
        'GET',
        /\/proxy\/version$/,
        503,
        'no endpoints available for service "mc-member"',
      )
      const unreadableKey = [
        'apiVersion: v1',
        'kind: Config',
        'current-context: member',
        'clusters: [{name: member, cluster: {server: "https://127.0.0.1:1"}}]',
        `users: [{name: member, user: {client-certificate-data: ${Buffer.from('not a certificate').toString('base64')}, client-key-data: ${Buffer.from('not a key').toString('base64')}}}]`,
        'contexts: [{name: member, context: {cluster: member, user: member}}]',
      ].join('\n')
      const probe = await probeTunnel({
        name: 'member',
        issuedKubeconfig: Buffer.from(unreadableKey).toString('base64'),
        host: hostConfig(),
        timeoutMs: TIMEOUT_MS,
      })
      assert.equal(probe.kind, 'unchecked')
      assert.match(
        probe.kind === 'unchecked' ? (probe.reasons[0] ?? '') : '',
        /its credentials cannot be used/,
      )
    })

    it('says what it could not check when neither way reaches the proxy', async () => {
      clusters.host.failNext(
        'GET',
        /\/proxy\/version$/,
        503,
        'no endpoints available for service "mc-member"',
      )
      const probe = await probeTunnel({
        name: 'member',
        issuedKubeconfig: undefined,
        host: hostConfig(),
        timeoutMs: TIMEOUT_MS,
      })
      assert.deepEqual(probe, {
        kind: 'unchecked',
        reasons: [
          'the Cluster has no issued kubeconfig (spec.connection.kubeconfig)',
          'the host kube-apiserver\'s service proxy to kubesphere-system/mc-member: HTTP 503: no endpoints available for service "mc-member"',
        ],
      })
    })
  })
})
