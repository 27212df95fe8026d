import http from 'node:http'
import type {Duplex} from 'node:stream'

import type {Logger} from '../log.js'
import {
  isKnownErrorCode,
  OpenRefusedError,
  TunnelError,
  WireErrorCode,
  type TunnelStream,
} from '../tunnel/index.js'
import type {TowerMetrics} from './metrics.js'
import {splice} from './net.js'
import {NoSessionError, type SessionPool} from './session-pool.js'

/** Where a front-end request goes: a cluster, one of its agent's destinations, and the upstream request path. */
export interface ForwardTarget {
  cluster: string
  destination: string
  path: string
  /** The client's own credential must not reach the member (its agent adds the member's own). */
  stripAuthorization: boolean
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and are not forwarded. */
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/**
 * Forwards front-end HTTP requests through the tunnel. Each request, upgrades included, becomes one tunnel
 * stream carrying raw HTTP/1.1, written by Node's HTTP client with the stream as its socket
 * (`createConnection`). Node's server parses each request head on the client connection, so keep-alive,
 * pipelining and path rewriting need no parser of ours; the request body and the response are streamed with
 * backpressure in both directions, and the agent only pipes bytes.
 */
export class Forwarder {
  constructor(
    private readonly pool: SessionPool,
    private readonly metrics: TowerMetrics,
    private readonly log: Logger,
  ) {}

  forward(request: http.IncomingMessage, response: http.ServerResponse, target: ForwardTarget): void {
    const controller = new AbortController()
    response.once('close', () => {
      if (!response.writableFinished) controller.abort()
    })
    this.open(target, controller.signal).then(
      (stream) => {
        if (controller.signal.aborted) {
          stream.destroy()
          return
        }
        const upstream = this.upstreamRequest(request, target, stream)
        // The client went away before the response ended: reset the stream, which aborts the member's request.
        controller.signal.addEventListener('abort', () => upstream.destroy(), {once: true})
        upstream.on('response', (upstreamResponse) => {
          response.writeHead(
            upstreamResponse.statusCode ?? 502,
            upstreamResponse.statusMessage,
            withoutHopByHop(upstreamResponse.rawHeaders, false),
          )
          response.flushHeaders()
          upstreamResponse.pipe(response)
          upstreamResponse.once('error', () => response.destroy())
          upstreamResponse.once('close', () => {
            if (!upstreamResponse.complete) response.destroy()
          })
        })
        upstream.on('error', (error) => {
          if (response.headersSent) response.destroy()
          else failResponse(response, 502, `the connection to cluster ${target.cluster} broke`, target)
          this.log.debug('forwarded request failed', {cluster: target.cluster, reason: error.message})
        })
        request.pipe(upstream)
      },
      (error: unknown) => {
        const failure = openFailure(target, error)
        if (!response.destroyed) failResponse(response, failure.status, failure.message, target)
      },
    )
  }

