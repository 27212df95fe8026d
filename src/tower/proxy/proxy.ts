import {isIP} from 'node:net'

import type {Logger} from '../../log.js'
import {issueCertificate, type CertificateAndKey} from '../../pki/certificates.js'
import {FrontEnds} from './front-ends.js'
import {OpsServer} from '../shared/health.js'
import {Forwarder} from './http-forward.js'
import {TowerMetrics} from '../shared/metrics.js'
import {parseListenAddress} from '../shared/net.js'
import {AgentListener, type AgentListenerRequests} from './agent-listener.js'
import {currentCa, type CurrentCa} from './current-ca.js'
import type {AgentPresence, ClusterRegistry} from './registry.js'
import {ServingCertificates, publishedNames} from './serving-certificates.js'
import {MemoryServingKeyStore, type ServingKeyStore} from './serving-key-store.js'
import {credentialOf, SessionPool} from './session-pool.js'
import {TunnelRequests} from './tunnel-requests.js'

export interface ProxyOptions {
  registry: ClusterRegistry
  /** The proxy CA; a {@link CurrentCa} that changes makes the proxy issue its serving certificates again. */
  ca: CertificateAndKey | CurrentCa
  /** Agents' WebSocket listener, host:port. */
  listen: string
  /**
   * Serving certificate of the agent listener: one given (--tls-cert), `'serving'` for the proxy's own (its kept
   * serving key, issued by the proxy CA and renewed), or undefined: plain ws (only with --insecure-plain).
   */
  agentTls: {certPem: string; keyPem: string} | 'serving' | undefined
  /** The path-routed HTTPS front end, host:port. */
  frontEnd: string
  /** Names and addresses the serving certificates are valid for, besides localhost and 127.0.0.1. */
  serverNames?: string[]
  /** Where the serving key is kept across restarts and replicas; in memory (a new key per start) by default. */
  servingKeyStore?: ServingKeyStore
  /** Validity of the serving certificates, renewed at two thirds of it; a year by default. */
  servingValidityMs?: number
  metricsAddress?: string
  log: Logger
  metrics?: TowerMetrics
  pingIntervalMs?: number
  goAwayGraceMs?: number
  bufferBudgetBytes?: number
  /** Plain HTTP requests the agent listener serves besides agents (Kubernetes mode: the join exchange). */
  agentRequests?: AgentListenerRequests
}

/**
 * The host side: the agents' listener, the pool of their sessions, the front ends that forward host clients
 * through them, and the health and metrics endpoints.
 */
export class TowerProxy {
  readonly metrics: TowerMetrics
  readonly pool: SessionPool
  private agentListener: AgentListener | undefined
  private frontEnds: FrontEnds | undefined
  private serving: ServingCertificates | undefined
  private readonly ca: CurrentCa
  private readonly forwarder: Forwarder
  private ops: OpsServer | undefined
  private stopping = false

  constructor(private readonly options: ProxyOptions) {
    this.metrics = options.metrics ?? new TowerMetrics()
    this.ca = currentCa(options.ca)
    this.pool = new SessionPool(
      {
        changed: (cluster, sessions) => {
          this.metrics.sessions.set({cluster}, sessions)
          const presence = this.presence(cluster)
          if (sessions === 0) options.registry.agentDisconnected(cluster, presence)
          else options.registry.agentConnected(cluster, presence)
        },
      },
      {log: options.log},
    )
    this.forwarder = new Forwarder(this.pool, this.metrics, options.log)
    options.registry.attachTunnel?.(new TunnelRequests(this.pool))
    this.metrics.beforeRender(() => {
      for (const cluster of options.registry.list()) {
        this.metrics.streamsOpen.set({cluster: cluster.name}, this.pool.streamsOpen(cluster.name))
      }
    })
  }

