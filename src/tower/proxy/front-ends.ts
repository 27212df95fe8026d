import http from 'node:http'
import http2 from 'node:http2'
import type {Server} from 'node:net'
import type {Duplex} from 'node:stream'
import type {TLSSocket} from 'node:tls'

import type {Logger} from '../../log.js'
import {isValidDestination} from '../../tunnel/index.js'
import {kubernetesDestination, kubesphereDestination} from '../shared/agent-link.js'
import {PlainListener, SecureListener, type FrontEndListener} from './front-end-listener.js'
import type {ForwardTarget, Forwarder} from './http-forward.js'
import type {AuthFailureReason, TowerMetrics} from '../shared/metrics.js'
import {forbiddenClientHeader, identityProblem} from '../shared/identity.js'
import {certificateClaims} from './client-binding.js'
import {listen, type ListenAddress} from '../shared/net.js'
import {
  failResponse,
  refuse,
  refuseRequest,
  type FrontEndRequest,
  type FrontEndResponse,
} from '../shared/reverse-proxy.js'
import type {ClusterRegistry, RegisteredCluster} from './registry.js'

export interface FrontEndOptions {
  forwarder: Forwarder
  registry: ClusterRegistry
  log: Logger
  metrics: TowerMetrics
  /** Serving certificates of the HTTPS front ends and the CA client certificates must chain to. */
  tls: FrontEndTls
  /** Host the per-cluster ports bind to. */
  host: string
}

/** What the HTTPS front ends serve with, as it is now (the proxy renews it: see {@link FrontEnds.reloadTls}). */
export interface FrontEndTls {
  /** The serving certificate of a cluster's own kubernetes port, or (no cluster) of the path-routed port. */
  certificate(cluster?: string): {certPem: string; keyPem: string}
  /** The proxy CA: client certificates must chain to it. */
  readonly caPem: string
}

/** Where a request goes, before the proxy decides who it goes as. */
type Route = (request: FrontEndRequest) => Omit<ForwardTarget, 'identity'> | undefined

/** A request the front end answers itself: why, for the client and for the metrics. */
interface Refusal {
  status: 401 | 403 | 404
  message: string
  reason?: AuthFailureReason
}

/**
 * HTTP/2 settings of the HTTPS front ends. 1,000 streams on one connection is what Kubernetes' aggregated API
 * servers allow the proxy in front of them, for the same reason: one client carrying many watches. A stream's
 * window matches a tunnel stream's, so the front end buffers no more than the tunnel has in flight.
 */
const http2Settings = {maxConcurrentStreams: 1000, initialWindowSize: 256 * 1024}
/**
 * The connection's receive window holds every stream's whole window, so that only a stream's own window
 * stops it: a stalled upload never blocks the other requests on its connection.
 */
const http2SessionWindowBytes = http2Settings.maxConcurrentStreams * http2Settings.initialWindowSize

/** How long a per-cluster port that could not be opened waits before the next try. */
const portRetryMs = 5000

