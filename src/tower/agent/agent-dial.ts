import {readFile} from 'node:fs/promises'
import https from 'node:https'
import net from 'node:net'
import {join} from 'node:path'
import type {Duplex} from 'node:stream'
import type tls from 'node:tls'

import {invalidInput} from '../../errors.js'
import type {Logger} from '../../log.js'
import {redactor} from '../../redact.js'
import {isValidDestination, WireErrorCode, type OpenRequest, type TunnelStream} from '../../tunnel/index.js'
import {kubernetesDestination, kubesphereDestination} from '../shared/agent-link.js'
import type {TowerMetrics} from '../shared/metrics.js'
import {MemberApiRelay} from './member-apiserver.js'
import {describeError, hostnameOf, parseHostPort, splice, type ListenAddress} from '../shared/net.js'

export const defaultServiceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount'
const dialTimeoutMs = 10_000

/**
 * What the agent knows how to reach, per destination name: either a byte pipe to a connection it dials for
 * each stream, or a server that takes the stream itself (kubernetes: HTTP-aware, to add the member's
 * credential to every request).
 */
export type Destination =
  | {
      /** Connects and returns a socket ready for the bytes the proxy sends on the stream. */
      dial(signal: AbortSignal): Promise<Duplex>
    }
  | {
      serve(stream: Duplex): void
      /** Whether what the server relays to can be reached now: a stream is refused (DIAL_FAILED) when not. */
      reachable(signal: AbortSignal): Promise<boolean>
    }

/** TLS settings and the credential for the member's kube-apiserver, gathered afresh for every stream. */
export interface KubernetesCredentials {
  address: ListenAddress
  tls: tls.ConnectionOptions
  /** `Bearer …` to put in each request, or undefined when the credential is the TLS client certificate. */
  authorization: string | undefined
}

export type CredentialSource = () => Promise<KubernetesCredentials>

/**
 * In a pod: the service-account token and CA, re-read for every stream so that rotated (bound) tokens work,
 * unlike Tower, which read the token once at start.
 */
export function serviceAccountCredentials(service: string, directory: string): CredentialSource {
  const address = parseHostPort(service, 443, '--kubernetes-service')
  return async () => {
    const [token, ca] = await Promise.all([
      readFile(join(directory, 'token'), 'utf8'),
      readFile(join(directory, 'ca.crt'), 'utf8'),
    ])
    const trimmed = token.trim()
    redactor.register(trimmed)
    return {
      address,
      tls: {ca, servername: net.isIP(address.host) === 0 ? address.host : undefined},
      authorization: `Bearer ${trimmed}`,
    }
  }
}

/**
 * From a kubeconfig (the member's admin credentials): its server, CA, and client certificate or token. The
 * Kubernetes client library (~85 MiB of memory) is loaded only for this; a service-account agent does without.
 */
export async function kubeconfigCredentials(
  path: string,
  context: string | undefined,
): Promise<CredentialSource> {
  const {KubeConfig} = await import('@kubernetes/client-node')
  const config = new KubeConfig()
  try {
    config.loadFromFile(path)
  } catch {
    throw invalidInput(`cannot load --kubeconfig ${path}`)
  }
  if (context !== undefined) {
    if (config.getContextObject(context) === null) throw invalidInput(`context ${context} is not in ${path}`)
    config.setCurrentContext(context)
  }
  const cluster = config.getCurrentCluster()
  if (cluster === null) throw invalidInput(`the current context of ${path} names no cluster`)
  const server = new URL(cluster.server)
  if (server.protocol !== 'https:') throw invalidInput(`the server of ${path} must be https://`)
  const address = {host: hostnameOf(server), port: Number(server.port || '443')}
  return async () => {
    const options: https.RequestOptions = {}
    await config.applyToHTTPSOptions(options)
    const headers = (options.headers ?? {}) as Record<string, unknown>
    const authorization = typeof headers.Authorization === 'string' ? headers.Authorization : undefined
    redactor.register(authorization?.replace(/^Bearer /, ''))
    return {
      address,
      tls: {
        ca: options.ca,
        cert: options.cert,
        key: options.key,
        rejectUnauthorized: options.rejectUnauthorized ?? true,
        servername: options.servername ?? (net.isIP(address.host) === 0 ? address.host : undefined),
      },
      authorization,
    }
  }
}

