import {readFileSync} from 'node:fs'
import http, {type IncomingMessage} from 'node:http'
import https from 'node:https'

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
