import type {Server, Socket} from 'node:net'
import type {Duplex} from 'node:stream'

import {invalidInput} from '../../errors.js'

export interface ListenAddress {
  host: string
  port: number
}

/** A URL's host as sockets take it: an IPv6 address without the brackets the URL writes around it. */
export function hostnameOf(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '')
}

/** `host:port`, with an IPv6 host in brackets, as URLs and HTTP's authority write it. */
export function hostPort(address: ListenAddress): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`
}

/** `host:port`, `:port` (all interfaces) or `[v6]:port`; port 0 picks a free port. */
export function parseListenAddress(text: string, flag: string): ListenAddress {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim())
  const port = Number(match?.[3])
  if (match === null || port > 65535) {
    throw invalidInput(`${flag} "${text}" is not an address`, [`use host:port, e.g. ${flag}=127.0.0.1:8080`])
  }
  const host = match[1] ?? match[2] ?? ''
  return {host: host === '' ? '0.0.0.0' : host, port}
}

/** `host:port` with a default port, for destination flags such as kubernetes.default.svc:443. */
export function parseHostPort(text: string, defaultPort: number, flag: string): ListenAddress {
  const trimmed = text.trim()
  if (/^[^:[\]]+$/.test(trimmed)) return {host: trimmed, port: defaultPort}
  const address = parseListenAddress(trimmed, flag)
  if (address.port === 0 || trimmed.startsWith(':')) {
    throw invalidInput(`${flag} "${text}" needs a host and a port from 1 to 65535`)
  }
  return address
}

/**
 * Listens on `address`, with Nagle's algorithm off on every accepted connection (a TLS server's too: 'connection'
 * is its TCP socket). A response's last small write would otherwise wait for the client's delayed ACK, about
 * 40 ms on Linux, on every HTTP/1.1 exchange. Node's HTTP/2 sessions turn it off themselves, its HTTPS and TLS
 * servers do not.
 */
export async function listen(server: Server, address: ListenAddress): Promise<void> {
  server.on('connection', (socket: Socket) => socket.setNoDelay(true))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(address.port, address.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

/**
 * Connects two byte streams both ways, like a TCP splice: each end's end-of-data half-closes the other, and a
 * failure on either side destroys the other (a tunnel stream then sends RST), so neither side can hang.
 */
export function splice(a: Duplex, b: Duplex): void {
  a.pipe(b)
  b.pipe(a)
  const destroyBoth = (error?: Error): void => {
    if (!a.destroyed) a.destroy(error)
    if (!b.destroyed) b.destroy(error)
  }
  a.once('error', destroyBoth)
  b.once('error', destroyBoth)
  // A stream that closes before its data ended (a reset without an error, a socket torn down) ends the pair.
  a.once('close', () => {
    if (!a.readableEnded || !a.writableFinished) destroyBoth()
  })
  b.once('close', () => {
    if (!b.readableEnded || !b.writableFinished) destroyBoth()
  })
}

/** An error's code (ECONNREFUSED) when it has one, else its message: what a log line or a 502 may show. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return 'code' in error ? String(error.code) : error.message
  return String(error)
}
