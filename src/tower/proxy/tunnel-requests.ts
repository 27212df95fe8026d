import http from 'node:http'

import {kubernetesDestination} from '../shared/agent-link.js'
import {identityHeaders} from '../shared/identity.js'
import {withSocketMethods} from '../shared/stream-agent.js'
import type {ClusterTunnel, TunnelRequest, TunnelResponse} from './registry.js'
import type {SessionPool} from './session-pool.js'

/** The longest a request of the proxy's own may take, from opening its stream to the end of the answer. */
const requestTimeoutMs = 30_000
/** Answers to the proxy's own requests are small objects; a larger one is not what was asked for. */
const maxResponseBytes = 1 << 20

/**
 * The proxy's own requests to members' kube-apiservers: each on a tunnel stream of its own (they are rare), to the
 * kubernetes destination, stating the request's identity as the front ends state a client's, which the agent
 * impersonates with the member's credential.
 */
export class TunnelRequests implements ClusterTunnel {
  constructor(private readonly pool: SessionPool) {}

  async request(cluster: string, request: TunnelRequest): Promise<TunnelResponse> {
    const signal = AbortSignal.timeout(requestTimeoutMs)
    const stream = withSocketMethods(await this.pool.openStream(cluster, kubernetesDestination, signal))
    const body = request.body === undefined ? undefined : JSON.stringify(request.body)
    // Node writes a header whose value is a list as one line per value, as the agent reads groups.
    const headers: Record<string, string | string[]> = {accept: 'application/json'}
    const identity = identityHeaders(request.identity)
    for (let index = 0; index + 1 < identity.length; index += 2) {
      const name = identity[index] ?? ''
      headers[name] = [...[headers[name] ?? []].flat(), identity[index + 1] ?? '']
    }
    if (body !== undefined) {
      headers['content-type'] = request.contentType ?? 'application/json'
      headers['content-length'] = String(Buffer.byteLength(body))
    }
    return new Promise<TunnelResponse>((resolve, reject) => {
      const outgoing = http.request({
        createConnection: () => stream,
        method: request.method,
        path: request.path,
        headers,
        signal,
      })
      outgoing.once('error', reject)
      outgoing.once('response', (response) => {
        const chunks: Buffer[] = []
        let length = 0
        response.on('data', (chunk: Buffer) => {
          length += chunk.length
          if (length > maxResponseBytes) response.destroy(new Error('the answer is too large'))
          else chunks.push(chunk)
        })
        response.once('error', reject)
        response.once('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          const json = (response.headers['content-type'] ?? '').includes('json')
          try {
            resolve({status: response.statusCode ?? 0, body: json && text !== '' ? JSON.parse(text) : text})
          } catch {
            resolve({status: response.statusCode ?? 0, body: text})
          }
        })
      })
      outgoing.end(body)
    }).finally(() => stream.destroy())
  }
}
