import {writeFile} from 'node:fs/promises'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import type {AddressInfo} from 'node:net'
import path from 'node:path'

import {Logger} from '../../../src/log.js'
import {
  createCertificateAuthority,
  issueCertificate,
  type CertificateAndKey,
} from '../../../src/pki/certificates.js'
import {TowerAgent, normalizeProxyUrl, type AgentOptions} from '../../../src/tower/agent/agent.js'
import {
  buildDestinations,
  serviceAccountCredentials,
  type CredentialSource,
} from '../../../src/tower/agent/agent-dial.js'
import {issueClientCertificate} from '../../../src/tower/proxy/client-binding.js'
import {FileClusterRegistry} from '../../../src/tower/proxy/file-registry.js'
import type {ClientIdentity} from '../../../src/tower/shared/identity.js'
import {TowerMetrics} from '../../../src/tower/shared/metrics.js'
import {TowerProxy} from '../../../src/tower/proxy/proxy.js'
import * as temp from '../../helpers/temp-dir.js'
import {loopbackPki} from '../../helpers/test-pki.js'

export const clusterToken = 'member-token-0123456789abcdef'

/** Everything a test's processes logged, to assert that no secret appears. */
export class CapturedLog {
  readonly lines: string[] = []
  logger(level: 'info' | 'debug' = 'debug'): Logger {
    return new Logger(level, 'json', {write: (line) => this.lines.push(line)})
  }
  get text(): string {
    return this.lines.join('')
  }
}

let proxyCa: Promise<CertificateAndKey> | undefined
export function testProxyCa(): Promise<CertificateAndKey> {
  proxyCa ??= createCertificateAuthority({commonName: 'test-proxy-ca', validityDays: 2})
  return proxyCa
}

/** A client certificate of the proxy CA, bound to cluster `member` (or `options.cluster`) unless `unbound`. */
export async function clientCredentials(
  ca: CertificateAndKey,
  options: {
    notAfter?: Date
    notBefore?: Date
    cluster?: string
    identity?: ClientIdentity
    unbound?: boolean
  } = {},
) {
  const {cluster = 'member', identity = testIdentity, unbound = false, ...validity} = options
  const client = unbound
    ? await issueCertificate(ca, {commonName: identity.user, usage: 'client', validityDays: 1, ...validity})
    : await issueClientCertificate(ca, {cluster, identity, validityDays: 1, ...validity})
  return {ca: ca.certPem, cert: client.certPem, key: client.keyPem}
}

/** Who the test clients are, as the agent impersonates them. */
export const testIdentity: ClientIdentity = {user: 'ksctl-admin', groups: ['tester']}

export async function tempDir(): Promise<string> {
  return temp.tempDir('ksctl-tower-test-')
}

/**
 * An upstream on 127.0.0.1: /echo (any other path) returns method, path and headers; /big/N streams N bytes;
 * /slow/MS sends its headers and a first line at once and the last line MS milliseconds later (a long
 * response in flight); /quiet/MS sends its headers alone and ends MS milliseconds later; /typed-twice
 * answers with two Content-Type headers.
 */
