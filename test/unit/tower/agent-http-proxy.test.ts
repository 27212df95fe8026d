import assert from 'node:assert/strict'
import {X509Certificate} from 'node:crypto'
import {writeFile} from 'node:fs/promises'
import http from 'node:http'
import net, {type AddressInfo} from 'node:net'
import path from 'node:path'
import type {Duplex} from 'node:stream'

import {KsctlError} from '../../../src/errors.js'
import {
  createCertificateAuthority,
  issueCertificate,
  type CertificateAndKey,
} from '../../../src/pki/certificates.js'
import {redactor} from '../../../src/redact.js'
import {normalizeProxyUrl, publicKeyPin, TowerAgent} from '../../../src/tower/agent/agent.js'
import {buildDestinations, type CredentialSource} from '../../../src/tower/agent/agent-dial.js'
import {egressProxyFor} from '../../../src/tower/agent/egress-proxy.js'
import {FileClusterRegistry} from '../../../src/tower/proxy/file-registry.js'
import {TowerMetrics} from '../../../src/tower/shared/metrics.js'
import {TowerProxy} from '../../../src/tower/proxy/proxy.js'
import {loopbackPki} from '../../helpers/test-pki.js'
import {
  CapturedLog,
  clientCredentials,
  clusterToken,
  frontEndRequest,
  startProxy,
  startUpstream,
  tempDir,
  testProxyCa,
  until,
  type ProxyHarness,
} from './harness.js'

/**
 * A tiny HTTP CONNECT proxy on 127.0.0.2 (another address than the tower proxy's, so a certificate check made
 * against the wrong host fails). It records every CONNECT and tunnels only to 127.0.0.1.
 */
class ConnectProxy {
  readonly requests: {target: string; authorization: string | undefined}[] = []
  /** 200 tunnels; another status is the answer; 'hang' never answers. */
  answer: number | 'hang' = 200
  private readonly open = new Set<Duplex>()

