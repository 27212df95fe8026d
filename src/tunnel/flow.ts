import {MAX_WINDOW_BYTES} from './constants.js'
import {FlowControlError} from './errors.js'

/** A sender's credit on one stream: the bytes the peer has agreed to receive and not yet seen (PROTOCOL.md §6). */
export class SendWindow {
  private creditBytes: number

  constructor(initialBytes: number) {
    this.creditBytes = initialBytes
  }

  get credit(): number {
    return this.creditBytes
  }

  /** Spends up to `wantedBytes` of credit and returns how much was spent (0 when the window is exhausted). */
  take(wantedBytes: number): number {
    const taken = Math.min(wantedBytes, this.creditBytes)
    this.creditBytes -= taken
    return taken
  }

  /** Adds a WINDOW_UPDATE's delta. A peer granting more than any window can hold is broken. */
  grant(deltaBytes: number): void {
    if (this.creditBytes + deltaBytes > MAX_WINDOW_BYTES) {
      throw new FlowControlError(
        `credit of ${this.creditBytes + deltaBytes} bytes exceeds the largest window`,
      )
    }
    this.creditBytes += deltaBytes
  }
}

/**
 * A receiver's window on one stream. Credit goes back to the peer only for bytes the application has consumed,
 * so received but unread data can never exceed `sizeBytes`, whatever the peer does.
 */
export class ReceiveWindow {
  /** Received and not yet credited back: what the peer believes is in flight or buffered here. */
  private uncreditedBytes = 0
  /** Consumed by the application and not yet credited back. */
  private consumedBytes = 0

  constructor(readonly sizeBytes: number) {}

  /** Bytes the peer may still send before it must wait. */
  get remaining(): number {
    return this.sizeBytes - this.uncreditedBytes
  }

  /** Accounts a DATA payload; one that does not fit means the peer ignored its credit. */
  receive(bytes: number): void {
    if (bytes > this.remaining) {
      throw new FlowControlError(`receive window exceeded: ${bytes} bytes with ${this.remaining} left`)
    }
    this.uncreditedBytes += bytes
  }

  /**
   * Records that the application took `bytes` more and returns the WINDOW_UPDATE delta to send now: 0 until
   * half the window has been consumed, which keeps updates to about two per window.
   */
  consume(bytes: number): number {
    if (this.consumedBytes + bytes > this.uncreditedBytes) {
      throw new RangeError('consumed more than was received')
    }
    this.consumedBytes += bytes
    if (this.consumedBytes < this.sizeBytes / 2) return 0
    const delta = this.consumedBytes
    this.uncreditedBytes -= delta
    this.consumedBytes = 0
    return delta
  }
}
