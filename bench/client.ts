import {readFileSync} from 'node:fs'
import http, {type IncomingMessage} from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'

import {Http2Sessions, type UpstreamTarget} from '../src/tower/agent/http2-sessions.js'
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

/**
 * An HTTP/2 client as client-go behaves: every request a stream on a shared connection, a new connection when
 * one holds as many streams as the server allows. It is the agent's own pool
 * (`src/tower/agent/http2-sessions.ts`), which also tells whether the endpoint offers HTTP/2 at all.
 */
export class Http2Client {
  private readonly sessions = new Http2Sessions()
  private readonly target: UpstreamTarget

  constructor(private readonly endpoint: Endpoint) {
    const url = new URL(endpoint.baseUrl)
    this.target = {address: {host: url.hostname, port: Number(url.port)}, tls: tlsMaterial(endpoint) ?? {}}
  }

  /** Whether the endpoint negotiates HTTP/2 (ALPN); a plain endpoint does not. */
  async offered(): Promise<boolean> {
    if (this.endpoint.tls === undefined) return false
    const reserved = await this.sessions.reserve(this.target)
    reserved?.release()
    return reserved !== undefined
  }

  async get(path: string, timeoutMs: number): Promise<{status: number; stream: http2.ClientHttp2Stream}> {
    const reserved = await this.sessions.reserve(this.target)
    if (reserved === undefined) throw new Error(`${this.endpoint.baseUrl} does not speak HTTP/2`)
    const stream = reserved.session.request({':path': `${new URL(this.endpoint.baseUrl).pathname}${path}`})
    stream.once('close', reserved.release)
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
}