interface ClusterListeners {
  kubernetes?: {port: number; listener: SecureListener}
  kubesphere?: {port: number; listener: FrontEndListener}
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

/** `impersonate-user` (as HTTP/2 sends every name) as people write it: Impersonate-User. */
function headerCase(name: string): string {
  return name
    .toLowerCase()
    .split('-')
    .map((word) => word.charAt(0).toUpperCase() + word.slice(1))
    .join('-')
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
 * certificate from the proxy CA bound to the cluster asked for (401, 403 otherwise); towards kube-apiserver it drops
 * the client's Authorization and forwards the certificate's identity instead.
 */
export class FrontEnds {
  private pathRouted: SecureListener | undefined
  private readonly perCluster = new Map<string, ClusterListeners>()
  private syncing: Promise<void> = Promise.resolve()
  private retryTimer: NodeJS.Timeout | undefined
  private stopped = false

  constructor(private readonly options: FrontEndOptions) {}

  async startPathRouted(address: ListenAddress): Promise<void> {
    const server = this.httpsServer((request) => {
      const route = routeByPath(request.url ?? '/')
      if (route === undefined || this.options.registry.get(route.cluster) === undefined) return undefined
      return route
    })
    await listen(server, address)
    this.pathRouted = new SecureListener(server, http2SessionWindowBytes)
  }

  get pathRoutedPort(): number | undefined {
    return this.pathRouted?.port
  }

  /** Per-cluster ports currently open: {cluster: {kubernetes, kubesphere}}. */
  clusterPorts(name: string): {kubernetes?: number; kubesphere?: number} {
    const listeners = this.perCluster.get(name)
    return {kubernetes: listeners?.kubernetes?.port, kubesphere: listeners?.kubesphere?.port}
  }

  /**
   * Opens and closes per-cluster ports to match the registry; changes are applied one sync at a time. A port that
   * cannot be opened (another process holds it) is reported on its cluster and tried again after a while; the
   * other clusters' ports are opened all the same.
   */
  sync(): Promise<void> {
    this.syncing = this.syncing
      .then(() => this.applyRegistry())
      .catch((error: unknown) => {
        this.options.log.error('cannot apply the clusters to the front ends', {
          reason: error instanceof Error ? error.message : String(error),
        })
      })
    return this.syncing
  }

  /**
   * Renewed certificates or a new CA: every HTTPS front end takes them for its next connections. Applied in turn
   * with the syncs, so that a port being opened meanwhile cannot keep the certificate it was made with.
   */
  reloadTls(): Promise<void> {
    this.syncing = this.syncing.then(() => {
      this.pathRouted?.setSecureContext(this.secureContext(undefined))
      for (const [name, listeners] of this.perCluster) {
        listeners.kubernetes?.listener.setSecureContext(this.secureContext(name))
      }
    })
    return this.syncing
  }

  /** See {@link FrontEndListener.stopAccepting}. */
  stopAccepting(): void {
    this.stopped = true
    clearTimeout(this.retryTimer)
    for (const listener of this.listeners()) listener.stopAccepting()
  }

  /** Closes every connection still open. */
  closeAll(): void {
    for (const listener of this.listeners()) listener.closeAll()
  }

  private listeners(): FrontEndListener[] {
    const listeners: FrontEndListener[] = this.pathRouted === undefined ? [] : [this.pathRouted]
    for (const ports of this.perCluster.values()) {
      if (ports.kubernetes !== undefined) listeners.push(ports.kubernetes.listener)
      if (ports.kubesphere !== undefined) listeners.push(ports.kubesphere.listener)
    }
    return listeners
  }

  /** Read through a method: `stopAccepting()` may flip the flag while a sync awaits, which narrowing cannot see. */
  private stopRequested(): boolean {
    return this.stopped
  }

  private async applyRegistry(): Promise<void> {
    if (this.stopped) return
    const wanted = new Map(this.options.registry.list().map((cluster) => [cluster.name, cluster]))
    for (const [name, listeners] of this.perCluster) {
      const cluster = wanted.get(name)
      if (listeners.kubernetes !== undefined && listeners.kubernetes.port !== cluster?.kubernetesPort) {
        listeners.kubernetes.listener.closeAll()
        delete listeners.kubernetes
      }
      if (listeners.kubesphere !== undefined && listeners.kubesphere.port !== cluster?.kubespherePort) {
        listeners.kubesphere.listener.closeAll()
        delete listeners.kubesphere
      }
      if (cluster === undefined) this.perCluster.delete(name)
    }
    let failed = false
    for (const cluster of wanted.values()) {
      try {
        await this.openClusterPorts(cluster)
      } catch (error) {
        failed = true
        const reason = error instanceof Error && 'code' in error ? String(error.code) : String(error)
        this.options.log.error('cannot open a per-cluster port; trying again', {
          cluster: cluster.name,
          reason,
        })
        this.options.registry.problem(cluster.name, {
          reason: 'PortUnavailable',
          message: `ksctl tower proxy cannot listen on the Cluster's ports ${cluster.kubernetesPort ?? '-'} and ${cluster.kubespherePort ?? '-'} (${reason}); it tries again every ${portRetryMs / 1000}s`,
        })
      }
    }
    clearTimeout(this.retryTimer)
    if (failed && !this.stopRequested()) {
      this.retryTimer = setTimeout(() => void this.sync(), portRetryMs)
      this.retryTimer.unref()
    }
  }

  private async openClusterPorts(cluster: RegisteredCluster): Promise<void> {
    const listeners = this.perCluster.get(cluster.name) ?? {}
    this.perCluster.set(cluster.name, listeners)
    const name = cluster.name
    if (cluster.kubernetesPort !== undefined && listeners.kubernetes === undefined) {
      const server = this.httpsServer(
        (request) => ({cluster: name, destination: kubernetesDestination, path: request.url ?? '/'}),
        name,
      )
      if (!(await this.listenUnlessStopped(server, {host: this.options.host, port: cluster.kubernetesPort})))
        return
      listeners.kubernetes = {
        port: cluster.kubernetesPort,
        listener: new SecureListener(server, http2SessionWindowBytes),
      }
    }
    if (cluster.kubespherePort !== undefined && listeners.kubesphere === undefined) {
      // ks-apiserver authenticates its own users (the KubeSphere JWT in Authorization), as with Tower: the
      // agent adds nothing for this destination, so the client's header is the credential and is kept. Plain HTTP
      // without a client certificate, because KubeSphere's host ks-apiserver, the one caller of the Cluster's
      // kubesphereAPIEndpoint, sends its requests with Go's http.DefaultTransport: no client certificate, the
      // system's CAs only (kubesphere/kubesphere v3.4.1 and v4.1.3 pkg/apiserver/filters/multicluster.go). So this
      // port must not be reachable beyond Service mc-NAME: see kubespherePortsPolicy.
      const route = (request: http.IncomingMessage): ForwardTarget => ({
        cluster: name,
        destination: kubesphereDestination,
        path: request.url ?? '/',
        identity: undefined,
      })
      const server = http.createServer((request, response) =>
        this.options.forwarder.forward(request, response, route(request)),
      )
      server.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
        this.options.forwarder.forwardUpgrade(request, socket, head, route(request))
      })
      if (!(await this.listenUnlessStopped(server, {host: this.options.host, port: cluster.kubespherePort})))
        return
      listeners.kubesphere = {port: cluster.kubespherePort, listener: new PlainListener(server)}
    }
  }