  async start(): Promise<void> {
    const {options, metrics, pool} = this
    const {log, registry} = options
    const serving = await ServingCertificates.open({
      ca: this.ca,
      store: options.servingKeyStore ?? new MemoryServingKeyStore(),
      publishedNames: [
        ...(options.serverNames ?? []),
        parseListenAddress(options.frontEnd, '--front-end').host,
        parseListenAddress(options.listen, '--listen').host,
      ],
      ...(options.servingValidityMs !== undefined && {validityMs: options.servingValidityMs}),
      log,
    })
    this.serving = serving
    await serving.refresh(registry.list())
    serving.onChange(() => this.servingChanged())
    this.frontEnds = new FrontEnds({
      forwarder: this.forwarder,
      registry,
      log,
      metrics,
      tls: serving,
      host: parseListenAddress(options.frontEnd, '--front-end').host,
    })
    await this.frontEnds.startPathRouted(parseListenAddress(options.frontEnd, '--front-end'))
    await this.frontEnds.sync()
    if (options.agentTls === undefined) {
      log.warn(
        'the agent listener is plain ws:// (--insecure-plain): agent tokens cross the network unencrypted',
      )
    }
    this.agentListener = await AgentListener.start({
      address: parseListenAddress(options.listen, '--listen'),
      tls: options.agentTls === 'serving' ? serving.certificate() : options.agentTls,
      registry,
      pool,
      log,
      metrics,
      ...(options.pingIntervalMs !== undefined && {pingIntervalMs: options.pingIntervalMs}),
      ...(options.goAwayGraceMs !== undefined && {goAwayGraceMs: options.goAwayGraceMs}),
      ...(options.bufferBudgetBytes !== undefined && {bufferBudgetBytes: options.bufferBudgetBytes}),
      ...(options.agentRequests !== undefined && {requests: options.agentRequests}),
    })
    registry.onChange(() => this.registryChanged())
    if (options.metricsAddress !== undefined) {
      this.ops = await OpsServer.start({address: options.metricsAddress, metrics, ready: () => this.ready})
    }
    log.info('tower proxy started', {
      agents: `${options.agentTls === undefined ? 'ws' : 'wss'}://${options.listen.replace(/:\d+$/, '')}:${this.agentPort}`,
      frontEnd: this.frontEndPort,
      clusters: registry.list().length,
      servingPin: serving.pin,
    })
  }

  get ready(): boolean {
    return !this.stopping && this.agentListener !== undefined
  }

  get agentPort(): number {
    return this.agentListener?.port ?? 0
  }

  get frontEndPort(): number {
    return this.frontEnds?.pathRoutedPort ?? 0
  }

  get metricsPort(): number | undefined {
    return this.ops?.port
  }

  clusterPorts(name: string): {kubernetes?: number; kubesphere?: number} {
    return this.frontEnds?.clusterPorts(name) ?? {}
  }

  /**
   * Graceful stop: no new agents or clients, GO_AWAY to every agent, open streams finish within the grace
   * period (the sessions reset what is left), then everything closes.
   */
  async stop(): Promise<void> {
    if (this.stopping) return
    this.stopping = true
    this.frontEnds?.stopAccepting()
    // The listener counts the agents' upgraded sockets as its connections: it closes once their sessions end.
    const listenerClosed = this.agentListener?.close()
    await this.pool.goAwayAll()
    await listenerClosed
    this.frontEnds?.closeAll()
    await this.ops?.close()
    await this.serving?.close()
    await this.options.registry.close()
  }

  /** `sha256:<hex>` of the serving key (the agent listener's with agentTls `'serving'`): an agent's --proxy-pin. */
  get servingPin(): string | undefined {
    return this.serving?.pin
  }

  /** Renewed serving certificates (or a new CA): the listeners take them for their next connections. */
  private async servingChanged(): Promise<void> {
    const serving = this.serving
    if (serving === undefined) return
    if (this.options.agentTls === 'serving') this.agentListener?.replaceCertificate(serving.certificate())
    await this.frontEnds?.reloadTls()
  }

  /**
   * A removed cluster loses its sessions, and so does a session on a token its cluster no longer accepts (replaced
   * by a rotation, or by hand) unless its agent already hands over to a new one; ports follow the registry.
   */
  private registryChanged(): void {
    const clusters = new Map(this.options.registry.list().map((cluster) => [cluster.name, cluster]))
    for (const name of this.pool.clusters()) {
      const cluster = clusters.get(name)
      const tokens = cluster === undefined ? [] : [cluster.token, cluster.nextToken ?? cluster.token]
      const accepted = new Set(tokens.map(credentialOf))
      this.pool.closeSessionsExcept(name, accepted)
    }
    this.forwarder.forgetClustersExcept(new Set(clusters.keys()))
    // The certificates first, so that a cluster's port opens with its own (its ClusterIP and DNS names).
    void this.serving?.refresh(this.options.registry.list()).then(() => this.frontEnds?.sync())
  }

  /** What the registry is told of a cluster's sessions: how many, and which token those still serving are on. */
  private presence(cluster: string): AgentPresence {
    const next = this.options.registry.get(cluster)?.nextToken
    const {sessions, servingOnNext, servingOnOthers} = this.pool.presence(
      cluster,
      next === undefined ? undefined : credentialOf(next),
    )
    return {sessions, servingOnNextToken: servingOnNext, servingOnOtherTokens: servingOnOthers}
  }
}

/** A serving certificate of a new key from the proxy CA, for tests and probes that need one outside a proxy. */
export async function serverCertificate(ca: CertificateAndKey, names: string[]): Promise<CertificateAndKey> {
  const all = publishedNames(names)
  const ipAddresses = all.filter((name) => isIP(name) !== 0)
  const dnsNames = all.filter((name) => isIP(name) === 0)
  return issueCertificate(ca, {
    commonName: 'ksctl-tower-proxy',
    dnsNames,
    ipAddresses,
    usage: 'server',
    validityDays: 365,
  })
}
