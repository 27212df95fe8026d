import http from 'node:http'
import type {Duplex} from 'node:stream'

import type {TunnelStream} from '../../tunnel/index.js'

/** Opens a tunnel stream to a cluster's destination. */
export type StreamOpener = () => Promise<TunnelStream>

/** A kept stream unused this long is closed: the agent's side keeps it far longer, so the proxy closes first. */
export const idleStreamMs = 30_000

/**
 * Node's keep-alive HTTP agent over tunnel streams: a stream carries one request after another instead of
 * a new stream, and on the member a new upstream connection, for every request. Node's agent calls a few
 * net.Socket methods on its connections; a stream has no TCP options, so those are no-ops, and idle streams
 * are closed by a timer of ours.
 */
export class StreamAgent extends http.Agent {
  private readonly idleTimers = new WeakMap<Duplex, NodeJS.Timeout>()

  constructor(
    private readonly openStream: StreamOpener,
    private readonly idleMs = idleStreamMs,
  ) {
    super({keepAlive: true, scheduling: 'lifo'})
  }

  override createConnection(
    _options: unknown,
    callback?: (error: Error | null, socket: Duplex) => void,
  ): undefined {
    this.openStream().then(
      (stream) => {
        // A kept stream of a session that is going away closes now, so the session can end without cutting a
        // request; one whose agent stopped answering closes too, so that new requests open streams elsewhere.
        const closeIfIdle = (): void => {
          if (this.idleTimers.has(stream)) stream.destroy()
        }
        stream.once('draining', closeIfIdle)
        stream.on('unresponsive', closeIfIdle)
        callback?.(null, withSocketMethods(stream))
      },
      (error: unknown) =>
        callback?.(error instanceof Error ? error : new Error(String(error)), undefined as never),
    )
    return undefined
  }

  override keepSocketAlive(socket: Duplex): boolean {
    const stream = socket as TunnelStream
    if (stream.draining || !stream.peerResponsive) return false
    const keep = (super.keepSocketAlive as (socket: Duplex) => boolean)(socket)
    if (keep) {
      const timer = setTimeout(() => socket.destroy(), this.idleMs)
      timer.unref()
      this.idleTimers.set(socket, timer)
    }
    return keep
  }

  override reuseSocket(socket: Duplex, request: http.ClientRequest): void {
    clearTimeout(this.idleTimers.get(socket))
    this.idleTimers.delete(socket)
    super.reuseSocket(socket, request)
  }
}

/**
 * The net.Socket calls Node's HTTP agent and server make, as no-ops that record what a socket would: a
 * tunnel stream has no TCP options, and idle streams are timed out by the proxy's agent.
 */
export function withSocketMethods(stream: Duplex): Duplex {
  const socketLike = stream as Duplex & {timeout?: number}
  return Object.assign(socketLike, {
    setKeepAlive: () => stream,
    setNoDelay: () => stream,
    ref: () => stream,
    unref: () => stream,
    setTimeout: (ms: number) => {
      socketLike.timeout = ms
      return stream
    },
  })
}