  /** A sync under way when the proxy stops must not leave a port open behind it (it would keep the process alive). */
  private async listenUnlessStopped(server: Server, address: ListenAddress): Promise<boolean> {
    if (this.stopRequested()) return false
    await listen(server, address)
    if (!this.stopRequested()) return true
    server.close()
    return false
  }

  /** The certificate of `cluster`'s own port (or the path-routed one) and the CA of client certificates. */
  private secureContext(cluster: string | undefined): {cert: string; key: string; ca: string} {
    const serving = this.options.tls.certificate(cluster)
    return {cert: serving.certPem, key: serving.keyPem, ca: this.options.tls.caPem}
  }

  private httpsServer(route: Route, cluster?: string): http2.Http2SecureServer {
    const {forwarder} = this.options
    const server = http2.createSecureServer({
      ...this.secureContext(cluster),
      requestCert: true,
      // Verified below, so that a client without a good certificate gets an HTTP 401 it can understand.
      rejectUnauthorized: false,
      // Upgrades (websocket, SPDY for exec and port-forward) and clients without HTTP/2 stay on HTTP/1.1.
      allowHTTP1: true,
      settings: http2Settings,
    })
    server.on('request', (request: FrontEndRequest, response: FrontEndResponse) => {
      const decision = this.authorize(request, route)
      if (!('status' in decision)) forwarder.forward(request, response, decision)
      // kubectl shows the message of a 401 Status, and of a 403 only in plain text (see refuseRequest).
      else if (decision.status === 403) refuseRequest(response, decision.status, decision.message)
      else failResponse(response, decision.status, decision.message)
    })
    server.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      const decision = this.authorize(request, route)
      if ('status' in decision) refuse(socket, decision.status, decision.message)
      else forwarder.forwardUpgrade(request, socket, head, decision)
    })
    return server
  }

  /**
   * Whether an HTTPS front end serves a request, and as whom: a certificate of the proxy CA (401), for a cluster
   * the proxy serves (404), bound to that cluster (403: one leaked kubeconfig reaches one member). On the kubernetes
   * destination the certificate's user and groups go with the request, for the agent to impersonate, and a client
   * may not ask to impersonate anyone itself (403: one level of impersonation only).
   */
  private authorize(request: FrontEndRequest, route: Route): ForwardTarget | Refusal {
    const {metrics, log} = this.options
    const socket = request.socket as TLSSocket
    const source = request.socket.remoteAddress ?? 'unknown'
    const refused = (refusal: Refusal, details: Record<string, unknown> = {}): Refusal => {
      if (refusal.reason !== undefined) {
        metrics.authFailure('front_end', refusal.reason)
        // Never the certificate, nor the request: what the operator needs to find the client.
        log.warn('refused a client at a front end', {reason: refusal.reason, source, ...details})
      }
      return refusal
    }
    const failure = clientCertificateFailure(socket)
    if (failure !== undefined) {
      return refused({
        status: 401,
        message: 'Unauthorized: a client certificate issued by the ksctl proxy CA is required',
        reason: failure,
      })
    }
    const target = route(request)
    if (target === undefined) return {status: 404, message: 'no such cluster: use /clusters/NAME/…'}
    const claims = certificateClaims(socket.getPeerCertificate())
    const {cluster, destination} = target
    if (claims.boundCluster !== cluster) {
      const message =
        claims.boundCluster === undefined
          ? `Forbidden: this client certificate is not bound to cluster ${cluster} (it was issued before ksctl bound credentials to one cluster): issue a kubeconfig for cluster ${cluster} again with ksctl tower issue-kubeconfig --cluster ${cluster}`
          : `Forbidden: this client certificate is bound to cluster ${claims.boundCluster}, not ${cluster}: use a kubeconfig issued for cluster ${cluster} (ksctl tower issue-kubeconfig --cluster ${cluster})`
      const reason = claims.boundCluster === undefined ? 'unbound_client_certificate' : 'wrong_cluster'
      return refused(
        {status: 403, message, reason},
        {
          cluster,
          ...(claims.boundCluster !== undefined && {boundTo: claims.boundCluster}),
        },
      )
    }
    if (destination !== kubernetesDestination) return {...target, identity: undefined}
    const impersonation = forbiddenClientHeader(request.rawHeaders)
    if (impersonation !== undefined) {
      const message = `Forbidden: the ksctl proxy forwards each request to cluster ${cluster} as the user and groups of its client certificate (${claims.identity.user}) and does not pass on ${headerCase(impersonation)} (kubectl --as, --as-group): issue a kubeconfig for the identity you need (ksctl tower issue-kubeconfig --cluster ${cluster} --user NAME --group GROUP)`
      return refused(
        {status: 403, message, reason: 'impersonation_header'},
        {
          cluster,
          header: impersonation.toLowerCase(),
          user: claims.identity.user,
        },
      )
    }
    const problem = identityProblem(claims.identity)
    if (problem !== undefined) {
      const message = `Forbidden: the identity of this client certificate cannot be forwarded to cluster ${cluster}: ${problem}; issue a kubeconfig for another (ksctl tower issue-kubeconfig --cluster ${cluster} --user NAME --group GROUP)`
      return refused({status: 403, message, reason: 'unforwardable_identity'}, {cluster})
    }
    return {...target, identity: claims.identity}
  }
}
