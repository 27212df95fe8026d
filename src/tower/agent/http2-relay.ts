import type http from 'node:http'
import http2 from 'node:http2'

import {flushHeadUnlessBodyFollows, noHeaders, withoutHopByHop} from '../shared/reverse-proxy.js'

export interface Http2Relay {
  session: http2.ClientHttp2Session
  /** Gives the reserved stream back to the session's pool when the exchange is over. */
  release(): void
  /** `host:port` of the upstream, the request's :authority. */
  authority: string
  path: string
  /** Request headers of the client not relayed (lower case). */
  strippedHeaders: ReadonlySet<string>
  /** Added after the client's headers, e.g. the member's own Authorization. */
  extraHeaders: string[]
  /** The request has no body, so it can be sent again as it is. */
  bodiless: boolean
  fail(error: Error): void
  /**
   * Sends the request again on another stream. Called instead of `fail` when the server refused the stream
   * without processing it (RST_STREAM REFUSED_STREAM, or a GOAWAY that came first, as kube-apiserver sends
   * with --goaway-chance or when it shuts down), which RFC 9113 §8.7 says is safe to retry; absent when the
   * request was already retried.
   */
  retry?: () => void
}

/**
 * Relays one HTTP/1.1 request as a stream of an HTTP/2 connection, and its response back as HTTP/1.1, both
 * streamed with flow control. A client that goes away before the response ended cancels the stream
 * (RST_STREAM), which kube-apiserver takes as the end of a watch; the connection stays for the others.
 */
export function relayRequestOverHttp2(
  request: http.IncomingMessage,
  response: http.ServerResponse,
  relay: Http2Relay,
): void {
  const retry = relay.bodiless ? relay.retry : undefined
  let stream: http2.ClientHttp2Stream
  try {
    stream = relay.session.request(http2RequestHeaders(request, relay))
  } catch (error) {
    relay.release()
    if (retry !== undefined && isGoAway(error)) retry()
    else relay.fail(error instanceof Error ? error : new Error(String(error)))
    return
  }
  let ended = false
  stream.once('close', () => {
    relay.release()
    if (!ended && response.headersSent) response.destroy()
  })
  response.once('close', () => {
    if (!ended) stream.close(http2.constants.NGHTTP2_CANCEL)
  })
  stream.once('response', (headers) => {
    response.writeHead(headers[':status'] ?? 502, http1ResponseHeaders(headers))
    flushHeadUnlessBodyFollows(response, stream)
    stream.once('end', () => (ended = true))
    stream.pipe(response)
  })
  stream.on('error', (error: Error) => {
    if (response.headersSent) response.destroy()
    else if (response.destroyed) return
    else if (retry !== undefined && stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) retry()
    else relay.fail(error)
  })
  if (relay.bodiless) stream.end()
  else request.pipe(stream)
}

function isGoAway(error: unknown): boolean {
  const code = (error as {code?: unknown} | undefined)?.code
  return code === 'ERR_HTTP2_GOAWAY_SESSION' || code === 'ERR_HTTP2_INVALID_SESSION'
}

function http2RequestHeaders(request: http.IncomingMessage, relay: Http2Relay): http2.OutgoingHttpHeaders {
  const headers: http2.OutgoingHttpHeaders = {
    ':method': request.method ?? 'GET',
    ':path': relay.path,
    ':authority': relay.authority,
    ':scheme': 'https',
  }
  const flat = [...withoutHopByHop(request.rawHeaders, relay.strippedHeaders), ...relay.extraHeaders]
  for (let index = 0; index + 1 < flat.length; index += 2) {
    const name = (flat[index] ?? '').toLowerCase()
    // Host becomes :authority.
    if (name === 'host') continue
    const value = flat[index + 1] ?? ''
    const previous = headers[name]
    if (previous === undefined) headers[name] = value
    else headers[name] = [...(Array.isArray(previous) ? previous : [String(previous)]), value]
  }
  return headers
}

/** Flat [name, value, …] for an HTTP/1.1 head: without the pseudo-headers, repeated fields kept apart. */
function http1ResponseHeaders(headers: http2.IncomingHttpHeaders): string[] {
  const flat: string[] = []
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith(':') || value === undefined) continue
    for (const item of Array.isArray(value) ? value : [value]) flat.push(name, item)
  }
  return withoutHopByHop(flat, noHeaders)
}
