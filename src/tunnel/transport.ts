import type {Writable} from 'node:stream'

import WebSocket from 'ws'

import {CLOSE_HANDSHAKE_TIMEOUT_MS, MAX_FRAME_BYTES, SUBPROTOCOL} from './constants.js'

export type SendCallback = (error?: Error | null) => void

/**
 * What a session needs from the link under it: ordered, reliable, message-delimited delivery. The session never
 * touches a socket, so tests can run it over memory and the proxy and agent over `ws`.
 *
 * Contract: messages arrive in the order they were sent; `send`'s callback runs exactly once, asynchronously,
 * after the message has been handed to the network (or with an error); the close handler runs exactly once,
 * however the link ended, and no message is delivered after it.
 */
export interface Transport {
  send(message: Uint8Array, callback: SendCallback): void
  /** Starts closing; idempotent. The close handler reports the end. */
  close(code: number, reason: string): void
  /** Registers the receiver of messages; messages arriving before registration are kept for it. */
  onMessage(handler: (message: Buffer, isBinary: boolean) => void): void
  onClose(handler: (code: number, reason: string) => void): void
  /** Bytes accepted by `send` and not yet handed to the network. */
  readonly bufferedAmount: number
}

/** Options for both ends' `ws` objects: refuse oversized messages early and never compress (PROTOCOL.md §1.1). */
export const webSocketOptions = {maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false} as const

/** For `WebSocketServer`'s `handleProtocols`: select the tunnel sub-protocol, or refuse the upgrade. */
export function selectSubprotocol(offered: Set<string>): string | false {
  return offered.has(SUBPROTOCOL) ? SUBPROTOCOL : false
}

/** A close reason travels in a control frame of at most 125 bytes, 2 of which are the code. */
const MAX_CLOSE_REASON_BYTES = 123

/** A WebSocket gives one message per frame; `ws` writes and reads them in order on one socket. */
class WebSocketTransport implements Transport {
  private messageHandler: ((message: Buffer, isBinary: boolean) => void) | undefined
  private closeHandler: ((code: number, reason: string) => void) | undefined
  private readonly early: {message: Buffer; isBinary: boolean}[] = []
  private closedWith: {code: number; reason: string} | undefined
  private terminateTimer: NodeJS.Timeout | undefined
  private corked = false
  /** Sends made while the client is still connecting; ws would throw on them. */
  private readonly unsent: {message: Uint8Array; callback: SendCallback}[] = []

  constructor(
    private readonly socket: WebSocket,
    private readonly closeHandshakeTimeoutMs: number,
  ) {
    socket.binaryType = 'nodebuffer'
    if (socket.readyState === WebSocket.CONNECTING) {
      socket.once('open', () => {
        for (const {message, callback} of this.unsent.splice(0)) this.send(message, callback)
      })
    }
    socket.on('message', (data, isBinary) => {
      const message = toBuffer(data)
      if (this.messageHandler === undefined) this.early.push({message, isBinary})
      else this.messageHandler(message, isBinary)
    })
    // 'close' always follows 'error' and carries the code (1006 for a broken socket); the listener only keeps
    // an 'error' without listeners from crashing the process.
    socket.on('error', () => undefined)
    socket.on('close', (code, reason) => this.ended(code, reason.toString()))
    if (socket.readyState === WebSocket.CLOSED) this.ended(1006, '')
  }

  get bufferedAmount(): number {
    return this.socket.bufferedAmount
  }

  send(message: Uint8Array, callback: SendCallback): void {
    if (this.socket.readyState === WebSocket.CONNECTING) {
      this.unsent.push({message, callback})
      return
    }
    this.corkUntilNextTick()
    this.socket.send(message, {binary: true}, callback)
  }

  /**
   * Frames sent in one tick leave in one write. A request is several small frames each way (head, data, FIN,
   * window updates), and a system call per frame cost more than everything else the tunnel does per request.
   * ws keeps its socket in `_socket`, not part of its typed API; without one nothing is batched.
   */
  private corkUntilNextTick(): void {
    const raw = (this.socket as unknown as {_socket?: Writable | null})._socket
    if (this.corked || raw === undefined || raw === null) return
    this.corked = true
    raw.cork()
    process.nextTick(() => {
      this.corked = false
      raw.uncork()
    })
  }

  close(code: number, reason: string): void {
    if (this.closedWith !== undefined || this.terminateTimer !== undefined) return
    this.socket.close(code, truncateReason(reason))
    // A dead peer never answers the close frame; do not hold the socket for ws's own 30 s.
    this.terminateTimer = setTimeout(() => this.socket.terminate(), this.closeHandshakeTimeoutMs)
    this.terminateTimer.unref()
  }

  onMessage(handler: (message: Buffer, isBinary: boolean) => void): void {
    this.messageHandler = handler
    for (const {message, isBinary} of this.early.splice(0)) handler(message, isBinary)
  }

  onClose(handler: (code: number, reason: string) => void): void {
    this.closeHandler = handler
    const closedWith = this.closedWith
    if (closedWith !== undefined) queueMicrotask(() => handler(closedWith.code, closedWith.reason))
  }

  private ended(code: number, reason: string): void {
    if (this.closedWith !== undefined) return
    clearTimeout(this.terminateTimer)
    this.closedWith = {code, reason}
    for (const {callback} of this.unsent.splice(0))
      process.nextTick(callback, new Error('websocket never opened'))
    this.closeHandler?.(code, reason)
  }
}

function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data
  if (Array.isArray(data)) return Buffer.concat(data)
  return Buffer.from(data)
}

function truncateReason(reason: string): string {
  let truncated = reason
  while (Buffer.byteLength(truncated) > MAX_CLOSE_REASON_BYTES) truncated = truncated.slice(0, -1)
  return truncated
}

/**
 * Adapts a `ws` WebSocket (either end) to a {@link Transport}. Create it synchronously, right where the socket is
 * created or accepted (`new WebSocket(…)`, the server's 'connection' listener), not after an `await`: ws may
 * deliver the peer's first message in the same tick as 'open', before a promise continuation runs. Sends made
 * while a client is still connecting wait for 'open'.
 */
export function webSocketTransport(
  socket: WebSocket,
  closeHandshakeTimeoutMs: number = CLOSE_HANDSHAKE_TIMEOUT_MS,
): Transport {
  return new WebSocketTransport(socket, closeHandshakeTimeoutMs)
}
