import http from 'node:http'
import https from 'node:https'
import type {AddressInfo, Server} from 'node:net'
import type {Duplex} from 'node:stream'
import type {TLSSocket} from 'node:tls'

import type {Logger} from '../log.js'
import {isValidDestination} from '../tunnel/index.js'
import {kubernetesDestination, kubesphereDestination} from './agent-dial.js'
import type {ForwardTarget, Forwarder} from './http-forward.js'
import type {AuthFailureReason, TowerMetrics} from './metrics.js'
import {listen, type ListenAddress} from './net.js'
import {failResponse, refuse} from './reverse-proxy.js'
import type {ClusterRegistry, RegisteredCluster} from './registry.js'

export interface FrontEndOptions {
  forwarder: Forwarder
  registry: ClusterRegistry
  log: Logger
  metrics: TowerMetrics
  /** Serving certificate of the HTTPS front ends, signed by the proxy CA. */
  serving: {certPem: string; keyPem: string}
  /** The proxy CA: client certificates must chain to it. */
  caPem: string
  /** Host the per-cluster ports bind to. */
  host: string
}

type Route = (request: http.IncomingMessage) => ForwardTarget | undefined

interface ClusterListeners {
  kubernetes?: {port: number; server: Server}
  kubesphere?: {port: number; server: Server}
}

