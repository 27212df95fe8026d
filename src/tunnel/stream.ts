import {Duplex} from 'node:stream'

import {
  GATHER_BLOCK_BYTES,
  INITIAL_WINDOW_BYTES,
  SMALL_PAYLOAD_BYTES,
  STREAM_READ_HIGH_WATER_MARK_BYTES,
} from './constants.js'
import {StreamResetError, StreamStateError, TunnelError} from './errors.js'
import {ReceiveWindow, SendWindow} from './flow.js'
import {Flag, FrameType, WireErrorCode, type DataFrame, type Frame} from './frame.js'
import {canReceiveData, canSendData, isTerminal, nextState, StreamEvent, StreamState} from './state.js'
import type {SendCallback} from './transport.js'

/** The part of a session a stream talks to. */
export interface StreamHost {
  /** Sends one frame; the callback runs once it was handed to the transport, or with the reason it was not. */
  sendFrame(frame: Frame, callback?: SendCallback): void
  /** The stream reached Closed or Reset: forget it. */
  streamEnded(stream: TunnelStream): void
  /** Whether the session's peer answers PINGs in time (PROTOCOL.md §7). */
  peerResponsive(): boolean
  /** The stream now holds `deltaBytes` more (or fewer) bytes received and not read. */
  heldChanged(deltaBytes: number): void
}

export interface TunnelStreamOptions {
  id: number
  destination: string
  /** This side's receive window (at least the initial window). */
  receiveWindowBytes: number
  /** This side's initial credit: the initial window plus the delta the peer's SYN carried. */
  sendCreditBytes: number
  /** Largest DATA payload to send. */
  dataFrameBytes: number
  /** How long to wait, after our FIN, for the peer's FIN while the stream is silent. */
  closeTimeoutMs: number
}

export interface TunnelStreamStats {
  bytesSent: number
  bytesReceived: number
  /** What this side may send before it has to wait for a WINDOW_UPDATE. */
  sendCredit: number
  /** What the peer may send before it has to wait: the window minus data received and not credited back. */
  receiveCredit: number
}

interface PendingWrite {
  readonly data: Buffer
  readonly callback: SendCallback
  offset: number
  framesInFlight: number
  error: Error | undefined
  done: boolean
}

const emptyPayload = new Uint8Array(0)

/**
 * One tunnel stream as a Node Duplex: `write()`/`end()` send DATA and FIN, the readable side delivers the peer's
 * DATA and ends at its FIN, `destroy()` sends RST and a peer's RST destroys it with a {@link StreamResetError}.
 *
 * Backpressure follows PROTOCOL.md §6: a write completes only once its frames were sent, which needs credit,
 * and credit goes back to the peer only for bytes the reader has taken. The session calls the `handle*`
 * and `send*` methods; applications use the Duplex.
 */
export class TunnelStream extends Duplex {
  readonly id: number
  readonly destination: string
  private currentState = StreamState.Init
  private readonly sendWindow: SendWindow
  private readonly receiveWindow: ReceiveWindow
  private readonly dataFrameBytes: number
  private readonly closeTimeoutMs: number
  private pendingWrite: PendingWrite | undefined
  private closeTimer: NodeJS.Timeout | undefined
  private bytesPushed = 0
  /** Small payloads received while the reader was behind, not yet pushed (see `deliver`). */
  private gathered: Buffer | undefined
  private gatheredBytes = 0
  private bytesConsumed = 0
  private bytesSent = 0
  private isDraining = false
  /** Received and not yet taken by the reader, as last reported to the session. */
  private held = 0

  constructor(
    private readonly host: StreamHost,
    options: TunnelStreamOptions,
  ) {
    super({
      allowHalfOpen: true,
      readableHighWaterMark: STREAM_READ_HIGH_WATER_MARK_BYTES,
      writableHighWaterMark: options.dataFrameBytes,
    })
    this.id = options.id
    this.destination = options.destination
    this.sendWindow = new SendWindow(options.sendCreditBytes)
    this.receiveWindow = new ReceiveWindow(options.receiveWindowBytes)
    this.dataFrameBytes = options.dataFrameBytes
    this.closeTimeoutMs = options.closeTimeoutMs
  }

