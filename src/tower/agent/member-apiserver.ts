import http from 'node:http'
import https from 'node:https'
import tls from 'node:tls'
import type {Duplex} from 'node:stream'

import type {Logger} from '../../log.js'
import type {CredentialSource, KubernetesCredentials} from './agent-dial.js'
import {relayRequestOverHttp2} from './http2-relay.js'
import {Http2Sessions} from './http2-sessions.js'
import {describeError, hostPort} from '../shared/net.js'
import {
  failResponse,
  isBodiless,
  refuse,
  relayRequest,
  relayUpgrade,
  type Relay,
} from '../shared/reverse-proxy.js'
import {withSocketMethods} from '../shared/stream-agent.js'
import {
  identityGroupHeader,
  identityProblem,
  identityUserHeader,
  isImpersonationHeader,
  readIdentityHeaders,
  type ClientIdentity,
} from '../shared/identity.js'

/** How long fetched credentials are used before they are read again (a rotated token is seen within it). */
export const credentialsTtlMs = 1000
/** How long the check that kube-apiserver can be reached may take before a stream is refused (as a dial). */
const probeTimeoutMs = 10_000

/**
 * The agent's kubernetes destination. Each tunnel stream is an HTTP/1.1 connection from the proxy, served by
 * Node's HTTP server (no listener: streams are handed to it), and every request on it, not only the first, is
 * relayed to the member's kube-apiserver with the member's own credential in place of any the request
 * carried, impersonating the client's identity the proxy states; the member's credential never leaves the member,
 * and no request runs as the agent's own account. Requests ride HTTP/2 connections to
 * kube-apiserver, shared by all streams (many watches on one connection, no TLS handshake per request);
 * upgrades (exec, port-forward) and a server without HTTP/2 get kept-alive HTTP/1.1 connections.
 */
