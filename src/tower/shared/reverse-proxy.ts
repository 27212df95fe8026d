import http from 'node:http'
import type {Http2ServerRequest, Http2ServerResponse} from 'node:http2'
import type {Duplex, Readable} from 'node:stream'

import {splice} from './net.js'

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

/** A front end answers HTTP/1.1 and, where TLS offers it (ALPN), HTTP/2 as kube clients prefer. */
export type FrontEndRequest = http.IncomingMessage | Http2ServerRequest
export type FrontEndResponse = http.ServerResponse | Http2ServerResponse

/** No header dropped besides the hop-by-hop ones. */
export const noHeaders: ReadonlySet<string> = new Set()

/**
 * Flat [name, value, …] headers without the hop-by-hop ones and without those named in `stripped` (lower case:
 * the client's Authorization, for instance, where the member's own takes its place). HTTP/2 pseudo-headers go too:
 * the HTTP/1.1 request line and Host carry what they say.
 */
export function withoutHopByHop(rawHeaders: string[], stripped: ReadonlySet<string>): string[] {
  const kept: string[] = []
  for (let index = 0; index + 1 < rawHeaders.length; index += 2) {
    const name = rawHeaders[index] ?? ''
    const lower = name.toLowerCase()
    if (hopByHop.has(lower) || lower.startsWith(':') || stripped.has(lower)) continue
    kept.push(name, rawHeaders[index + 1] ?? '')
  }
  return kept
}

/**
 * The headers of an HTTP/2 request as HTTP/1.1 needs them: Host from `:authority`, and the cookie fields
 * HTTP/2 may split joined into one (RFC 9113 §8.2.3).
 */
function asHttp1Headers(request: Http2ServerRequest, headers: string[]): string[] {
  const converted: string[] = []
  const cookies: string[] = []
  let hasHost = false
  for (let index = 0; index + 1 < headers.length; index += 2) {
    const name = headers[index] ?? ''
    const value = headers[index + 1] ?? ''
    const lower = name.toLowerCase()
    if (lower === 'cookie') cookies.push(value)
    else converted.push(name, value)
    if (lower === 'host') hasHost = true
  }
  // Typed as always present, but a client may send Host instead of :authority.
  const authority = request.authority as string | undefined
  if (!hasHost && authority !== undefined) converted.unshift('host', authority)
  if (cookies.length > 0) converted.push('cookie', cookies.join('; '))
  return converted
}

function isHttp2(request: FrontEndRequest): request is Http2ServerRequest {
  return request.httpVersionMajor === 2
}

function responseGone(response: FrontEndResponse): boolean {
  return response instanceof http.ServerResponse ? response.destroyed : response.stream.destroyed
}

/**
 * An HTTP/1.1 head leaves with the first body bytes, in one write; a response with none yet (a watch waiting
 * for its first event) sends its head at once, or the client would wait for it. (HTTP/2 sends a head as its
 * own frame at once.)
 */
export function flushHeadUnlessBodyFollows(response: http.ServerResponse, upstreamResponse: Readable): void {
  let bodyStarted = false
  upstreamResponse.once('data', () => (bodyStarted = true))
  setImmediate(() => {
    if (!bodyStarted && !response.writableEnded && !response.destroyed) response.flushHeaders()
  })
}

function writeResponseHead(response: FrontEndResponse, upstreamResponse: http.IncomingMessage): void {
  const status = upstreamResponse.statusCode ?? 502
  const headers = withoutHopByHop(upstreamResponse.rawHeaders, noHeaders)
  // HTTP/2 has no reason phrase.
  if (response instanceof http.ServerResponse)
    response.writeHead(status, upstreamResponse.statusMessage, headers)
  else response.writeHead(status, headers)
}

/** HTTP/2 refuses some response heads HTTP/1.1 allows, such as a repeated Content-Type. */
export class UnsendableHeadError extends Error {}

/** A bodiless read given up on a connection whose far end stopped answering, to be sent on another. */
class AbandonedReadError extends Error {}

/**
 * Where and how a relayed request goes: Node's request options (an agent that owns the connections, the
 * path), the request headers to send, and what to answer when the upstream fails before its response began.
 */
export interface Relay {
  options: http.RequestOptions
  /** Request headers of the client not relayed (lower case), e.g. its Authorization. */
  strippedHeaders: ReadonlySet<string>
  /** Added after the client's headers, e.g. the member's own Authorization. */
  extraHeaders?: string[]
  fail(error: Error): void
}

