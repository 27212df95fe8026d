import {readFileSync} from 'node:fs'
import http, {type IncomingMessage} from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import tls from 'node:tls'

import type {Endpoint} from './paths/path.js'

export interface TlsMaterial {
  ca: Buffer
  cert: Buffer
  key: Buffer
}

export function tlsMaterial(endpoint: Endpoint): TlsMaterial | undefined {
  if (endpoint.tls === undefined) return undefined
  return {
    ca: readFileSync(endpoint.tls.caFile),
    cert: readFileSync(endpoint.tls.certFile),
    key: readFileSync(endpoint.tls.keyFile),
  }
}

/** A connection pool without a cap, so that N concurrent requests are N connections. */
export function unboundedAgent(endpoint: Endpoint): http.Agent {
  const material = tlsMaterial(endpoint)
  const options = {keepAlive: false, maxSockets: Infinity}
  return material === undefined ? new http.Agent(options) : new https.Agent({...options, ...material})
}

export function get(
  endpoint: Endpoint,
  path: string,
  agent: http.Agent,
  timeoutMs: number,
): Promise<IncomingMessage> {
  const client = endpoint.tls === undefined ? http : https
  return new Promise((resolve, reject) => {
    const request = client.get(`${endpoint.baseUrl}${path}`, {agent, timeout: timeoutMs}, (response) => {
      // The timeout bounds the wait for the response head; a long-lived stream may then stay quiet.
      request.setTimeout(0)
      resolve(response)
    })
    request.once('timeout', () => request.destroy(new Error(`no response within ${timeoutMs} ms`)))
    request.once('error', reject)
  })
}

/** Whether one small request through the endpoint succeeds now. */
export async function answers(endpoint: Endpoint, agent: http.Agent, timeoutMs = 2000): Promise<boolean> {
  try {
    const response = await get(endpoint, '/json', agent, timeoutMs)
    response.resume()
    await new Promise((resolve) => response.once('end', resolve))
    return response.statusCode === 200
  } catch {
    return false
  }
}

/** Whether the endpoint offers HTTP/2 in its TLS handshake (ALPN), which kube clients take when offered. */
export async function offersHttp2(endpoint: Endpoint): Promise<boolean> {
  const material = tlsMaterial(endpoint)
  if (material === undefined) return false
  const url = new URL(endpoint.baseUrl)
  const socket = tls.connect({
    host: url.hostname,
    port: Number(url.port),
    ...material,
    ALPNProtocols: ['h2', 'http/1.1'],
  })
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve)
      socket.once('error', reject)
    })
    return socket.alpnProtocol === 'h2'
  } finally {
    socket.destroy()
  }
}

/**
 * HTTP/2 connections to one endpoint, as Go's HTTP/2 transport (client-go's) keeps them: every request is a
 * stream on the newest connection, and a new connection opens when that one holds as many streams as the
 * server allows.
 */
export class Http2Connections {
  private readonly sessions: Http2Connection[] = []

  constructor(private readonly endpoint: Endpoint) {}

  async get(path: string, timeoutMs: number): Promise<{status: number; stream: http2.ClientHttp2Stream}> {
    const connection = this.withRoom()
    connection.streams++
    await connection.ready
    const stream = connection.session.request({':path': `${new URL(this.endpoint.baseUrl).pathname}${path}`})
    stream.once('close', () => connection.streams--)
    stream.end()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        stream.destroy()
        reject(new Error(`no response within ${timeoutMs} ms`))
      }, timeoutMs)
      stream.once('response', (headers) => {
        clearTimeout(timer)
        resolve({status: Number(headers[':status']), stream})
      })
      stream.once('error', (error: Error) => {
        clearTimeout(timer)
        reject(error)
      })
    })
  }

  close(): void {
    for (const {session} of this.sessions) session.destroy()
  }

  private withRoom(): Http2Connection {
    const newest = this.sessions.at(-1)
    if (newest !== undefined && newest.streams < newest.limit()) return newest
    const session = http2.connect(new URL(this.endpoint.baseUrl).origin, tlsMaterial(this.endpoint))
    // Until the server's SETTINGS arrive, Go's transport assumes 100 streams.
    let limit = 100
    const ready = new Promise<void>((resolve, reject) => {
      session.once('remoteSettings', (settings: http2.Settings) => {
        limit = settings.maxConcurrentStreams ?? limit
        resolve()
      })
      session.once('error', reject)
    })
    const connection = {session, streams: 0, ready, limit: () => limit}
    this.sessions.push(connection)
    return connection
  }
}

interface Http2Connection {
  session: http2.ClientHttp2Session
  streams: number
  ready: Promise<void>
  limit(): number
}