  get state(): StreamState {
    return this.currentState
  }

  /** Bytes received and not yet read, for the session's buffer budget. */
  get heldBytes(): number {
    return this.held
  }

  get stats(): TunnelStreamStats {
    return {
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesPushed + this.gatheredBytes,
      sendCredit: this.sendWindow.credit,
      receiveCredit: this.receiveWindow.remaining,
    }
  }

  /** Proxy: announce the stream with SYN. */
  sendOpen(): void {
    const delta = this.receiveWindow.sizeBytes - INITIAL_WINDOW_BYTES
    this.host.sendFrame({
      type: FrameType.WindowUpdate,
      flags: Flag.SYN,
      streamId: this.id,
      delta,
      destination: this.destination,
    })
    this.transition(StreamEvent.SendSyn)
  }

  /** Agent: a SYN created this stream. */
  receiveOpen(): void {
    this.transition(StreamEvent.ReceiveSyn)
  }

  /** Agent: accept with ACK. */
  sendAccept(): void {
    const delta = this.receiveWindow.sizeBytes - INITIAL_WINDOW_BYTES
    this.host.sendFrame({type: FrameType.WindowUpdate, flags: Flag.ACK, streamId: this.id, delta})
    this.transition(StreamEvent.SendAck)
  }

  /** Proxy: the agent accepted. */
  handleAccept(delta: number): void {
    this.transition(StreamEvent.ReceiveAck)
    this.sendWindow.grant(delta)
  }

  handleData(frame: DataFrame): void {
    if (!canReceiveData(this.currentState)) {
      throw new StreamStateError(`DATA on stream ${this.id} in state ${this.currentState}`)
    }
    this.receiveWindow.receive(frame.payload.byteLength)
    if (frame.payload.byteLength > 0) {
      this.deliver(frame.payload)
      // A 'data' listener runs inside push() and may have destroyed the stream.
      if (isTerminal(this.currentState)) return
      this.updateHeld()
    }
    if (this.currentState === StreamState.LocalClosed) this.closeTimer?.refresh()
    if (frame.flags === Flag.FIN) {
      this.transition(StreamEvent.ReceiveFin)
      this.releaseGathered()
      this.push(null)
    }
  }

  handleWindowUpdate(delta: number): void {
    if (this.currentState === StreamState.LocalClosed) return
    if (!canSendData(this.currentState)) {
      throw new StreamStateError(`WINDOW_UPDATE on stream ${this.id} in state ${this.currentState}`)
    }
    this.sendWindow.grant(delta)
    this.flushPendingWrite()
  }

  /** The peer sent RST. A stream the application never received is dropped quietly. */
  handleReset(wireCode: number): void {
    const delivered = this.isDelivered()
    this.transition(StreamEvent.ReceiveRst)
    this.destroy(delivered ? new StreamResetError(wireCode) : undefined)
  }

  /** Sends RST with `wireCode` and drops a stream the application never received (refusal, cancelled open). */
  refuse(wireCode: number): void {
    this.sendReset(wireCode)
    this.destroy()
  }

  /**
   * The session admits no new stream and ends once the open ones are done (GO_AWAY, either way): a user that
   * keeps streams for reuse stops doing so. Emits 'draining' once.
   */
  get draining(): boolean {
    return this.isDraining
  }

  sessionDraining(): void {
    if (this.isDraining) return
    this.isDraining = true
    this.emit('draining')
  }

  /** False while the session's peer has not answered a PING in time: a stream kept for reuse gets no new work. */
  get peerResponsive(): boolean {
    return this.host.peerResponsive()
  }

