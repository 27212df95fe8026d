import http from 'node:http'
import https from 'node:https'
import type {AddressInfo} from 'node:net'
import type {Duplex} from 'node:stream'

import {WebSocketServer} from 'ws'

import type {Logger} from '../../log.js'
import {
  selectSubprotocol,
  SUBPROTOCOL,
  TunnelSession,
  webSocketOptions,
  webSocketTransport,
} from '../../tunnel/index.js'
import {clusterHeader, connectPath} from '../shared/agent-link.js'
import {FailureLimiter, tokensEqual} from './auth.js'
import type {TowerMetrics} from '../shared/metrics.js'
import {listen, type ListenAddress} from '../shared/net.js'
import {refuse} from '../shared/reverse-proxy.js'
import type {ClusterRegistry, RegisteredCluster} from './registry.js'
import {credentialOf, type SessionPool} from './session-pool.js'

/** Compared against when the cluster is unknown, so both failures take the same time and give the same answer. */
const placeholderToken = 'ksctl-no-such-cluster-placeholder-token'
const unknownCluster: RegisteredCluster = {name: '', token: placeholderToken}

export interface AgentListenerOptions {
  address: ListenAddress
  /** Serving certificate of the agent listener; undefined with --insecure-plain. */
  tls: {certPem: string; keyPem: string} | undefined
  registry: ClusterRegistry
  pool: SessionPool
  log: Logger
  metrics: TowerMetrics
  limiter?: FailureLimiter
  pingIntervalMs?: number
  goAwayGraceMs?: number
  /** Unread data one agent's session may hold (PROTOCOL.md §8.2); the protocol's default otherwise. */
  bufferBudgetBytes?: number
  /** Plain HTTP requests served beside the agents' upgrades (the join exchange, JOIN-EXCHANGE.md). */
  requests?: AgentListenerRequests
  /** The clock a token's lifetime is measured on (ms since the epoch). */
  now?: () => number
}

/** Plain HTTP requests of the agent listener that are not an agent's, such as the join exchange. */
export interface AgentListenerRequests {
  handles(path: string): boolean
  serve(request: http.IncomingMessage, response: http.ServerResponse): void
}

/**
 * The agents' WebSocket listener. Authenticates each upgrade request before the upgrade: the cluster name in a
 * header, its token as a bearer credential, compared in constant time. A wrong token and an unknown cluster get
 * the same 401; the failures of a source that failed too often get 429 for a while, but a correct token is always
 * let in. An agent that does not offer the tunnel's sub-protocol gets 400 saying which one to speak, and never a
 * session.
 */
export class AgentListener {
  private readonly limiter: FailureLimiter
  private readonly webSockets = new WebSocketServer({
    noServer: true,
    ...webSocketOptions,
    handleProtocols: selectSubprotocol,
  })