export class MemberApiRelay {
  private readonly server: http.Server
  private readonly upstreamAgent = new https.Agent({keepAlive: true, scheduling: 'lifo'})
  private readonly http2 = new Http2Sessions()
  private readonly credentials: CredentialSource
  /** kube-apiserver was reached since the last failure: streams are accepted without a check. */
  private upstreamReached = false

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
      const asked = this.identityOf(request)
      if (typeof asked === 'string') {
        failResponse(response, 403, asked)
        return
      }
      void this.relay(
        request.url ?? '/',
        asked,
        async (relay, credentials) => {
          const send = async (mayRetry: boolean): Promise<void> => {
            const reserved = await this.http2.reserve(credentials)
            if (reserved !== undefined) this.upstreamReached = true
            // The client may have gone while credentials were read or a connection opened.
            if (response.destroyed) reserved?.release()
            else if (reserved === undefined) relayRequest(request, response, relay)
            else {
              relayRequestOverHttp2(request, response, {
                ...reserved,
                authority: hostPort(credentials.address),
                path: request.url ?? '/',
                strippedHeaders: relay.strippedHeaders,
                extraHeaders: relay.extraHeaders ?? [],
                bodiless: isBodiless(request),
                fail: (error) => relay.fail(error),
                ...(mayRetry && {
                  retry: () => void send(false).catch((error: unknown) => relay.fail(asError(error))),
                }),
              })
            }
          }
          await send(true)
        },
        (message) => {
          // Not kept: the proxy's next request opens a new stream, which this agent refuses while kube-apiserver
          // cannot be reached, so that the proxy sends it to another agent of the cluster.
          response.setHeader('connection', 'close')
          failResponse(response, 502, message)
        },
      )
    })
    this.server.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      const asked = this.identityOf(request)
      if (typeof asked === 'string') {
        refuse(socket, 403, asked)
        return
      }
      void this.relay(
        request.url ?? '/',
        asked,
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

  /**
   * Whether a stream may be accepted: at once while kube-apiserver answers; after a failure (and at first) only
   * once a TLS connection to it succeeds. An ACK then means "reachable", as for the destinations the agent dials
   * (PROTOCOL.md §5.1), and the proxy sends the streams of an agent that cannot reach it to another agent.
   */
  async reachable(signal: AbortSignal): Promise<boolean> {
    if (this.upstreamReached) return true
    try {
      const {address, tls: options} = await this.credentials()
      await connectTls({...options, host: address.host, port: address.port}, signal)
      this.upstreamReached = true
    } catch (error) {
      this.log.warn('cannot reach the member kube-apiserver', {reason: describeError(error)})
    }
    return this.upstreamReached
  }

  /**
   * Who the request asks as: the identity the proxy stated, or why it is refused. Never none: a request without an
   * identity would reach kube-apiserver as the agent's own account. A client's own Impersonate-* header would have
   * kube-apiserver impersonate twice (it takes one level); the proxy refuses it, and so does the agent, whatever
   * sent it.
   */
  private identityOf(request: http.IncomingMessage): ClientIdentity | string {
    const impersonation = headerNames(request).find((name) => isImpersonationHeader(name.toLowerCase()))
    if (impersonation !== undefined) {
      this.log.warn('refused a request that asks to impersonate', {header: impersonation.toLowerCase()})
      return `Forbidden: the agent of cluster ${this.cluster} impersonates the identity the proxy verified and does not pass on ${impersonation}: issue a kubeconfig for the identity you need (ksctl tower issue-kubeconfig --user NAME --group GROUP)`
    }
    const identity = readIdentityHeaders(request.rawHeaders)
    if (identity === undefined || identityProblem(identity) !== undefined) {
      this.log.warn('refused a request that states no identity: the proxy must state one')
      return `Forbidden: the agent of cluster ${this.cluster} relays a request only as the client's identity, which this request does not state: the proxy must be a ksctl tower proxy that forwards identities`
    }
    return identity
  }

  private async relay(
    path: string,
    identity: ClientIdentity,
    send: (relay: Relay, credentials: KubernetesCredentials) => void | Promise<void>,
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
    const relay: Relay = {
      options: {
        ...credentials.tls,
        agent: this.upstreamAgent,
        protocol: 'https:',
        host: address.host,
        port: address.port,
        path,
        setHost: false,
      },
      strippedHeaders: replacedHeaders,
      // The agent's credential authenticates it; kube-apiserver then runs the request as the client it impersonates.
      extraHeaders: [
        ...(credentials.authorization === undefined ? [] : ['Authorization', credentials.authorization]),
        ...impersonationHeaders(identity),
      ],
      fail: (error) => {
        if (cannotConnect(error)) this.upstreamReached = false
        const reason = describeError(error)
        this.log.warn('cannot reach the member kube-apiserver', {reason})
        fail(
          `the agent of cluster ${this.cluster} cannot reach kube-apiserver at ${address.host}:${address.port}: ${reason}`,
        )
      },
    }
    try {
      await send(relay, credentials)
    } catch (error) {
      relay.fail(asError(error))
    }
  }
}

/** The client's Authorization (the member's credential takes its place) and the proxy's word on who asks. */
const replacedHeaders: ReadonlySet<string> = new Set([
  'authorization',
  identityUserHeader,
  identityGroupHeader,
])

function headerNames(request: http.IncomingMessage): string[] {
  return request.rawHeaders.filter((_, index) => index % 2 === 0)
}

/** Kubernetes impersonation of `identity`: Impersonate-User, and Impersonate-Group once per group. */
function impersonationHeaders(identity: ClientIdentity): string[] {
  return [
    'Impersonate-User',
    identity.user,
    ...identity.groups.flatMap((group) => ['Impersonate-Group', group]),
  ]
}

/** Failures to connect at all (not a stream the server reset): the next stream checks reachability first. */
const connectFailures = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
])

function cannotConnect(error: Error): boolean {
  const code = (error as {code?: unknown}).code
  // TLS verification failures (a wrong CA, an expired certificate) fail every connection the same way.
  return typeof code === 'string' && (connectFailures.has(code) || /CERT|SELF_SIGNED|UNABLE_TO/.test(code))
}

/** A TLS handshake with kube-apiserver, then the connection closes; rejects when it cannot be made in time. */
function connectTls(options: tls.ConnectionOptions, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(options)
    const onAbort = (): void => {
      socket.destroy(new Error('aborted'))
    }
    signal.addEventListener('abort', onAbort, {once: true})
    socket.setTimeout(probeTimeoutMs, () => socket.destroy(new Error('connection timed out')))
    socket.once('close', () => signal.removeEventListener('abort', onAbort))
    socket.once('secureConnect', () => {
      socket.destroy()
      resolve()
    })
    socket.once('error', reject)
  })
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error))
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