const clustersPrefix = /^\/clusters\/([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\/[^?]*)?(\?.*)?$/
/** No Kubernetes API path starts with `/destinations/`, so the kubernetes destination keeps every path. */
const destinationPrefix = /^\/destinations\/([a-z0-9][a-z0-9._-]*)(\/[^?]*)?(\?.*)?$/

export interface PathRoute {
  cluster: string
  destination: string
  path: string
}

/**
 * `/clusters/NAME/rest?query` → cluster NAME's kube-apiserver, path `/rest?query` (`/` when nothing follows
 * the name); `/clusters/NAME/destinations/DEST/rest` → the agent's destination DEST (kubesphere, or an
 * `--allow` name), path `/rest`.
 */
export function routeByPath(url: string): PathRoute | undefined {
  const match = clustersPrefix.exec(url)
  if (match === null) return undefined
  const cluster = match[1] ?? ''
  const path = `${match[3] ?? '/'}${match[4] ?? ''}`
  const other = destinationPrefix.exec(path)
  if (other === null || !isValidDestination(other[1] ?? '')) {
    return {cluster, destination: kubernetesDestination, path}
  }
  return {cluster, destination: other[1] ?? '', path: `${other[2] ?? '/'}${other[3] ?? ''}`}
}

/** Why a TLS client did not authenticate, or undefined when its certificate chains to the proxy CA. */
export function clientCertificateFailure(socket: TLSSocket): AuthFailureReason | undefined {
  if (socket.authorized) return undefined
  const certificate = socket.getPeerCertificate()
  if (Object.keys(certificate).length === 0) return 'no_client_certificate'
  const code = String(socket.authorizationError)
  return code === 'CERT_HAS_EXPIRED' ? 'expired_client_certificate' : 'untrusted_client_certificate'
}

/**
 * The host-side entry points to member clusters: one path-routed HTTPS port for all clusters, and Tower's
 * per-cluster ports (HTTPS to kubernetes, HTTP to kubesphere). Every HTTPS front end requires a client
 * certificate from the proxy CA (401 otherwise) and drops the client's Authorization before forwarding.
 */
export class FrontEnds {
  private pathRouted: Server | undefined
  private readonly perCluster = new Map<string, ClusterListeners>()
  private syncing: Promise<void> = Promise.resolve()

  constructor(private readonly options: FrontEndOptions) {}

  async startPathRouted(address: ListenAddress): Promise<void> {
    const server = this.httpsServer((request) => {
      const route = routeByPath(request.url ?? '/')
      if (route === undefined || this.options.registry.get(route.cluster) === undefined) return undefined
      // Only the kubernetes destination gets the member's credential from the agent; any other authenticates
      // its own users (as ks-apiserver does with its JWT), so the client's Authorization is its credential.
      return {...route, stripAuthorization: route.destination === kubernetesDestination}
    })
    await listen(server, address)
    this.pathRouted = server
  }

  get pathRoutedPort(): number | undefined {
    return (this.pathRouted?.address() as AddressInfo | null)?.port
  }

  /** Per-cluster ports currently open: {cluster: {kubernetes, kubesphere}}. */
  clusterPorts(name: string): {kubernetes?: number; kubesphere?: number} {
    const listeners = this.perCluster.get(name)
    return {kubernetes: listeners?.kubernetes?.port, kubesphere: listeners?.kubesphere?.port}
  }

  /** Opens and closes per-cluster ports to match the registry; changes are applied one sync at a time. */
  sync(): Promise<void> {
    this.syncing = this.syncing
      .then(() => this.applyRegistry())
      .catch((error: unknown) => {
        this.options.log.error('cannot open a per-cluster port', {
          reason: error instanceof Error ? error.message : String(error),
        })
      })
    return this.syncing
  }

  /** Stops accepting connections; idle keep-alive connections close now, the rest when their request ends. */
  stopAccepting(): void {
    for (const server of this.servers()) {
      server.close()
      if (server instanceof http.Server) server.closeIdleConnections()
    }
  }

  /** Closes every connection still open. */
  closeAll(): void {
    for (const server of this.servers()) {
      server.close()
      if (server instanceof http.Server) server.closeAllConnections()
    }
  }

  private servers(): Server[] {
    const servers: Server[] = this.pathRouted === undefined ? [] : [this.pathRouted]
    for (const listeners of this.perCluster.values()) {
      if (listeners.kubernetes !== undefined) servers.push(listeners.kubernetes.server)
      if (listeners.kubesphere !== undefined) servers.push(listeners.kubesphere.server)
    }
    return servers
  }

  private async applyRegistry(): Promise<void> {
    const wanted = new Map(this.options.registry.list().map((cluster) => [cluster.name, cluster]))
    for (const [name, listeners] of this.perCluster) {
      const cluster = wanted.get(name)
      if (listeners.kubernetes !== undefined && listeners.kubernetes.port !== cluster?.kubernetesPort) {
        closeServer(listeners.kubernetes.server)
        delete listeners.kubernetes
      }
      if (listeners.kubesphere !== undefined && listeners.kubesphere.port !== cluster?.kubespherePort) {
        closeServer(listeners.kubesphere.server)
        delete listeners.kubesphere
      }
      if (cluster === undefined) this.perCluster.delete(name)
    }
    for (const cluster of wanted.values()) await this.openClusterPorts(cluster)
  }

  private async openClusterPorts(cluster: RegisteredCluster): Promise<void> {
    const listeners = this.perCluster.get(cluster.name) ?? {}
    this.perCluster.set(cluster.name, listeners)
    const name = cluster.name
    if (cluster.kubernetesPort !== undefined && listeners.kubernetes === undefined) {
      const server = this.httpsServer((request) => ({
        cluster: name,
        destination: kubernetesDestination,
        path: request.url ?? '/',
        stripAuthorization: true,
      }))
      await listen(server, {host: this.options.host, port: cluster.kubernetesPort})
      listeners.kubernetes = {port: cluster.kubernetesPort, server}
    }
    if (cluster.kubespherePort !== undefined && listeners.kubesphere === undefined) {
      // ks-apiserver authenticates its own users (the KubeSphere JWT in Authorization), as with Tower: the
      // agent adds nothing for this destination, so the client's header is the credential and is kept.
      const route: Route = (request) => ({
        cluster: name,
        destination: kubesphereDestination,
        path: request.url ?? '/',
        stripAuthorization: false,
      })
      const server = http.createServer((request, response) =>
        this.options.forwarder.forward(request, response, route(request) as ForwardTarget),
      )
      server.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
        this.options.forwarder.forwardUpgrade(request, socket, head, route(request) as ForwardTarget)
      })
      await listen(server, {host: this.options.host, port: cluster.kubespherePort})
      listeners.kubesphere = {port: cluster.kubespherePort, server}
    }
  }

  private httpsServer(route: Route): https.Server {
    const {forwarder, metrics, log} = this.options
    const server = https.createServer({
      cert: this.options.serving.certPem,
      key: this.options.serving.keyPem,
      ca: this.options.caPem,
      requestCert: true,
      // Verified below, so that a client without a good certificate gets an HTTP 401 it can understand.
      rejectUnauthorized: false,
    })
    const authenticate = (request: http.IncomingMessage): boolean => {
      const failure = clientCertificateFailure(request.socket as TLSSocket)
      if (failure === undefined) return true
      metrics.authFailure('front_end', failure)
      log.warn('rejected a client at a front end', {
        reason: failure,
        source: request.socket.remoteAddress ?? 'unknown',
      })
      return false
    }
    server.on('request', (request: http.IncomingMessage, response: http.ServerResponse) => {
      if (!authenticate(request)) {
        failResponse(
          response,
          401,
          'Unauthorized: a client certificate issued by the ksctl proxy CA is required',
        )
        return
      }
      const target = route(request)
      if (target === undefined) {
        failResponse(response, 404, 'no such cluster: use /clusters/NAME/…')
        return
      }
      forwarder.forward(request, response, target)
    })
    server.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      if (!authenticate(request)) {
        refuse(socket, 401)
        return
      }
      const target = route(request)
      if (target === undefined) {
        refuse(socket, 404)
        return
      }
      forwarder.forwardUpgrade(request, socket, head, target)
    })
    return server
  }
}

function closeServer(server: Server): void {
  server.close()
  if (server instanceof http.Server) server.closeAllConnections()
}
