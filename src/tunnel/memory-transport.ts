import type {SendCallback, Transport} from './transport.js'

/**
 * One end of an in-process link, for tests and for wiring a proxy to an agent in one process. Delivery is
 * asynchronous and in order, messages are copied (a sender may reuse its buffer), and a close is delivered to
 * both ends after the messages sent before it, as a WebSocket closing handshake would.
 */
export class MemoryTransport implements Transport {
  private peer: MemoryTransport | undefined
  private messageHandler: ((message: Buffer, isBinary: boolean) => void) | undefined
  private closeHandler: ((code: number, reason: string) => void) | undefined
  private readonly early: Buffer[] = []
  private queuedBytes = 0
  private closing = false
  private ended = false

  /** Links two ends; each one's sends arrive at the other. */
  static pair(): [MemoryTransport, MemoryTransport] {
    const first = new MemoryTransport()
    const second = new MemoryTransport()
    first.peer = second
    second.peer = first
    return [first, second]
  }

  get bufferedAmount(): number {
    return this.queuedBytes
  }

  send(message: Uint8Array, callback: SendCallback): void {
    if (this.closing || this.ended) {
      process.nextTick(callback, new Error('transport closed'))
      return
    }
    const copy = Buffer.from(message)
    this.queuedBytes += copy.byteLength
    setImmediate(() => {
      this.queuedBytes -= copy.byteLength
      this.peer?.deliver(copy)
      callback()
    })
  }

  close(code: number, reason: string): void {
    if (this.closing || this.ended) return
    this.closing = true
    setImmediate(() => {
      this.end(code, reason)
      this.peer?.end(code, reason)
    })
  }

  onMessage(handler: (message: Buffer, isBinary: boolean) => void): void {
    this.messageHandler = handler
    for (const message of this.early.splice(0)) handler(message, true)
  }

  onClose(handler: (code: number, reason: string) => void): void {
    this.closeHandler = handler
  }

  private deliver(message: Buffer): void {
    if (this.ended) return
    if (this.messageHandler === undefined) this.early.push(message)
    else this.messageHandler(message, true)
  }

  private end(code: number, reason: string): void {
    if (this.ended) return
    this.ended = true
    this.closeHandler?.(code, reason)
  }
}
