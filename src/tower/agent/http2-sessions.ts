import {createHash} from 'node:crypto'
import http2 from 'node:http2'
import tls from 'node:tls'

import {INITIAL_WINDOW_BYTES} from '../../tunnel/index.js'
import {hostPort, type ListenAddress} from '../shared/net.js'

/** Until a server's SETTINGS arrive, as many streams as Go's HTTP/2 transport assumes. */
const streamsBeforeSettings = 100
/** A connection with no stream open for this long is closed. */
const idleCloseMs = 60_000
/**
 * Receive windows. A stream's is the tunnel stream's (256 KiB): the agent forwards no faster than the tunnel's
 * window lets it, so a larger one (Go's transport takes 4 MiB, and this agent had 1 MiB) only made each stalled
 * stream hold that much at the agent. The connection's window is never what stops a stream, as in Go's transport:
 * with HTTP/2's 64 KiB default, one stalled download would block every request on its connection; and at most
 * the server's stream limit (100 to 250) times 256 KiB can be held on one connection.
 */
const streamWindowBytes = INITIAL_WINDOW_BYTES
const connectionWindowBytes = 1024 ** 3

interface Connection {
  session: http2.ClientHttp2Session
  streams: number
  limit: number
}

export interface UpstreamTarget {
  address: ListenAddress
  tls: tls.ConnectionOptions
}

/**
 * HTTP/2 connections to one kind of upstream (kube-apiserver), shared by every relayed request: many watches
 * ride a few connections, as client-go's do, instead of one TLS connection each. A request takes the first
 * connection with a free stream under the server's limit, or opens one. Connections are kept per address and
 * TLS settings, so a changed client certificate or CA is used at once. A server that does not offer HTTP/2
 * (ALPN) is remembered, and its requests go over HTTP/1.1.
 */
export class Http2Sessions {
  private readonly connections = new Map<string, Connection[]>()
  private readonly http1Only = new Set<string>()
  private readonly connecting = new Map<string, Promise<void>>()

  /**
   * A session with a stream reserved for the caller (give it back with `release`), or undefined when the
   * server speaks HTTP/1.1 only. Rejects when the server cannot be reached.
   */
  async reserve(
    target: UpstreamTarget,
  ): Promise<{session: http2.ClientHttp2Session; release: () => void} | undefined> {
    const key = keyOf(target)
    for (;;) {
      if (this.http1Only.has(key)) return undefined
      const connection = this.connections.get(key)?.find((candidate) => candidate.streams < candidate.limit)
      if (connection !== undefined) return reserveStream(connection)
      // Requests arriving together wait for one new connection rather than each opening its own.
      let connecting = this.connecting.get(key)
      if (connecting === undefined) {
        connecting = this.connect(key, target).finally(() => this.connecting.delete(key))
        this.connecting.set(key, connecting)
      }
      await connecting
    }
  }

  private async connect(key: string, target: UpstreamTarget): Promise<void> {
    const socket = tls.connect({
      ...target.tls,
      host: target.address.host,
      port: target.address.port,
      ALPNProtocols: ['h2', 'http/1.1'],
    })
    // Requests and their small answers share the connection: Nagle's delay would hold them back.
    socket.setNoDelay(true)
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve)
      socket.once('error', reject)
    })
    if (socket.alpnProtocol !== 'h2') {
      socket.destroy()
      this.http1Only.add(key)
      return
    }
    const session = http2.connect(`https://${hostPort(target.address)}`, {
      createConnection: () => socket,
      settings: {initialWindowSize: streamWindowBytes},
    })
    session.once('connect', () => session.setLocalWindowSize(connectionWindowBytes))
    const connection: Connection = {session, streams: 0, limit: streamsBeforeSettings}
    const open = this.connections.get(key) ?? []
    open.push(connection)
    this.connections.set(key, open)
    const forget = (): void => {
      const remaining = (this.connections.get(key) ?? []).filter((entry) => entry !== connection)
      if (remaining.length > 0) this.connections.set(key, remaining)
      else this.connections.delete(key)
    }
    session.on('remoteSettings', (settings: http2.Settings) => {
      connection.limit = settings.maxConcurrentStreams ?? connection.limit
    })
    // A server going away (GOAWAY) lets the streams under way finish; new ones go to another connection.
    session.once('goaway', forget)
    session.once('close', forget)
    session.on('error', () => undefined)
    session.setTimeout(idleCloseMs, () => {
      if (connection.streams === 0) session.close()
    })
    session.unref()
  }
}

/** Idle sessions do not keep the agent's process alive; one with a stream under way does. */
function reserveStream(connection: Connection): {session: http2.ClientHttp2Session; release: () => void} {
  connection.streams++
  connection.session.ref()
  let released = false
  return {
    session: connection.session,
    release: () => {
      if (released) return
      released = true
      connection.streams--
      if (connection.streams === 0) connection.session.unref()
    },
  }
}

function keyOf(target: UpstreamTarget): string {
  const {ca, cert, key, servername} = target.tls
  const identity = createHash('sha256')
    .update(JSON.stringify([material(ca), material(cert), material(key), servername ?? '']))
    .digest('hex')
  return `${target.address.host}:${target.address.port}/${identity}`
}

/** PEM text of a TLS option, however it was given (string, Buffer, or a list of them). */
function material(value: unknown): string {
  if (typeof value === 'string') return value
  if (Buffer.isBuffer(value)) return value.toString('latin1')
  if (Array.isArray(value)) return value.map(material).join('\n')
  return ''
}