  /** The session's peer has not answered a PING in time. Emits 'unresponsive'. */
  sessionUnresponsive(): void {
    this.emit('unresponsive')
  }

  /** The session is gone: nothing can be sent any more. */
  sessionEnded(error: Error): void {
    if (isTerminal(this.currentState)) return
    const delivered = this.isDelivered()
    this.currentState = StreamState.Reset
    this.destroy(delivered ? error : undefined)
  }

  override _read(): void {
    this.returnConsumedCredit()
    this.releaseGathered()
    this.updateHeld()
    // Data is pushed as frames arrive, not here. An empty push ends Node's "reading" phase without adding data,
    // so the reader's next read() calls _read again and every consumption is observed (Readable docs,
    // readable.push('')); otherwise the last bytes a reader takes could go uncredited and stall the peer.
    this.push(emptyPayload)
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: SendCallback): void {
    this.startWrite(chunk, callback)
  }

  override _writev(chunks: {chunk: Buffer}[], callback: SendCallback): void {
    this.startWrite(Buffer.concat(chunks.map(({chunk}) => chunk)), callback)
  }

  override _final(callback: SendCallback): void {
    if (!canSendData(this.currentState)) {
      callback(new StreamStateError(`cannot half-close stream ${this.id} in state ${this.currentState}`))
      return
    }
    this.host.sendFrame(
      {type: FrameType.Data, flags: Flag.FIN, streamId: this.id, payload: emptyPayload},
      callback,
    )
    this.transition(StreamEvent.SendFin)
    if (this.currentState === StreamState.LocalClosed) this.startCloseTimer()
  }

  override _destroy(error: Error | null, callback: SendCallback): void {
    if (this.pendingWrite !== undefined) this.pendingWrite.done = true
    this.pendingWrite = undefined
    this.gathered = undefined
    this.gatheredBytes = 0
    this.setHeld(0)
    if (!isTerminal(this.currentState)) this.sendReset(wireCodeFor(error))
    clearTimeout(this.closeTimer)
    callback(error)
  }

  /**
   * Hands a payload to the reader. A payload is a view into the WebSocket message, which may itself be a view
   * into a larger socket read, so keeping it can pin far more memory than its length: a wasteful view is
   * copied, and small payloads that arrive while the reader is behind are gathered into blocks. What a slow
   * reader holds then stays within about twice its window, whatever frame sizes the peer chooses.
   */
  private deliver(payload: Uint8Array): void {
    if (
      payload.byteLength < SMALL_PAYLOAD_BYTES &&
      (this.readableLength > 0 || this.gathered !== undefined)
    ) {
      this.gather(payload)
      return
    }
    this.releaseGathered()
    this.pushBytes(payload)
  }

  /** What sits in the readable buffer and the gathering block; the reader takes it from there. */
  private updateHeld(): void {
    this.setHeld(this.destroyed ? 0 : this.readableLength + this.gatheredBytes)
  }

  private setHeld(bytes: number): void {
    if (bytes === this.held) return
    const delta = bytes - this.held
    this.held = bytes
    this.host.heldChanged(delta)
  }

  private gather(payload: Uint8Array): void {
    if (this.gathered !== undefined && this.gatheredBytes + payload.byteLength > this.gathered.byteLength) {
      this.releaseGathered()
    }
    this.gathered ??= Buffer.allocUnsafe(GATHER_BLOCK_BYTES)
    this.gathered.set(payload, this.gatheredBytes)
    this.gatheredBytes += payload.byteLength
  }

  private releaseGathered(): void {
    if (this.gathered === undefined) return
    const block = this.gathered.subarray(0, this.gatheredBytes)
    this.gathered = undefined
    this.gatheredBytes = 0
    this.pushBytes(block)
  }

  private pushBytes(bytes: Uint8Array): void {
    this.bytesPushed += bytes.byteLength
    this.push(bytes.byteLength * 2 < bytes.buffer.byteLength ? Buffer.from(bytes) : bytes)
  }