  /** An HTTP/1.1 Upgrade (websocket, SPDY for exec and port-forward): forward the head, then splice raw bytes. */
  forwardUpgrade(request: http.IncomingMessage, socket: Duplex, head: Buffer, target: ForwardTarget): void {
    const controller = new AbortController()
    socket.once('close', () => controller.abort())
    socket.on('error', () => socket.destroy())
    this.open(target, controller.signal).then(
      (stream) => {
        if (controller.signal.aborted) {
          stream.destroy()
          return
        }
        const upstream = this.upstreamRequest(request, target, stream)
        upstream.on('upgrade', (upstreamResponse, upstreamSocket, upstreamHead) => {
          socket.write(statusLine(upstreamResponse) + headerLines(upstreamResponse.rawHeaders) + '\r\n')
          if (upstreamHead.length > 0) socket.write(upstreamHead)
          if (head.length > 0) upstreamSocket.write(head)
          splice(socket, upstreamSocket)
        })
        upstream.on('response', (upstreamResponse) => {
          // The member declined the upgrade: relay its answer as is and close.
          socket.write(
            statusLine(upstreamResponse) +
              headerLines(withoutHopByHop(upstreamResponse.rawHeaders, false)) +
              'Connection: close\r\n\r\n',
          )
          upstreamResponse.pipe(socket)
        })
        upstream.on('error', () => socket.destroy())
        upstream.end()
      },
      (error: unknown) => {
        if (socket.destroyed) return
        const failure = openFailure(target, error)
        const body = failure.message + '\n'
        socket.end(
          `HTTP/1.1 ${failure.status} ${http.STATUS_CODES[failure.status]}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        )
      },
    )
  }

  private async open(target: ForwardTarget, signal: AbortSignal): Promise<TunnelStream> {
    const started = performance.now()
    const labels = {cluster: target.cluster}
    try {
      const stream = await this.pool.openStream(target.cluster, target.destination, signal)
      this.metrics.streamOpenSeconds.observe(
        {...labels, outcome: 'accepted'},
        (performance.now() - started) / 1000,
      )
      stream.on('data', (chunk: Buffer) =>
        this.metrics.streamBytes.inc({...labels, direction: 'from_agent'}, chunk.length),
      )
      stream.once('close', () =>
        this.metrics.streamBytes.inc({...labels, direction: 'to_agent'}, stream.stats.bytesSent),
      )
      return stream
    } catch (error) {
      this.metrics.streamOpenSeconds.observe(
        {...labels, outcome: 'failed'},
        (performance.now() - started) / 1000,
      )
      throw error
    }
  }

  private upstreamRequest(
    request: http.IncomingMessage,
    target: ForwardTarget,
    stream: TunnelStream,
  ): http.ClientRequest {
    const upgrade = request.headers.upgrade !== undefined
    const headers = withoutHopByHop(request.rawHeaders, target.stripAuthorization)
    if (upgrade) headers.push('Connection', 'Upgrade', 'Upgrade', request.headers.upgrade ?? '')
    return http.request({
      method: request.method,
      path: target.path,
      headers,
      setHost: false,
      createConnection: () => stream,
    })
  }
}

/** Flat [name, value, …] headers without the hop-by-hop ones (and without Authorization when asked). */
function withoutHopByHop(rawHeaders: string[], stripAuthorization: boolean): string[] {
  const kept: string[] = []
  for (let index = 0; index + 1 < rawHeaders.length; index += 2) {
    const name = rawHeaders[index] ?? ''
    const lower = name.toLowerCase()
    if (hopByHop.has(lower) || (stripAuthorization && lower === 'authorization')) continue
    kept.push(name, rawHeaders[index + 1] ?? '')
  }
  return kept
}

function statusLine(response: http.IncomingMessage): string {
  return `HTTP/1.1 ${response.statusCode ?? 502} ${response.statusMessage ?? ''}\r\n`
}

function headerLines(rawHeaders: string[]): string {
  let text = ''
  for (let index = 0; index + 1 < rawHeaders.length; index += 2)
    text += `${rawHeaders[index]}: ${rawHeaders[index + 1]}\r\n`
  return text
}

/** 403 when the agent does not serve the destination (a setting to change), 502 when it cannot now. */
function openFailure(target: ForwardTarget, error: unknown): {status: number; message: string} {
  const {cluster, destination} = target
  if (error instanceof NoSessionError)
    return {status: 502, message: `no agent of cluster ${cluster} is connected`}
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
  if (error instanceof TunnelError && error.code === 'TUNNEL_ERR_OPEN_REFUSED') {
    return {
      status: 502,
      message: `the agent of cluster ${cluster} cannot reach ${destination}: ${error.message}`,
    }
  }
  return {status: 502, message: `cannot reach cluster ${cluster}`}
}

/**
 * An error answer. For the kubernetes destination it is a Kubernetes Status, so kubectl prints the message
 * instead of a decoding error.
 */
export function failResponse(
  response: http.ServerResponse,
  status: number,
  message: string,
  target?: {destination: string},
): void {
  const kubernetes = target === undefined || target.destination === 'kubernetes'
  const body = kubernetes
    ? JSON.stringify({
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message,
        reason: reasonFor(status),
        code: status,
      }) + '\n'
    : message + '\n'
  response.writeHead(status, {
    'content-type': kubernetes ? 'application/json' : 'text/plain',
    'content-length': Buffer.byteLength(body),
  })
  response.end(body)
}

function reasonFor(status: number): string {
  if (status === 401) return 'Unauthorized'
  if (status === 403) return 'Forbidden'
  if (status === 404) return 'NotFound'
  return 'ServiceUnavailable'
}
