import http from 'node:http'
import https from 'node:https'
import type {Duplex} from 'node:stream'

import type {Logger} from '../log.js'
import type {CredentialSource, KubernetesCredentials} from './agent-dial.js'
import {describeError} from './net.js'
import {failResponse, refuse, relayRequest, relayUpgrade, type Relay} from './reverse-proxy.js'
import {withSocketMethods} from './stream-agent.js'

/** How long fetched credentials are used before they are read again (a rotated token is seen within it). */
export const credentialsTtlMs = 1000

/**
 * The agent's kubernetes destination. Each tunnel stream is an HTTP/1.1 connection from the proxy, served by
 * Node's HTTP server (no listener: streams are handed to it), and every request on it, not only the first, is
 * relayed to the member's kube-apiserver with the member's own credential in place of any the request
 * carried. Upstream connections are kept alive and shared by all streams, so a request costs no TLS
 * handshake; the member's credential never leaves the member.
 */
export class MemberApiRelay {
  private readonly server: http.Server
  private readonly upstreamAgent = new https.Agent({keepAlive: true, scheduling: 'lifo'})
  private readonly credentials: CredentialSource

  constructor(
    source: CredentialSource,
    private readonly cluster: string,
    private readonly log: Logger,
    ttlMs = credentialsTtlMs,
  ) {
    this.credentials = cachedCredentials(source, ttlMs)
    // A watch or a large upload may take any time; the proxy decides when a request is abandoned.
    this.server = http.createServer({requestTimeout: 0, headersTimeout: 0, keepAliveTimeout: 0})
    this.server.on('request', (request: http.IncomingMessage, response: http.ServerResponse) => {
      void this.relay(
        request.url ?? '/',
        (relay) => relayRequest(request, response, relay),
        (message) => {
          failResponse(response, 502, message)
        },
      )
    })
    this.server.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.relay(
        request.url ?? '/',
        (relay) => relayUpgrade(request, socket, head, relay),
        (message) => {
          refuse(socket, 502, message)
        },
      )
    })
    this.server.on('clientError', (_error, socket: Duplex) => socket.destroy())
  }

  /** Takes an accepted tunnel stream as one HTTP connection. */
  serve(stream: Duplex): void {
    this.server.emit('connection', withSocketMethods(stream))
  }

  private async relay(
    path: string,
    send: (relay: Relay) => void,
    fail: (message: string) => void,
  ): Promise<void> {
    let credentials: KubernetesCredentials
    try {
      credentials = await this.credentials()
    } catch (error) {
      this.log.warn('cannot read the member credentials', {reason: describeError(error)})
      fail(`the agent of cluster ${this.cluster} cannot read its credentials for kube-apiserver`)
      return
    }
    const {address} = credentials
    send({
      options: {
        ...credentials.tls,
        agent: this.upstreamAgent,
        protocol: 'https:',
        host: address.host,
        port: address.port,
        path,
        setHost: false,
      },
      stripAuthorization: true,
      extraHeaders:
        credentials.authorization === undefined ? [] : ['Authorization', credentials.authorization],
      fail: (error) => {
        const reason = describeError(error)
        this.log.warn('cannot reach the member kube-apiserver', {reason})
        fail(
          `the agent of cluster ${this.cluster} cannot reach kube-apiserver at ${address.host}:${address.port}: ${reason}`,
        )
      },
    })
  }
}

/** One read at a time, reused for `ttlMs`; a failed read is not kept. */
export function cachedCredentials(source: CredentialSource, ttlMs: number): CredentialSource {
  let cached: {value: Promise<KubernetesCredentials>; until: number} | undefined
  return () => {
    const now = performance.now()
    if (cached !== undefined && now < cached.until) return cached.value
    const value = source()
    const entry = {value, until: now + ttlMs}
    cached = entry
    value.catch(() => {
      if (cached === entry) cached = undefined
    })
    return value
  }
}