  /**
   * The reader has taken everything pushed except what still sits in the readable buffer. Credit for it goes
   * back once it reaches half the window; a reader waiting for data has always been observed (its last read()
   * ran `_read`), so what it consumed but was not credited is under half the window and the peer can send.
   */
  private returnConsumedCredit(): void {
    const consumed = this.bytesPushed - this.readableLength
    const newlyConsumed = consumed - this.bytesConsumed
    if (newlyConsumed <= 0) return
    this.bytesConsumed = consumed
    const delta = this.receiveWindow.consume(newlyConsumed)
    if (delta > 0 && canReceiveData(this.currentState)) {
      this.host.sendFrame({type: FrameType.WindowUpdate, flags: Flag.None, streamId: this.id, delta})
    }
  }

  private startWrite(data: Buffer, callback: SendCallback): void {
    if (!canSendData(this.currentState)) {
      callback(new StreamStateError(`cannot write to stream ${this.id} in state ${this.currentState}`))
      return
    }
    this.pendingWrite = {data, callback, offset: 0, framesInFlight: 0, error: undefined, done: false}
    this.flushPendingWrite()
  }

  /** Sends as much of the pending write as the credit allows; a WINDOW_UPDATE resumes it. */
  private flushPendingWrite(): void {
    const write = this.pendingWrite
    if (write === undefined) return
    while (write.offset < write.data.byteLength && write.error === undefined) {
      const size = this.sendWindow.take(Math.min(write.data.byteLength - write.offset, this.dataFrameBytes))
      if (size === 0) return
      const payload = write.data.subarray(write.offset, write.offset + size)
      write.offset += size
      write.framesInFlight++
      this.bytesSent += size
      this.host.sendFrame({type: FrameType.Data, flags: Flag.None, streamId: this.id, payload}, (error) => {
        write.framesInFlight--
        write.error ??= error ?? undefined
        this.completeWrite(write)
      })
    }
    this.completeWrite(write)
  }

  private completeWrite(write: PendingWrite): void {
    const finished = write.offset === write.data.byteLength || write.error !== undefined
    if (write.done || !finished || write.framesInFlight > 0) return
    write.done = true
    if (this.pendingWrite === write) this.pendingWrite = undefined
    write.callback(write.error)
  }

  private sendReset(wireCode: number): void {
    this.host.sendFrame({
      type: FrameType.WindowUpdate,
      flags: Flag.RST,
      streamId: this.id,
      errorCode: wireCode,
    })
    this.transition(StreamEvent.SendRst)
  }

  private startCloseTimer(): void {
    this.closeTimer = setTimeout(() => {
      if (this.currentState !== StreamState.LocalClosed) return
      this.destroy(
        new TunnelError('TUNNEL_ERR_CLOSE_TIMEOUT', 'peer did not answer fin', {
          wireCode: WireErrorCode.CloseTimeout,
        }),
      )
    }, this.closeTimeoutMs)
    this.closeTimer.unref()
  }

  /** Whether the application holds this stream: after SYN/ACK, never before. */
  private isDelivered(): boolean {
    const state = this.currentState
    return state !== StreamState.Init && state !== StreamState.SynSent && state !== StreamState.SynReceived
  }

  private transition(event: StreamEvent): void {
    const next = nextState(this.currentState, event)
    if (next === undefined) {
      throw new StreamStateError(`${event} on stream ${this.id} in state ${this.currentState}`)
    }
    this.currentState = next
    if (isTerminal(next)) {
      clearTimeout(this.closeTimer)
      this.host.streamEnded(this)
    }
  }
}

/** The RST code for a local destroy: no error is a cancel, our own errors carry theirs, anything else aborted. */
function wireCodeFor(error: Error | null): number {
  if (error === null) return WireErrorCode.Cancel
  return error instanceof TunnelError ? error.wireCode : WireErrorCode.Aborted
}