  private constructor(private readonly server: http.Server) {
    server.on('connect', (request: http.IncomingMessage, client: Duplex, head: Buffer) => {
      const target = request.url ?? ''
      this.requests.push({target, authorization: request.headers['proxy-authorization']})
      this.track(client)
      // The server allows half-open sockets: without this, an abandoned CONNECT stays open.
      if (this.answer === 'hang') {
        client.on('end', () => client.destroy())
        return
      }
      const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.split(':').pop())]
      if (this.answer !== 200 || host !== '127.0.0.1') {
        const status = this.answer === 200 ? 403 : this.answer
        client.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Length: 0\r\n\r\n`)
        return
      }
      const upstream = net.connect(port, host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
        upstream.write(head)
        upstream.pipe(client).pipe(upstream)
      })
      this.track(upstream)
      upstream.on('close', () => client.destroy())
      client.on('close', () => upstream.destroy())
    })
  }

  static async start(): Promise<ConnectProxy> {
    const server = http.createServer((_request, response) => response.writeHead(405).end())
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.2', resolve))
    return new ConnectProxy(server)
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port
  }

  url(userinfo = ''): URL {
    return new URL(`http://${userinfo}127.0.0.2:${this.port}`)
  }

  /** Client and upstream sockets of the tunnels still open. */
  get openSockets(): number {
    return this.open.size
  }

  async close(): Promise<void> {
    for (const socket of this.open) socket.destroy()
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private track(socket: Duplex): void {
    this.open.add(socket)
    socket.on('error', () => socket.destroy())
    socket.on('close', () => this.open.delete(socket))
  }
}

let listenerPki: Promise<{ca: CertificateAndKey; server: CertificateAndKey}> | undefined

/**
 * The agent listener's CA and certificate, for 127.0.0.1 alone: not localhost, the name Node checks a
 * certificate against when it is given neither servername nor host.
 */
function agentListenerPki(): Promise<{ca: CertificateAndKey; server: CertificateAndKey}> {
  listenerPki ??= (async () => {
    const ca = await createCertificateAuthority({commonName: 'agent-listener-ca', validityDays: 1})
    const server = await issueCertificate(ca, {
      commonName: 'agent-listener',
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
      validityDays: 1,
    })
    return {ca, server}
  })()
  return listenerPki
}

/** Like startProxy, with the agent listener on wss://. */
async function startTlsProxy(log: CapturedLog): Promise<ProxyHarness> {
  const dir = await tempDir()
  const clustersFile = path.join(dir, 'clusters.yaml')
  await writeFile(clustersFile, JSON.stringify([{name: 'member', token: clusterToken}]))
  const registry = await FileClusterRegistry.open(clustersFile)
  const ca = await testProxyCa()
  const proxy = new TowerProxy({
    registry,
    ca,
    listen: '127.0.0.1:0',
    agentTls: (await agentListenerPki()).server,
    frontEnd: '127.0.0.1:0',
    log: log.logger(),
    goAwayGraceMs: 2000,
  })
  await proxy.start()
  return {proxy, registry, clustersFile, ca}
}

interface Echo {
  path: string
  headers: Record<string, string>
}

interface LogLine {
  reason?: string
  httpProxy?: string
}

function logLines(log: CapturedLog): LogLine[] {
  return log.lines.map((line) => JSON.parse(line) as LogLine)
}

describe('tower agent through an HTTP proxy (CONNECT)', function () {
  this.timeout(30_000)
  let proxyLog: CapturedLog
  let agentLog: CapturedLog
  let egress: ConnectProxy
  let harness: ProxyHarness | undefined
  let upstream: Awaited<ReturnType<typeof startUpstream>>
  let kubernetes: CredentialSource
  const agents: TowerAgent[] = []

  beforeEach(async () => {
    proxyLog = new CapturedLog()
    agentLog = new CapturedLog()
    egress = await ConnectProxy.start()
    const pki = await loopbackPki('tower-member')
    upstream = await startUpstream(pki.server)
    kubernetes = () =>
      Promise.resolve({
        address: {host: '127.0.0.1', port: upstream.port},
        tls: {ca: pki.ca.certPem},
        authorization: 'Bearer member-sa-token',
      })
  })

  afterEach(async () => {
    await Promise.all(agents.splice(0).map((agent) => agent.stop()))
    await harness?.proxy.stop()
    harness = undefined
    // Every tunnel the agents opened is closed again, the ones a refused pin ended too.
    await until(() => egress.openSockets === 0)
    await egress.close()
    await upstream.close()
    assert.ok(!agentLog.text.includes(clusterToken))
  })

  function newAgent(
    options: {proxyServer: string; egressProxy?: URL; proxyCa?: string; proxyPin?: string},
    log = agentLog,
  ): TowerAgent {
    const agent = new TowerAgent({
      name: 'member',
      token: () => Promise.resolve(clusterToken),
      proxyUrl: normalizeProxyUrl(options.proxyServer),
      insecurePlain: options.proxyServer.startsWith('http:'),
      ...(options.egressProxy !== undefined && {egressProxy: options.egressProxy}),
      ...(options.proxyCa !== undefined && {proxyCa: options.proxyCa}),
      ...(options.proxyPin !== undefined && {proxyPin: options.proxyPin}),
      keepaliveMs: 1000,
      maxRetry: 0,
      maxRetryIntervalMs: 200,
      initialRetryMs: 50,
      destinations: buildDestinations({
        cluster: 'member',
        log: log.logger(),
        kubernetes,
        kubesphere: undefined,
        allowed: new Map(),
      }),
      log: log.logger(),
      metrics: new TowerMetrics(),
      goAwayGraceMs: 500,
    })
    agents.push(agent)
    void agent.start().catch(() => undefined)
    return agent
  }

  async function throughTheTunnel(proxy: ProxyHarness): Promise<Echo> {
    const credentials = await clientCredentials(proxy.ca)
    const url = `https://127.0.0.1:${proxy.proxy.frontEndPort}/clusters/member/version`
    const response = await frontEndRequest(url, credentials)
    assert.equal(response.status, 200)
    return JSON.parse(response.body) as Echo
  }

  it('connects over ws:// through the CONNECT tunnel and serves front-end requests over it', async () => {
    harness = await startProxy(proxyLog)
    const agent = newAgent({
      proxyServer: `http://127.0.0.1:${harness.proxy.agentPort}`,
      egressProxy: egress.url(),
    })
    await until(() => agent.ready)
    assert.deepEqual(egress.requests, [
      {target: `127.0.0.1:${harness.proxy.agentPort}`, authorization: undefined},
    ])
    assert.ok(egress.openSockets >= 2, 'the session runs in the tunnel')
    const echo = await throughTheTunnel(harness)
    assert.equal(echo.path, '/version')
    assert.equal(echo.headers.authorization, 'Bearer member-sa-token')
    const started = logLines(agentLog).find((line) => line.httpProxy !== undefined)
    assert.equal(started?.httpProxy, `127.0.0.2:${egress.port}`)
  })

  it('verifies a wss:// proxy by its pin or CA through the tunnel, against the tower proxy address', async () => {
    harness = await startTlsProxy(proxyLog)
    const {ca, server} = await agentListenerPki()
    const proxyServer = `https://127.0.0.1:${harness.proxy.agentPort}`
    const pinned = newAgent({
      proxyServer,
      egressProxy: egress.url(),
      proxyPin: publicKeyPin(new X509Certificate(server.certPem)),
    })
    // Checked against the HTTP proxy (127.0.0.2) or the default name (localhost), the certificate fails.
    const withCa = newAgent({proxyServer, egressProxy: egress.url(), proxyCa: ca.certPem})
    await until(() => pinned.ready && withCa.ready)
    assert.deepEqual(
      egress.requests.map((request) => request.target),
      [`127.0.0.1:${harness.proxy.agentPort}`, `127.0.0.1:${harness.proxy.agentPort}`],
    )
    assert.equal((await throughTheTunnel(harness)).path, '/version')
  })

  it('refuses a wss:// proxy with the wrong pin or CA through the tunnel before sending the upgrade', async () => {
    harness = await startTlsProxy(proxyLog)
    const proxyServer = `https://127.0.0.1:${harness.proxy.agentPort}`
    const foreignCa = await createCertificateAuthority({commonName: 'not-the-proxy-ca', validityDays: 1})
    const caLog = new CapturedLog()
    const wrongPin = newAgent({proxyServer, egressProxy: egress.url(), proxyPin: `sha256:${'0'.repeat(64)}`})
    const wrongCa = newAgent({proxyServer, egressProxy: egress.url(), proxyCa: foreignCa.certPem}, caLog)
    await until(
      () =>
        agentLog.text.split('does not match --proxy-pin').length > 3 &&
        caLog.text.split('cannot connect to the proxy').length > 3,
    )
    assert.ok(!wrongPin.ready && !wrongCa.ready)
    assert.ok(egress.requests.length >= 6, 'each attempt went through the HTTP proxy')
    assert.doesNotMatch(proxyLog.text, /agent connected|rejected an agent/)
    assert.doesNotMatch(await harness.proxy.metrics.render(), /auth_failures_total\{endpoint="agent"/)
  })

  it('fails an attempt the HTTP proxy answers with 407, says why, and keeps retrying', async () => {
    harness = await startProxy(proxyLog)
    egress.answer = 407
    const agent = newAgent({
      proxyServer: `http://127.0.0.1:${harness.proxy.agentPort}`,
      egressProxy: egress.url(),
    })
    await until(() => egress.requests.length >= 3)
    const reasons = logLines(agentLog).flatMap((line) => (line.reason === undefined ? [] : [line.reason]))
    assert.ok(
      reasons.includes(
        `the HTTP proxy 127.0.0.2:${egress.port} refused CONNECT: 407 Proxy Authentication Required`,
      ),
      reasons.join('\n'),
    )
    assert.ok(!agent.ready)
    egress.answer = 200
    await until(() => agent.ready)
  })

  it('sends the userinfo as Basic Proxy-Authorization and never logs the password', async () => {
    harness = await startProxy(proxyLog)
    egress.answer = 407
    const password = 'pa:ss-w0rd-9f2c7e'
    const agent = newAgent({
      proxyServer: `http://127.0.0.1:${harness.proxy.agentPort}`,
      egressProxy: egress.url(`ops%40corp:${encodeURIComponent(password)}@`),
    })
    await until(() => egress.requests.length >= 2)
    egress.answer = 200
    await until(() => agent.ready)
    const basic = `Basic ${Buffer.from(`ops@corp:${password}`).toString('base64')}`
    assert.ok(egress.requests.every((request) => request.authorization === basic))
    assert.match(agentLog.text, /refused CONNECT: 407/)
    for (const secret of [password, encodeURIComponent(password), basic.slice(6)]) {
      assert.ok(!agentLog.text.includes(secret), `a log line holds ${secret}`)
    }
    assert.ok(!agentLog.text.includes('ops%40corp'), 'the user name is not logged either')
  })

  it('stops at once while the HTTP proxy has not answered CONNECT', async () => {
    harness = await startProxy(proxyLog)
    egress.answer = 'hang'
    const agent = newAgent({
      proxyServer: `http://127.0.0.1:${harness.proxy.agentPort}`,
      egressProxy: egress.url(),
    })
    await until(() => egress.requests.length === 1)
    const started = performance.now()
    await agent.stop()
    assert.ok(performance.now() - started < 1000, 'stop() waited for the CONNECT answer')
  })
})

describe('the egress proxy from the environment', () => {
  const names = ['http_proxy', 'https_proxy', 'all_proxy', 'no_proxy'].flatMap((name) => [
    name,
    name.toUpperCase(),
  ])
  let saved: Record<string, string | undefined>

  beforeEach(() => {
    saved = Object.fromEntries(names.map((name) => [name, process.env[name]]))
    for (const name of names) delete process.env[name]
  })

  afterEach(() => {
    for (const name of names) {
      if (saved[name] === undefined) delete process.env[name]
      else process.env[name] = saved[name]
    }
  })

  const resolve = (proxyServer: string): string | undefined =>
    egressProxyFor(normalizeProxyUrl(proxyServer))?.href

  it('takes HTTPS_PROXY for wss://, HTTP_PROXY for ws://, and ALL_PROXY otherwise', () => {
    assert.equal(resolve('https://tower.example.com:8080'), undefined)
    process.env.HTTPS_PROXY = 'http://127.0.0.2:3128'
    process.env.HTTP_PROXY = 'http://127.0.0.3:3128'
    assert.equal(resolve('https://tower.example.com:8080'), 'http://127.0.0.2:3128/')
    assert.equal(resolve('wss://tower.example.com'), 'http://127.0.0.2:3128/')
    assert.equal(resolve('http://tower.example.com:8080'), 'http://127.0.0.3:3128/')
    delete process.env.HTTP_PROXY
    process.env.ALL_PROXY = 'http://127.0.0.4:3128'
    assert.equal(resolve('ws://tower.example.com'), 'http://127.0.0.4:3128/')
    process.env.https_proxy = '127.0.0.5:3128'
    assert.equal(resolve('https://tower.example.com'), 'http://127.0.0.5:3128/', 'no scheme: http://')
  })

  it('goes direct when NO_PROXY matches: suffixes, *, and ports', () => {
    process.env.HTTPS_PROXY = 'http://127.0.0.2:3128'
    process.env.NO_PROXY = '.example.com, 192.0.2.10:8443'
    assert.equal(resolve('https://tower.example.com:8080'), undefined)
    assert.equal(resolve('https://tower.example.org:8080'), 'http://127.0.0.2:3128/')
    assert.equal(resolve('https://192.0.2.10:8443'), undefined)
    assert.equal(resolve('https://192.0.2.10:9443'), 'http://127.0.0.2:3128/')
    process.env.no_proxy = '*'
    assert.equal(resolve('https://tower.example.org:8080'), undefined)
  })

  it('never sends a loopback proxy address through a proxy, as Go and so Tower do', () => {
    process.env.HTTPS_PROXY = 'http://127.0.0.2:3128'
    process.env.HTTP_PROXY = 'http://127.0.0.2:3128'
    for (const local of [
      'https://127.0.0.1:8443',
      'http://localhost:8080',
      'https://[::1]:8443',
      'http://127.9.9.9',
    ]) {
      assert.equal(resolve(local), undefined, local)
    }
    assert.equal(resolve('https://128.0.0.1:8443'), 'http://127.0.0.2:3128/')
  })

  it('refuses a proxy other than http:// with the variable and the next step, and never echoes it', () => {
    process.env.HTTPS_PROXY = 'socks5://user:sock-secret-77@127.0.0.2:1080'
    assert.throws(
      () => resolve('https://tower.example.com'),
      (error: unknown) => {
        assert.ok(error instanceof KsctlError)
        assert.equal(error.code, 'INVALID_INPUT')
        assert.match(error.message, /^HTTPS_PROXY names a socks5:\/\/ proxy; .*only http:\/\//)
        assert.ok(error.suggestions.some((line) => line.includes('NO_PROXY')))
        assert.ok(!JSON.stringify({...error, message: error.message}).includes('sock-secret-77'))
        return true
      },
    )
    process.env.HTTP_PROXY = 'http://[not a url'
    assert.throws(() => resolve('http://tower.example.com'), /HTTP_PROXY is not a valid proxy URL/)
  })

  it('registers the proxy password with the redactor', () => {
    process.env.HTTPS_PROXY = 'http://ops:env-proxy%2Fpass-31@127.0.0.2:3128'
    const proxy = egressProxyFor(normalizeProxyUrl('https://tower.example.com'))
    assert.equal(proxy?.username, 'ops')
    assert.doesNotMatch(redactor.redact('x env-proxy/pass-31 y env-proxy%2Fpass-31 z'), /env-proxy/)
  })
})
