import http from 'node:http'
import type {Duplex} from 'node:stream'

import type {Logger} from '../../log.js'
import {
  isKnownErrorCode,
  OpenRefusedError,
  TunnelError,
  WireErrorCode,
  type TunnelStream,
} from '../../tunnel/index.js'
import type {TowerMetrics} from '../shared/metrics.js'
import {
  failResponse,
  noHeaders,
  refuse,
  relayRequest,
  relayUpgrade,
  UnsendableHeadError,
  type FrontEndRequest,
  type FrontEndResponse,
} from '../shared/reverse-proxy.js'
import {NoSessionError, type SessionPool} from './session-pool.js'
import {StreamAgent} from '../shared/stream-agent.js'
import {
  identityGroupHeader,
  identityHeaders,
  identityUserHeader,
  type ClientIdentity,
} from '../shared/identity.js'

/** Where a front-end request goes: a cluster, one of its agent's destinations, and the upstream request path. */
export interface ForwardTarget {
  cluster: string
  destination: string
  path: string
  /**
   * Who asks, from the client's certificate, on the kubernetes destination: stated to the agent, which impersonates
   * it, while the client's own Authorization is dropped (the agent adds the member's credential). Undefined on the
   * other destinations, which authenticate their own users by the client's Authorization, kept.
   */
  identity: ClientIdentity | undefined
}

/** On the kubernetes destination the member's credential replaces the client's, and only the proxy says who asks. */
const replacedOnKubernetes: ReadonlySet<string> = new Set([
  'authorization',
  identityUserHeader,
  identityGroupHeader,
])

/**
 * Forwards front-end HTTP requests through the tunnel as raw HTTP/1.1 on tunnel streams, written by Node's
 * HTTP client: one keep-alive {@link StreamAgent} per cluster and destination, so a stream carries one request
 * after another, and a new one is opened only when every kept stream is busy. Upgrades (websocket, SPDY) take
 * a stream of their own, which leaves the pool. Bodies and responses stream with backpressure both ways.
 */
export class Forwarder {
  /** cluster → destination → agent */
  private readonly agents = new Map<string, Map<string, StreamAgent>>()

  constructor(
    private readonly pool: SessionPool,
    private readonly metrics: TowerMetrics,
    private readonly log: Logger,
  ) {}

  forward(request: FrontEndRequest, response: FrontEndResponse, target: ForwardTarget): void {
    this.metrics.frontEndRequests.inc({
      cluster: target.cluster,
      protocol: request.httpVersionMajor === 2 ? 'h2' : 'http/1.1',
    })
    relayRequest(request, response, {
      ...relayedHeaders(target),
      options: {agent: this.agentFor(target), path: target.path, setHost: false},
      fail: (error) => {
        const failure = forwardFailure(target, error)
        this.log.debug('forwarded request failed', {cluster: target.cluster, reason: error.message})
        failResponse(response, failure.status, failure.message, target)
      },
    })
  }

  forwardUpgrade(request: http.IncomingMessage, socket: Duplex, head: Buffer, target: ForwardTarget): void {
    this.metrics.frontEndRequests.inc({cluster: target.cluster, protocol: 'http/1.1'})
    relayUpgrade(request, socket, head, {
      ...relayedHeaders(target),
      options: {agent: this.agentFor(target), path: target.path, setHost: false},
      fail: (error) => {
        const failure = forwardFailure(target, error)
        refuse(socket, failure.status, failure.message)
      },
    })
  }

  /** Drops the kept streams and agents of clusters no longer registered (their sessions are closed too). */
  forgetClustersExcept(registered: Set<string>): void {
    for (const [cluster, byDestination] of this.agents) {
      if (registered.has(cluster)) continue
      for (const agent of byDestination.values()) agent.destroy()
      this.agents.delete(cluster)
    }
  }

  private agentFor(target: ForwardTarget): StreamAgent {
    let byDestination = this.agents.get(target.cluster)
    if (byDestination === undefined) {
      byDestination = new Map()
      this.agents.set(target.cluster, byDestination)
    }
    let agent = byDestination.get(target.destination)
    if (agent === undefined) {
      agent = new StreamAgent(() => this.open(target))
      byDestination.set(target.destination, agent)
    }
    return agent
  }

  private async open(target: ForwardTarget): Promise<TunnelStream> {
    const started = performance.now()
    const labels = {cluster: target.cluster}
    try {
      const stream = await this.pool.openStream(target.cluster, target.destination)
      this.metrics.streamOpenSeconds.observe(
        {...labels, outcome: 'accepted'},
        (performance.now() - started) / 1000,
      )
      this.metrics.countStreamBytes(target.cluster, stream, 'from_agent')
      return stream
    } catch (error) {
      this.metrics.streamOpenSeconds.observe(
        {...labels, outcome: 'failed'},
        (performance.now() - started) / 1000,
      )
      throw error
    }
  }
}

function relayedHeaders(target: ForwardTarget): {
  strippedHeaders: ReadonlySet<string>
  extraHeaders: string[]
} {
  return target.identity === undefined
    ? {strippedHeaders: noHeaders, extraHeaders: []}
    : {strippedHeaders: replacedOnKubernetes, extraHeaders: identityHeaders(target.identity)}
}

/** 403 when the agent does not serve the destination (a setting to change), 502 when it cannot now. */
function forwardFailure(target: ForwardTarget, error: unknown): {status: number; message: string} {
  const {cluster, destination} = target
  if (error instanceof NoSessionError) return {status: 502, message: error.message}
  if (
    error instanceof OpenRefusedError &&
    isKnownErrorCode(error.wireCode) &&
    error.wireCode === WireErrorCode.DestinationNotAllowed
  ) {
    return {
      status: 403,
      message: `the agent of cluster ${cluster} does not allow destination ${destination}: start it with --allow ${destination}=HOST:PORT`,
    }
  }
  if (error instanceof UnsendableHeadError) {
    return {
      status: 502,
      message: `cluster ${cluster} answered with a response head HTTP/2 cannot carry (${error.message}): retry the request over HTTP/1.1`,
    }
  }
  if (error instanceof TunnelError && error.code === 'TUNNEL_ERR_OPEN_REFUSED') {
    return {
      status: 502,
      message: `the agent of cluster ${cluster} cannot reach ${destination}: ${error.message}`,
    }
  }
  return {status: 502, message: `the connection to cluster ${cluster} broke`}
}