export interface DestinationSettings {
  cluster: string
  log: Logger
  kubernetes: CredentialSource
  /** How long member credentials are reused before they are read again. */
  credentialsTtlMs?: number
  /** ks-apiserver, plain HTTP as in Tower; undefined: not served. */
  kubesphere: ListenAddress | undefined
  /** Extra names from `--allow NAME=host:port`, plain TCP. */
  allowed: Map<string, ListenAddress>
}

/** Parses `--allow NAME=host:port` values. */
export function parseAllowFlags(values: string[]): Map<string, ListenAddress> {
  const allowed = new Map<string, ListenAddress>()
  for (const value of values) {
    const [name = '', target = ''] = value.split(/=(.*)/s)
    if (!isValidDestination(name) || name === kubernetesDestination) {
      throw invalidInput(
        `--allow "${value}": the name must be a lowercase DNS-like name other than kubernetes`,
      )
    }
    allowed.set(name, parseHostPort(target, 80, '--allow'))
  }
  return allowed
}

/** The allow-list: the only names the agent serves. Anything else is refused with DESTINATION_NOT_ALLOWED. */
export function buildDestinations(settings: DestinationSettings): Map<string, Destination> {
  const destinations = new Map<string, Destination>()
  const kubernetes = new MemberApiRelay(
    settings.kubernetes,
    settings.cluster,
    settings.log,
    settings.credentialsTtlMs,
  )
  destinations.set(kubernetesDestination, {
    serve: (stream) => kubernetes.serve(stream),
    reachable: (signal) => kubernetes.reachable(signal),
  })
  if (settings.kubesphere !== undefined) {
    const address = settings.kubesphere
    destinations.set(kubesphereDestination, {dial: (signal) => dialTcp(address, signal)})
  }
  for (const [name, address] of settings.allowed) {
    destinations.set(name, {dial: (signal) => dialTcp(address, signal)})
  }
  return destinations
}

export interface ServeContext {
  cluster: string
  destinations: Map<string, Destination>
  log: Logger
  metrics: TowerMetrics
}

/**
 * The agent's answer to an open: refuse names not on the allow-list, dial (or check the served destination's
 * upstream), accept once connected (so ACK means "reachable"), then splice the stream to the connection.
 */
export function serveOpen(request: OpenRequest, {cluster, destinations, log, metrics}: ServeContext): void {
  const destination = destinations.get(request.destination)
  if (destination === undefined) {
    log.warn('refused a stream to a destination not on the allow-list', {destination: request.destination})
    request.reject(WireErrorCode.DestinationNotAllowed)
    return
  }
  const started = performance.now()
  const accept = (): TunnelStream => {
    metrics.streamOpenSeconds.observe({cluster, outcome: 'accepted'}, (performance.now() - started) / 1000)
    const stream = request.accept()
    metrics.countStreamBytes(cluster, stream, 'to_agent')
    return stream
  }
  const refuse = (): void => {
    metrics.streamOpenSeconds.observe({cluster, outcome: 'failed'}, (performance.now() - started) / 1000)
    request.reject(WireErrorCode.DialFailed)
  }
  if ('serve' in destination) {
    destination.reachable(request.signal).then(
      (reachable) => {
        if (request.signal.aborted) return
        if (reachable) destination.serve(accept())
        else refuse()
      },
      () => refuse(),
    )
    return
  }
  destination.dial(request.signal).then(
    (upstream) => {
      if (request.signal.aborted) upstream.destroy()
      else splice(accept(), upstream)
    },
    (error: unknown) => {
      log.warn('cannot reach destination', {destination: request.destination, reason: describeError(error)})
      refuse()
    },
  )
}

async function dialTcp(address: ListenAddress, signal: AbortSignal): Promise<net.Socket> {
  const socket = net.connect({host: address.host, port: address.port})
  socket.setNoDelay(true)
  await connected(socket, 'connect', signal)
  return socket
}

function connected(socket: net.Socket, event: string, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (error: unknown): void => {
      cleanup()
      socket.destroy()
      reject(error instanceof Error ? error : new Error('dial aborted'))
    }
    const onTimeout = (): void => fail(new Error('dial timed out'))
    const onAbort = (): void => fail(signal.reason)
    const timer = setTimeout(onTimeout, dialTimeoutMs)
    const cleanup = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      socket.off('error', fail)
    }
    signal.addEventListener('abort', onAbort, {once: true})
    socket.once('error', fail)
    socket.once(event, () => {
      cleanup()
      resolve()
    })
  })
}
