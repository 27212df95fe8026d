import {Counter, Gauge, Histogram, Registry} from 'prom-client'

import type {TunnelStream} from '../../tunnel/index.js'

/** Why an authentication (or, at the front ends, an authorization) failed; a fixed set, so labels never carry what a client sent. */
export type AuthFailureReason =
  | 'bad_credentials'
  | 'rate_limited'
  | 'no_token'
  | 'no_client_certificate'
  | 'untrusted_client_certificate'
  | 'expired_client_certificate'
  | 'unbound_client_certificate'
  | 'wrong_cluster'
  | 'impersonation_header'
  | 'unforwardable_identity'

export type AuthEndpoint = 'agent' | 'front_end'

/** How an agent's handover to a rotated token went: the new session is live, the proxy refused it, or no connection. */
export type TokenHandoverOutcome = 'succeeded' | 'refused' | 'failed'

/** Why an authenticated agent's upgrade was refused; a fixed set. */
export type AgentRefusalReason = 'no_subprotocol' | 'unsupported_subprotocol'

/**
 * The Prometheus metrics of one tower process. Each instance has its own registry so several proxies and agents
 * can run in one test process. Labels are cluster names the registry knows, directions and fixed reasons only.
 */
export class TowerMetrics {
  readonly registry = new Registry()
  readonly sessions: Gauge<'cluster'>
  readonly streamsOpen: Gauge<'cluster'>
  readonly streamBytes: Counter<'cluster' | 'direction'>
  readonly streamOpenSeconds: Histogram<'cluster' | 'outcome'>
  readonly authFailures: Counter<'endpoint' | 'reason'>
  readonly agentRefused: Counter<'reason'>
  readonly frontEndRequests: Counter<'cluster' | 'protocol'>
  readonly reconnects: Counter
  readonly tokenHandovers: Counter<'outcome'>
  readonly agentConnected: Gauge

  constructor() {
    const registers = [this.registry]
    this.sessions = new Gauge({
      name: 'ksctl_tower_sessions',
      help: 'Live agent sessions per cluster',
      labelNames: ['cluster'],
      registers,
    })
    this.streamsOpen = new Gauge({
      name: 'ksctl_tower_streams_open',
      help: 'Tunnel streams currently open per cluster',
      labelNames: ['cluster'],
      registers,
    })
    this.streamBytes = new Counter({
      name: 'ksctl_tower_stream_bytes_total',
      help: 'Stream payload bytes per cluster; direction to_agent or from_agent',
      labelNames: ['cluster', 'direction'],
      registers,
    })
    this.streamOpenSeconds = new Histogram({
      name: 'ksctl_tower_stream_open_seconds',
      help: 'Time from opening a stream to the answer of the agent (outcome accepted or failed)',
      labelNames: ['cluster', 'outcome'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    })
    this.authFailures = new Counter({
      name: 'ksctl_tower_auth_failures_total',
      help: 'Rejected authentications: agents at the tunnel listener; clients at the front ends, and their certificates refused for the cluster or the request',
      labelNames: ['endpoint', 'reason'],
      registers,
    })
    this.agentRefused = new Counter({
      name: 'ksctl_tower_agent_upgrades_refused_total',
      help: 'Agents refused before the upgrade although their token was good: no_subprotocol or unsupported_subprotocol',
      labelNames: ['reason'],
      registers,
    })
    this.frontEndRequests = new Counter({
      name: 'ksctl_tower_front_end_requests_total',
      help: 'Requests forwarded from the front ends per cluster; protocol h2 or http/1.1 (upgrades included)',
      labelNames: ['cluster', 'protocol'],
      registers,
    })
    this.reconnects = new Counter({
      name: 'ksctl_tower_agent_reconnects_total',
      help: 'Connection attempts of the agent after the first one',
      registers,
    })
    this.tokenHandovers = new Counter({
      name: 'ksctl_tower_agent_token_handovers_total',
      help: 'Handovers of the agent to a rotated token: succeeded, refused (by the proxy) or failed (no connection)',
      labelNames: ['outcome'],
      registers,
    })
    this.agentConnected = new Gauge({
      name: 'ksctl_tower_agent_connected',
      help: '1 while the agent holds a live session to the proxy',
      registers,
    })
  }

  private readonly refreshers: (() => void)[] = []

  /** Registers a function that updates gauges read from live state just before each scrape. */
  beforeRender(refresh: () => void): void {
    this.refreshers.push(refresh)
  }

  /**
   * Counts a stream's payload bytes: what arrives as it is read, what was sent once the stream closed.
   * `received` is the direction of what this side reads (from_agent on the proxy, to_agent on the agent).
   */
  countStreamBytes(cluster: string, stream: TunnelStream, received: 'to_agent' | 'from_agent'): void {
    const sent = received === 'to_agent' ? 'from_agent' : 'to_agent'
    stream.on('data', (chunk: Buffer) => this.streamBytes.inc({cluster, direction: received}, chunk.length))
    stream.once('close', () => this.streamBytes.inc({cluster, direction: sent}, stream.stats.bytesSent))
  }

  authFailure(endpoint: AuthEndpoint, reason: AuthFailureReason): void {
    this.authFailures.inc({endpoint, reason})
  }

  tokenHandover(outcome: TokenHandoverOutcome): void {
    this.tokenHandovers.inc({outcome})
  }

  agentRefusal(reason: AgentRefusalReason): void {
    this.agentRefused.inc({reason})
  }

  async render(): Promise<string> {
    for (const refresh of this.refreshers) refresh()
    return this.registry.metrics()
  }
}