export async function startUpstream(
  tls?: CertificateAndKey,
): Promise<{server: http.Server; port: number; close(): Promise<void>}> {
  const server =
    tls === undefined
      ? http.createServer(upstreamHandler)
      : https.createServer({cert: tls.certPem, key: tls.keyPem}, upstreamHandler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/**
 * The same upstream as kube-apiserver serves: HTTP/2 (at most `maxConcurrentStreams` streams on a
 * connection) and HTTP/1.1 for clients without it. Counts the connections and the streams open.
 */
export async function startHttp2Upstream(
  tls: CertificateAndKey,
  maxConcurrentStreams = 250,
  host = '127.0.0.1',
) {
  const server = http2.createSecureServer(
    {cert: tls.certPem, key: tls.keyPem, allowHTTP1: true, settings: {maxConcurrentStreams}},
    upstreamHandler as unknown as (
      request: http2.Http2ServerRequest,
      response: http2.Http2ServerResponse,
    ) => void,
  )
  const sessions = new Set<http2.ServerHttp2Session>()
  let sessionsSeen = 0
  let streamsOpen = 0
  server.on('session', (session: http2.ServerHttp2Session) => {
    sessionsSeen++
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
  })
  server.on('connection', (socket: import('node:net').Socket) => socket.setNoDelay(true))
  server.on('stream', (stream: http2.ServerHttp2Stream) => {
    streamsOpen++
    stream.once('close', () => streamsOpen--)
  })
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  return {
    port: (server.address() as AddressInfo).port,
    sessionsSeen: () => sessionsSeen,
    sessions: () => [...sessions],
    streamsOpen: () => streamsOpen,
    close: async () => {
      for (const session of sessions) session.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

const upstreamHandler: http.RequestListener = (request, response) => {
  const url = new URL(request.url ?? '/', 'http://x')
  if (url.pathname.startsWith('/slow/')) {
    const ms = Number(url.pathname.slice(6))
    const body = slowBody(ms)
    const firstLine = body.indexOf('\n') + 1
    response.writeHead(200, {'content-type': 'text/plain', 'content-length': body.length})
    response.write(body.slice(0, firstLine))
    const timer = setTimeout(() => response.end(body.slice(firstLine)), ms)
    response.once('close', () => clearTimeout(timer))
    return
  }
  if (url.pathname.startsWith('/quiet/')) {
    // A watch before its first event: the head alone, then nothing for MS milliseconds.
    response.writeHead(200, {'content-type': 'application/json'})
    response.flushHeaders()
    const timer = setTimeout(() => response.end('{}\n'), Number(url.pathname.slice(7)))
    response.once('close', () => clearTimeout(timer))
    return
  }
  if (url.pathname === '/typed-twice') {
    // Allowed in HTTP/1.1 framing, refused by HTTP/2 (a single-value header repeated).
    response.writeHead(200, ['Content-Type', 'text/plain', 'Content-Type', 'text/html'])
    response.end('two types\n')
    return
  }
  if (url.pathname.startsWith('/big/')) {
    const total = Number(url.pathname.slice(5))
    response.writeHead(200, {'content-type': 'application/octet-stream', 'content-length': total})
    const chunk = Buffer.alloc(64 * 1024, 120)
    let sent = 0
    const pump = (): void => {
      while (sent < total) {
        const size = Math.min(chunk.length, total - sent)
        sent += size
        if (!response.write(chunk.subarray(0, size))) {
          response.once('drain', pump)
          return
        }
      }
      response.end()
    }
    pump()
    return
  }
  const chunks: Buffer[] = []
  request.on('data', (chunk: Buffer) => chunks.push(chunk))
  request.on('end', () => {
    const body = JSON.stringify({
      method: request.method,
      path: request.url,
      headers: request.headers,
      httpVersion: request.httpVersion,
      bodyBytes: Buffer.concat(chunks).length,
    })
    response.writeHead(200, {'content-type': 'application/json'})
    response.end(body)
  })
}

/** The whole body `/slow/MS` sends, to tell a complete response from a cut one. */
export function slowBody(ms: number): string {
  return `first\nlast after ${ms} ms\n`
}

export interface ProxyHarness {
  proxy: TowerProxy
  registry: FileClusterRegistry
  clustersFile: string
  ca: CertificateAndKey
}

export async function startProxy(
  log: CapturedLog,
  clusters: {name: string; token: string; kubernetesPort?: number; kubespherePort?: number}[] = [
    {name: 'member', token: clusterToken},
  ],
  options: {
    listen?: string
    goAwayGraceMs?: number
    pingIntervalMs?: number
    bufferBudgetBytes?: number
  } = {},
): Promise<ProxyHarness> {
  const dir = await tempDir()
  const clustersFile = path.join(dir, 'clusters.yaml')
  await writeFile(clustersFile, JSON.stringify(clusters))
  const registry = await FileClusterRegistry.open(clustersFile)
  const ca = await testProxyCa()
  const proxy = new TowerProxy({
    registry,
    ca,
    listen: options.listen ?? '127.0.0.1:0',
    agentTls: undefined,
    frontEnd: '127.0.0.1:0',
    metricsAddress: '127.0.0.1:0',
    log: log.logger(),
    goAwayGraceMs: options.goAwayGraceMs ?? 2000,
    ...(options.pingIntervalMs !== undefined && {pingIntervalMs: options.pingIntervalMs}),
    ...(options.bufferBudgetBytes !== undefined && {bufferBudgetBytes: options.bufferBudgetBytes}),
  })
  await proxy.start()
  return {proxy, registry, clustersFile, ca}
}

/** An agent whose kubernetes destination is a plain-HTTP upstream reached over TCP, for speed and simplicity. */
export function startAgent(
  log: CapturedLog,
  proxyPort: number,
  options: {
    name?: string
    token?: string
    kubernetes?: CredentialSource
    allowed?: Map<string, {host: string; port: number}>
    maxRetryIntervalMs?: number
    keepaliveMs?: number
    /** Any other option of the agent, over the harness's. */
    agent?: Partial<AgentOptions>
  } = {},
): TowerAgent {
  const agent = new TowerAgent({
    name: options.name ?? 'member',
    token: () => Promise.resolve(options.token ?? clusterToken),
    proxyUrl: normalizeProxyUrl(`http://127.0.0.1:${proxyPort}`),
    insecurePlain: true,
    keepaliveMs: options.keepaliveMs ?? 1000,
    maxRetry: 0,
    maxRetryIntervalMs: options.maxRetryIntervalMs ?? 300,
    initialRetryMs: 50,
    destinations: buildDestinations({
      cluster: options.name ?? 'member',
      log: log.logger(),
      kubernetes: options.kubernetes ?? (() => Promise.reject(new Error('no kubernetes in this test'))),
      kubesphere: undefined,
      allowed: options.allowed ?? new Map<string, {host: string; port: number}>(),
    }),
    log: log.logger(),
    metrics: new TowerMetrics(),
    goAwayGraceMs: 2000,
    ...options.agent,
  })
  void agent.start().catch(() => undefined)
  return agent
}

export async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

export interface Response {
  status: number
  body: string
}

/** One HTTPS request to a front end, without connection reuse. */
export function frontEndRequest(
  url: string,
  credentials: {ca: string; cert?: string; key?: string},
  options: {method?: string; headers?: Record<string, string>; body?: string} = {},
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const request = https.request(
      url,
      {method: options.method ?? 'GET', agent: false, headers: options.headers, ...credentials},
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () =>
          resolve({status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString()}),
        )
        response.on('error', reject)
      },
    )
    request.on('error', reject)
    request.end(options.body)
  })
}

/** What the upstream's /echo answers. */
export interface Echo {
  method: string
  path: string
  headers: Record<string, string>
  bodyBytes: number
}

export const saToken = 'member-service-account-token-v1'

/** A TLS "kube-apiserver" and an agent whose kubernetes destination is it, with a service-account directory. */
export async function memberSetup(log: CapturedLog, harness: ProxyHarness) {
  const pki = await loopbackPki('tower-member')
  const upstream = await startUpstream(pki.server)
  const saDir = await tempDir()
  await writeFile(path.join(saDir, 'token'), saToken)
  await writeFile(path.join(saDir, 'ca.crt'), pki.ca.certPem)
  const kubernetes = serviceAccountCredentials(`127.0.0.1:${upstream.port}`, saDir)
  const agents: TowerAgent[] = []
  const newAgent = (): TowerAgent => {
    const agent = startAgent(log, harness.proxy.agentPort, {kubernetes})
    agents.push(agent)
    return agent
  }
  return {upstream, saDir, newAgent, agents}
}
