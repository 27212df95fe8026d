import {performance} from 'node:perf_hooks'

import {PING_PAYLOAD_BYTES} from './constants.js'

export interface KeepaliveHooks {
  sendPing(opaque: Uint8Array): void
  /** Nothing arrived for the whole timeout. */
  dead(silentMs: number): void
}

/**
 * PROTOCOL.md §7 for one side: a PING every interval, and a deadline that any received frame pushes back.
 * The deadline timer is re-armed for the time left rather than reset per frame, so a busy link costs one
 * clock read per frame.
 */
export class Keepalive {
  private pingTimer: NodeJS.Timeout | undefined
  private deadlineTimer: NodeJS.Timeout | undefined
  private lastReceivedAt = performance.now()
  private sequence = 0
  private outstanding: {opaque: Buffer; sentAt: number} | undefined
  private lastRttMs: number | undefined

  constructor(
    private readonly intervalMs: number,
    private readonly timeoutMs: number,
    private readonly hooks: KeepaliveHooks,
  ) {}

  /** Round-trip time measured by the last answered PING. */
  get rttMs(): number | undefined {
    return this.lastRttMs
  }

  start(): void {
    this.lastReceivedAt = performance.now()
    this.pingTimer = setInterval(() => this.ping(), this.intervalMs)
    this.pingTimer.unref()
    this.armDeadline(this.timeoutMs)
  }

  stop(): void {
    clearInterval(this.pingTimer)
    clearTimeout(this.deadlineTimer)
  }

  /** Any frame from the peer proves the link alive. */
  received(): void {
    this.lastReceivedAt = performance.now()
  }

  /** A PING+ACK arrived; only the answer to our latest PING measures anything. */
  answered(opaque: Uint8Array): void {
    const outstanding = this.outstanding
    if (outstanding === undefined || !outstanding.opaque.equals(opaque)) return
    this.lastRttMs = performance.now() - outstanding.sentAt
    this.outstanding = undefined
  }

  private ping(): void {
    const opaque = Buffer.alloc(PING_PAYLOAD_BYTES)
    opaque.writeBigUInt64BE(BigInt(++this.sequence))
    this.outstanding = {opaque, sentAt: performance.now()}
    this.hooks.sendPing(opaque)
  }

  private armDeadline(delayMs: number): void {
    this.deadlineTimer = setTimeout(() => this.checkDeadline(), delayMs)
    this.deadlineTimer.unref()
  }

  private checkDeadline(): void {
    const silentMs = performance.now() - this.lastReceivedAt
    if (silentMs >= this.timeoutMs) this.hooks.dead(silentMs)
    else this.armDeadline(this.timeoutMs - silentMs)
  }
}