/** Methods that may be sent again (RFC 9110 §9.2.2), when they carry no body. */
const idempotentReads = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * Relays one HTTP request and its response, both streamed with backpressure. Node parses both sides, so
 * keep-alive, chunked bodies and long-lived responses (watch, logs -f) need no parser of ours. A client that
 * goes away before the response ended aborts the upstream request. A bodiless read whose kept connection was
 * closed by the other end as it went out (the race Node's `http.Agent` documents) is sent again, once, on
 * another connection; so is one waiting for its response on a tunnel stream whose agent stopped answering
 * (the stream emits 'unresponsive', PROTOCOL.md §7): a read may be repeated (RFC 9110 §9.2.2).
 */
export function relayRequest(request: FrontEndRequest, response: FrontEndResponse, relay: Relay): void {
  const bodiless = isBodilessRead(request)
  send(request, response, relay, {bodiless, mayRetry: bodiless})
}

function isBodilessRead(request: FrontEndRequest): boolean {
  if (!idempotentReads.has(request.method ?? '')) return false
  if (isHttp2(request)) return request.stream.endAfterHeaders
  return isBodiless(request)
}

/** An HTTP/1.1 request that announces no body (neither a length above 0 nor chunks). */
export function isBodiless(request: http.IncomingMessage): boolean {
  const length = request.headers['content-length']
  return request.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')
}

function send(
  request: FrontEndRequest,
  response: FrontEndResponse,
  relay: Relay,
  attempt: {bodiless: boolean; mayRetry: boolean},
): void {
  const upstream = http.request({
    ...relay.options,
    method: request.method,
    headers: requestHeaders(request, relay),
  })
  let headRefused = false
  // Not `writableFinished`: an HTTP/2 response reports itself finished when its stream was reset.
  let upstreamEnded = false
  response.once('close', () => {
    if (!upstreamEnded) upstream.destroy()
  })
  if (attempt.mayRetry) {
    upstream.once('socket', (socket) => {
      const abandon = (): void => {
        upstream.destroy(new AbandonedReadError('the far end stopped answering'))
      }
      socket.once('unresponsive', abandon)
      const settled = (): void => {
        socket.off('unresponsive', abandon)
      }
      upstream.once('response', settled)
      upstream.once('close', settled)
    })
  }
  upstream.on('response', (upstreamResponse) => {
    upstreamResponse.once('end', () => (upstreamEnded = true))
    try {
      writeResponseHead(response, upstreamResponse)
    } catch (error) {
      headRefused = true
      upstream.destroy()
      relay.fail(new UnsendableHeadError(error instanceof Error ? error.message : String(error)))
      return
    }
    if (response instanceof http.ServerResponse) flushHeadUnlessBodyFollows(response, upstreamResponse)
    upstreamResponse.pipe(response)
    upstreamResponse.once('error', () => response.destroy())
    upstreamResponse.once('close', () => {
      if (!upstreamResponse.complete) response.destroy()
    })
  })
  upstream.on('error', (error) => {
    if (headRefused) return
    if (response.headersSent) response.destroy()
    else if (responseGone(response)) return
    else if (attempt.mayRetry && (upstream.reusedSocket || error instanceof AbandonedReadError))
      send(request, response, relay, {...attempt, mayRetry: false})
    else relay.fail(error)
  })
  if (attempt.bodiless) upstream.end()
  else request.pipe(upstream)
}

/**
 * Relays an HTTP/1.1 Upgrade (websocket, SPDY for exec and port-forward): the request head goes upstream,
 * the 101 answer back, then raw bytes both ways. An upstream that declines answers with a response, which
 * is relayed as is before the connection closes.
 */
export function relayUpgrade(
  request: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
  relay: Relay,
): void {
  socket.on('error', () => socket.destroy())
  const headers = requestHeaders(request, relay)
  headers.push('Connection', 'Upgrade', 'Upgrade', request.headers.upgrade ?? '')
  const upstream = http.request({...relay.options, method: request.method, headers})
  socket.once('close', () => upstream.destroy())
  upstream.on('upgrade', (upstreamResponse, upstreamSocket, upstreamHead) => {
    socket.write(statusLine(upstreamResponse) + headerLines(upstreamResponse.rawHeaders) + '\r\n')
    if (upstreamHead.length > 0) socket.write(upstreamHead)
    if (head.length > 0) upstreamSocket.write(head)
    splice(socket, upstreamSocket)
  })
  upstream.on('response', (upstreamResponse) => {
    socket.write(
      statusLine(upstreamResponse) +
        headerLines(withoutHopByHop(upstreamResponse.rawHeaders, noHeaders)) +
        'Connection: close\r\n\r\n',
    )
    upstreamResponse.pipe(socket)
  })
  upstream.on('error', (error) => {
    if (!socket.destroyed) relay.fail(error)
  })
  upstream.end()
}

/**
 * A plain-text error answer on a connection that is not (or not yet) an HTTP exchange of Node's server, such
 * as an upgrade request, then the connection closes.
 */
export function refuse(
  socket: Duplex,
  status: number,
  message = (http.STATUS_CODES[status] ?? 'error').toLowerCase(),
  headers: Record<string, string> = {},
): void {
  const body = `${message}\n`
  const lines = [
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}`,
    'Connection: close',
    'Content-Type: text/plain',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(headers).map(([key, value]) => `${key}: ${value}`),
  ]
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`)
}

function requestHeaders(request: FrontEndRequest, relay: Relay): string[] {
  const kept = withoutHopByHop(request.rawHeaders, relay.strippedHeaders)
  const headers = isHttp2(request) ? asHttp1Headers(request, kept) : kept
  if (relay.extraHeaders !== undefined) headers.push(...relay.extraHeaders)
  return headers
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

/**
 * The proxy's own 403 to a client, in plain text: kubectl (1.32) shows a 403's text body as it is wherever it meets
 * one, while a Kubernetes Status in answer to its first requests (discovery) comes out as "Error from server
 * (Forbidden): unknown", and the reason and the next step would be lost. (For a 401 it is the other way round: it
 * shows a Status's message, and never a text body.)
 */
export function refuseRequest(response: FrontEndResponse, status: 403, message: string): void {
  const body = `${message}\n`
  const headers = {'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body)}
  if (response instanceof http.ServerResponse) response.writeHead(status, headers)
  else response.writeHead(status, headers)
  response.end(body)
}

/**
 * An error answer. For the kubernetes destination it is a Kubernetes Status, so kubectl prints the message
 * instead of a decoding error.
 */
export function failResponse(
  response: FrontEndResponse,
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
  const headers = {
    'content-type': kubernetes ? 'application/json' : 'text/plain',
    'content-length': Buffer.byteLength(body),
  }
  if (response instanceof http.ServerResponse) response.writeHead(status, headers)
  else response.writeHead(status, headers)
  response.end(body)
}

function reasonFor(status: number): string {
  if (status === 401) return 'Unauthorized'
  if (status === 403) return 'Forbidden'
  if (status === 404) return 'NotFound'
  return 'ServiceUnavailable'
}
