import {performance} from 'node:perf_hooks'

import {PING_PAYLOAD_BYTES} from './constants.js'

export interface KeepaliveHooks {
  sendPing(opaque: Uint8Array): void
  /** Nothing arrived for the whole timeout. */
  dead(silentMs: number): void
  /** A PING went unanswered, with nothing else from the peer, for the answer deadline. */
  unresponsive(): void
  /** A frame arrived after `unresponsive`. */
  responsive(): void
}

export interface KeepaliveTimes {
  intervalMs: number
  /** Silence after which the link is dead. */
  timeoutMs: number
  /** How long a PING may go unanswered, with nothing else received, before the peer counts as unresponsive. */
  answerDeadlineMs: number
}

/**
 * PROTOCOL.md §7 for one side: a PING every interval, and a deadline that any received frame pushes back.
 * The deadline timer is re-armed for the time left rather than reset per frame, so a busy link costs one
 * clock read per frame.
 *
 * Between "alive" and "dead" it tells a third state: a PING (a periodic one or a `probe()`) that nothing has
 * followed for the answer deadline makes the peer unresponsive until its next frame. A link that silently
 * drops packets is seen within that deadline of the first probe, long before it is declared dead.
 */
export class Keepalive {
  private pingTimer: NodeJS.Timeout | undefined
  private deadlineTimer: NodeJS.Timeout | undefined
  private answerTimer: NodeJS.Timeout | undefined
  private probeTimer: NodeJS.Timeout | undefined
  /** The oldest `probe()` that nothing from the peer has followed yet. */
  private probeRequestedAt: number | undefined
  private lastReceivedAt = performance.now()
  /** When the oldest PING that nothing has followed yet was sent. */
  private unansweredSince: number | undefined
  private isResponsive = true
  private sequence = 0
  private outstanding: {opaque: Buffer; sentAt: number} | undefined
  private lastRttMs: number | undefined
  private readonly intervalMs: number
  private readonly timeoutMs: number
  private readonly answerDeadlineMs: number
  private readonly probeQuietMs: number

  constructor(
    times: KeepaliveTimes,
    private readonly hooks: KeepaliveHooks,
  ) {
    this.intervalMs = times.intervalMs
    this.timeoutMs = times.timeoutMs
    this.answerDeadlineMs = times.answerDeadlineMs
    this.probeQuietMs = times.answerDeadlineMs / 2
  }

  /** Round-trip time measured by the last answered PING. */
  get rttMs(): number | undefined {
    return this.lastRttMs
  }

  /** False from an unanswered PING's deadline until the peer's next frame. */
  get responsive(): boolean {
    return this.isResponsive
  }

  /**
   * Something was sent that the peer should react to (an open, request data): make sure that within the answer
   * deadline it is known whether the peer still hears us. A quiet link gets a PING at once; one that carried a
   * frame within the last half deadline gets it only if nothing arrives for half a deadline after the request;
   * none is sent while one is still waiting.
   */
  probe(): void {
    if (this.unansweredSince !== undefined) return
    const now = performance.now()
    if (now - this.lastReceivedAt >= this.probeQuietMs) {
      this.ping()
      return
    }
    this.probeRequestedAt ??= now
    if (this.probeTimer === undefined) this.armProbe(this.probeQuietMs)
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
    clearTimeout(this.answerTimer)
    clearTimeout(this.probeTimer)
  }

  /** Any frame from the peer proves the link alive. */
  received(): void {
    this.lastReceivedAt = performance.now()
    this.probeRequestedAt = undefined
    if (this.unansweredSince === undefined) return
    this.unansweredSince = undefined
    clearTimeout(this.answerTimer)
    if (!this.isResponsive) {
      this.isResponsive = true
      this.hooks.responsive()
    }
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
    const now = performance.now()
    this.outstanding = {opaque, sentAt: now}
    if (this.unansweredSince === undefined) {
      this.unansweredSince = now
      this.answerTimer = setTimeout(() => this.answerOverdue(), this.answerDeadlineMs)
      this.answerTimer.unref()
    }
    this.hooks.sendPing(opaque)
  }

  private armProbe(delayMs: number): void {
    this.probeTimer = setTimeout(() => this.probeDue(), delayMs)
    this.probeTimer.unref()
  }

  /** Nothing arrived since the oldest probe request for half a deadline: ask the peer. */
  private probeDue(): void {
    this.probeTimer = undefined
    const requestedAt = this.probeRequestedAt
    if (requestedAt === undefined || this.unansweredSince !== undefined) return
    const waitedMs = performance.now() - requestedAt
    if (waitedMs < this.probeQuietMs) {
      this.armProbe(this.probeQuietMs - waitedMs)
      return
    }
    this.probeRequestedAt = undefined
    this.ping()
  }

  private answerOverdue(): void {
    if (this.unansweredSince === undefined || !this.isResponsive) return
    this.isResponsive = false
    this.hooks.unresponsive()
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