  private constructor(
    private readonly server: http.Server,
    private readonly options: AgentListenerOptions,
  ) {
    this.limiter = options.limiter ?? new FailureLimiter()
    server.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) =>
      this.upgrade(request, socket, head),
    )
  }

  static async start(options: AgentListenerOptions): Promise<AgentListener> {
    const handler = (request: http.IncomingMessage, response: http.ServerResponse): void => {
      if (options.requests?.handles((request.url ?? '').split('?')[0] ?? '') === true) {
        options.requests.serve(request, response)
        return
      }
      // Tower's readiness probe is GET /health on this port.
      const ok = request.url === '/health' || request.url === '/healthz'
      response.writeHead(ok ? 200 : 404, {'content-type': 'text/plain'})
      response.end(ok ? 'OK' : 'not found\n')
    }
    const server =
      options.tls === undefined
        ? http.createServer(handler)
        : https.createServer({cert: options.tls.certPem, key: options.tls.keyPem}, handler)
    const listener = new AgentListener(server, options)
    await listen(server, options.address)
    return listener
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port
  }

  /** A renewed serving certificate for the agents that connect next; connected ones keep their session. */
  replaceCertificate(tls: {certPem: string; keyPem: string}): void {
    if (this.server instanceof https.Server)
      this.server.setSecureContext({cert: tls.certPem, key: tls.keyPem})
  }

  private now(): number {
    return this.options.now?.() ?? Date.now()
  }

  /** Stops accepting agents; sessions already up are shut down by the pool. */
  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private upgrade(request: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const {log, metrics, registry} = this.options
    const source = request.socket.remoteAddress ?? 'unknown'
    const path = (request.url ?? '').split('?')[0]
    if (path !== connectPath) {
      refuse(socket, 404)
      return
    }
    const name = headerValue(request, clusterHeader)
    const presented = /^Bearer (.+)$/.exec(headerValue(request, 'authorization') ?? '')?.[1] ?? ''
    if (presented === '') {
      // No credential is no guess at one: a probe or a misconfigured client, refused without counting against its
      // address (which agents behind the same NAT share) and without a line per attempt.
      metrics.authFailure('agent', 'no_token')
      refuse(socket, 401)
      return
    }
    // The token is checked before the limiter is asked: a correct token is never refused for what other clients
    // of its address did (agents behind one NAT, a flood of wrong guesses). Guessing a 256-bit token is hopeless
    // anyway; what the limiter bounds is the work of failures: once a source failed often, its failures get a 429
    // without a warning line each.
    const cluster = name === undefined ? undefined : registry.get(name)
    const token = acceptedToken(presented, cluster ?? unknownCluster, this.now())
    if (cluster === undefined || token === undefined) {
      this.refuseFailure(socket, source, name)
      return
    }
    const offered = offeredSubprotocols(request)
    if (selectSubprotocol(new Set(offered)) === false) {
      // ws would complete the upgrade without a sub-protocol; PROTOCOL.md §1.1 says the server refuses instead.
      metrics.agentRefusal(offered.length === 0 ? 'no_subprotocol' : 'unsupported_subprotocol')
      const shown = offered.length === 0 ? 'none' : offered.slice(0, 4).map(sanitize).join(', ')
      log.warn('refused an agent that does not speak the ksctl tunnel protocol', {
        cluster: cluster.name,
        source,
        offered: shown,
      })
      refuse(
        socket,
        400,
        `this is a ksctl tower proxy: an agent must offer the WebSocket sub-protocol ${SUBPROTOCOL} ` +
          `(offered: ${shown}); run ksctl tower agent, or point KubeSphere's Tower agent at Tower's proxy`,
      )
      return
    }
    this.webSockets.handleUpgrade(request, socket, head, (webSocket) => {
      const session = new TunnelSession(webSocketTransport(webSocket), {
        role: 'proxy',
        ...(this.options.pingIntervalMs !== undefined && {pingIntervalMs: this.options.pingIntervalMs}),
        ...(this.options.goAwayGraceMs !== undefined && {goAwayGraceMs: this.options.goAwayGraceMs}),
        ...(this.options.bufferBudgetBytes !== undefined && {
          bufferBudgetBytes: this.options.bufferBudgetBytes,
        }),
      })
      session.on('bufferLimit', (stream, heldBytes) =>
        log.warn('reset a stream whose reader stopped: the session held more unread data than its budget', {
          cluster: cluster.name,
          destination: stream.destination,
          heldBytes,
        }),
      )
      this.options.pool.add(cluster.name, session, credentialOf(token))
      log.info('agent connected', {
        cluster: cluster.name,
        source,
        sessions: this.options.pool.count(cluster.name),
      })
      session.once('close', (reason) => {
        log.info('agent disconnected', {
          cluster: cluster.name,
          source,
          reason: reason?.message ?? 'graceful',
          sessions: this.options.pool.count(cluster.name),
        })
      })
    })
  }

  /**
   * A wrong token or an unknown cluster: 401, counted against the source address; once the source failed too often,
   * 429 with Retry-After and no warning per attempt, until the block ends.
   */
  private refuseFailure(socket: Duplex, source: string, name: string | undefined): void {
    const {log, metrics} = this.options
    const blockedMs = this.limiter.blockedFor(source)
    if (blockedMs > 0) {
      metrics.authFailure('agent', 'rate_limited')
      refuse(socket, 429, undefined, {'Retry-After': String(Math.ceil(blockedMs / 1000))})
      return
    }
    metrics.authFailure('agent', 'bad_credentials')
    // The name is what the client claimed; it is logged (sanitised) to help find a misconfigured agent.
    log.warn('rejected an agent: unknown cluster or wrong token', {source, cluster: sanitize(name)})
    if (this.limiter.recordFailure(source)) {
      log.warn(
        'too many failed agent authentications from one address: answering its failures with 429 for a while',
        {
          source,
          blockedSeconds: Math.ceil(this.limiter.blockedFor(source) / 1000),
        },
      )
    }
    refuse(socket, 401)
  }
}

/**
 * The cluster's token that `presented` is, or undefined: its current one while it has not expired, or the next
 * one during a rotation. Both comparisons always run, in constant time, so that the answer's timing says nothing
 * of which matched or whether a rotation is under way.
 */
export function acceptedToken(
  presented: string,
  cluster: RegisteredCluster,
  now: number,
): string | undefined {
  const current = tokensEqual(presented, cluster.token)
  const next = tokensEqual(presented, cluster.nextToken ?? placeholderToken)
  const expired = cluster.tokenExpiresAt !== undefined && now >= cluster.tokenExpiresAt
  if (current && !expired) return cluster.token
  if (next && cluster.nextToken !== undefined) return cluster.nextToken
  return undefined
}

function headerValue(request: http.IncomingMessage, name: string): string | undefined {
  const value = request.headers[name]
  return Array.isArray(value) ? value[0] : value
}

/** The tokens of Sec-WebSocket-Protocol, however many header lines carry them. */
function offeredSubprotocols(request: http.IncomingMessage): string[] {
  return (request.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((token) => token.trim())
    .filter((token) => token !== '')
}

function sanitize(value: string | undefined): string {
  return (value ?? '').replace(/[^a-z0-9.-]/gi, '?').slice(0, 64)
}
