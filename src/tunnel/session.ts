import {EventEmitter} from 'node:events'

import {decodeFrame, encodeFrame, isValidDestination} from './codec.js'
import {
  CloseCode,
  FIRST_STREAM_ID,
  INITIAL_WINDOW_BYTES,
  KEEPALIVE_MISSED_INTERVALS,
  MAX_PENDING_PONGS,
  MAX_STREAM_ID,
  SESSION_STREAM_ID,
} from './constants.js'
import {
  KeepaliveTimeoutError,
  OpenRefusedError,
  RoleViolationError,
  SessionClosedError,
  StreamResetError,
  StreamStateError,
  TextMessageError,
  TransportClosedError,
  TunnelError,
  TunnelSessionError,
  UnknownStreamError,
} from './errors.js'
import {
  describeFrame,
  Flag,
  FrameType,
  isKnownErrorCode,
  WireErrorCode,
  type Frame,
  type GoAwayFrame,
  type OpenFrame,
  type PingFrame,
  type StreamControlFrame,
} from './frame.js'
import {Keepalive} from './keepalive.js'
import {awaitAnswer, openRequest, type OpenRequest, type PendingOpen} from './open.js'
import {resolveOptions, type ResolvedOptions, type SessionRole, type TunnelSessionOptions} from './options.js'
import {TunnelStream, type StreamHost} from './stream.js'
import type {SendCallback, Transport} from './transport.js'

export type {OpenRequest} from './open.js'
export type {AgentSessionOptions, ProxySessionOptions, SessionRole, TunnelSessionOptions} from './options.js'

export interface OpenStreamOptions {
  signal?: AbortSignal
}

export interface GoAwayOptions {
  /**
   * How long open streams may still run before they are reset; default the session's `goAwayGraceMs`. The
   * sender chooses (PROTOCOL.md §8.1): a shutdown drains for seconds, a token handover for as long as a watch may
   * last. A later call may bring the end closer, never put it off.
   */
  graceMs?: number
}

/** Counters for metrics; a snapshot. */
export interface SessionStats {
  streamsActive: number
  streamsOpened: number
  streamsRefused: number
  /** Streams reset because the session held more unread data than its budget. */
  streamsResetForBuffer: number
  /** Data received and not yet read, over all streams. */
  bytesHeld: number
  framesSent: number
  framesReceived: number
  bytesSent: number
  bytesReceived: number
  rttMs: number | undefined
}

interface SessionEvents {
  /** The session is over; the reason is undefined after a graceful close or a local `close()`. */
  close: [reason: TunnelSessionError | undefined]
  /** A PING went unanswered for the answer deadline with nothing else from the peer (PROTOCOL.md §7). */
  unresponsive: []
  /** The peer was heard from again after 'unresponsive'. */
  responsive: []
  /** The peer sent GO_AWAY: it takes no new streams, and its open ones finish (PROTOCOL.md §8.1). */
  goingAway: []
  /** The session held more unread data than its budget: `stream`, which held the most, was reset. */
  bufferLimit: [stream: TunnelStream, heldBytes: number]
  /** Emitted before `close` when the session failed, and only if someone listens. */
  error: [error: TunnelSessionError]
}

/**
 * One multiplexed tunnel over one transport (PROTOCOL.md). The proxy calls `openStream(name)`; the agent answers
 * each open in its `onOpen` handler. Either side may `goAway()` (graceful) or `close()` (now). The session ends
 * exactly once, with 'close' and the reason (undefined when graceful); a failure is also emitted as 'error',
 * but only to listeners, so a process that only watches 'close' is not crashed by a misbehaving peer.
 */
export class TunnelSession extends EventEmitter<SessionEvents> {
  readonly role: SessionRole
  private readonly options: ResolvedOptions
  private readonly onOpen: ((request: OpenRequest) => void) | undefined
  private readonly streams = new Map<number, TunnelStream>()
  private readonly pendingOpens = new Map<number, PendingOpen>()
  private readonly pendingRequests = new Map<number, AbortController>()
  private readonly keepalive: Keepalive
  private readonly host: StreamHost
  private nextStreamId = FIRST_STREAM_ID
  private highestStreamId = 0
  private sentGoAway = false
  /** After our GO_AWAY: close as soon as the last stream ends (until the grace period runs out). */
  private draining = false
  private receivedGoAway = false
  private peerWentAwayGracefully = false
  private goAwayTimer: NodeJS.Timeout | undefined
  /** When the grace of our GO_AWAY runs out (performance.now()); Infinity while not draining. */
  private goAwayDeadline = Infinity
  private pendingPongs = 0
  private ended = false
  private transportClosed = false
  private endReason: TunnelSessionError | undefined
  private readonly endWaiters: (() => void)[] = []
  private readonly counters = {streamsOpened: 0, streamsRefused: 0, framesSent: 0, framesReceived: 0}
  private bytesSent = 0
  private bytesReceived = 0
  /** Data received on all streams and not read yet; bounded by the buffer budget. */
  private heldBytes = 0
  private streamsReset = 0

  constructor(
    private readonly transport: Transport,
    options: TunnelSessionOptions,
  ) {
    super()
    this.role = options.role
    this.onOpen = options.role === 'agent' ? options.onOpen : undefined
    this.options = resolveOptions(options)
    this.host = {
      sendFrame: (frame, callback) => this.send(frame, callback),
      streamEnded: (stream) => this.forget(stream),
      peerResponsive: () => this.keepalive.responsive,
      heldChanged: (deltaBytes) => (this.heldBytes += deltaBytes),
    }
    const {pingIntervalMs, answerDeadlineMs} = this.options
    this.keepalive = new Keepalive(
      {intervalMs: pingIntervalMs, timeoutMs: pingIntervalMs * KEEPALIVE_MISSED_INTERVALS, answerDeadlineMs},
      {
        sendPing: (opaque) =>
          this.send({type: FrameType.Ping, flags: Flag.None, streamId: SESSION_STREAM_ID, opaque}),
        dead: (silentMs) => this.fail(new KeepaliveTimeoutError(silentMs)),
        unresponsive: () => {
          // An open waiting for its answer would wait the open timeout on a link that drops packets; give it up
          // now so that the caller can try another session (§7). The session does it, once for all opens,
          // rather than each caller listening for 'unresponsive' while its open waits.
          const unresponsive = new TunnelError(
            'TUNNEL_ERR_UNRESPONSIVE',
            'the agent did not answer a ping in time',
          )
          for (const open of [...this.pendingOpens.values()]) open.cancel(unresponsive)
          for (const stream of [...this.streams.values()]) stream.sessionUnresponsive()
          this.emit('unresponsive')
        },
        responsive: () => this.emit('responsive'),
      },
    )
    transport.onMessage((message, isBinary) => this.receive(message, isBinary))
    transport.onClose((code, reason) => this.transportEnded(code, reason))
    this.keepalive.start()
  }

  get stats(): SessionStats {
    return {
      ...this.counters,
      streamsActive: this.streams.size,
      streamsResetForBuffer: this.streamsReset,
      bytesHeld: this.heldBytes,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      rttMs: this.keepalive.rttMs,
    }
  }

  get closed(): boolean {
    return this.ended
  }

  /** The peer sent GO_AWAY: no new stream may be opened on the session, while its open ones finish. */
  get peerGoingAway(): boolean {
    return this.receivedGoAway
  }

  /** False while a PING of ours has gone unanswered past its deadline with nothing else from the peer. */
  get responsive(): boolean {
    return this.keepalive.responsive
  }

  /** Proxy only: asks the agent for `destination` and resolves once the agent accepted (ACK). */
  async openStream(destination: string, options: OpenStreamOptions = {}): Promise<TunnelStream> {
    if (this.role !== 'proxy') throw new TunnelError('TUNNEL_ERR_ROLE', 'only the proxy opens streams')
    if (!isValidDestination(destination)) {
      throw new TunnelError('TUNNEL_ERR_INVALID_DESTINATION', 'malformed destination name')
    }
    if (this.ended) throw new SessionClosedError(this.endReason)
    if (this.sentGoAway || this.receivedGoAway) {
      throw new TunnelError('TUNNEL_ERR_GOING_AWAY', 'session is going away', {
        wireCode: WireErrorCode.RefusedStream,
      })
    }
    if (this.streams.size >= this.options.maxConcurrentStreams) {
      throw new TunnelError('TUNNEL_ERR_STREAM_LIMIT', `${this.streams.size} streams already open`, {
        wireCode: WireErrorCode.StreamLimit,
      })
    }
    if (this.nextStreamId > MAX_STREAM_ID) {
      void this.goAway()
      throw new TunnelError('TUNNEL_ERR_STREAM_IDS_EXHAUSTED', 'no stream id left in this session')
    }
    options.signal?.throwIfAborted()
    const id = this.nextStreamId
    this.nextStreamId += 2
    this.highestStreamId = id
    const stream = this.createStream(id, destination, INITIAL_WINDOW_BYTES)
    stream.sendOpen()
    return awaitAnswer(stream, this.pendingOpens, this.options.streamOpenTimeoutMs, options.signal)
  }

  /**
   * Graceful shutdown (PROTOCOL.md §8.1): sends GO_AWAY, admits no new stream, lets open ones finish, and
   * closes once none is left or the grace period ends (then resets the rest). Resolves when the session is over.
   * Called again while draining, it only shortens the grace if the new one ends sooner (no second GO_AWAY).
   */
  async goAway(options: GoAwayOptions = {}): Promise<void> {
    const graceMs = options.graceMs ?? this.options.goAwayGraceMs
    if (!Number.isInteger(graceMs) || graceMs < 1 || graceMs > maxTimerMs) {
      throw new RangeError(`graceMs must be an integer from 1 to ${maxTimerMs}, got ${graceMs}`)
    }
    if (this.ended) return
    const ended = new Promise<void>((resolve) => this.endWaiters.push(resolve))
    if (!this.sentGoAway) {
      this.sentGoAway = true
      this.sendGoAway(WireErrorCode.NoError)
      this.tellStreamsDraining()
      if (this.streams.size === 0) {
        this.finish(undefined, CloseCode.Normal, 'go away')
        return ended
      }
      this.draining = true
    }
    if (this.draining) this.endDrainWithin(graceMs)
    return ended
  }

  /** Ends the session now: open streams are destroyed with a SessionClosedError, the peer sees a clean close. */
  close(): void {
    if (this.ended) return
    this.sendGoAway(WireErrorCode.NoError)
    this.finish(undefined, CloseCode.Normal, 'closed')
  }

  private createStream(id: number, destination: string, sendCreditBytes: number): TunnelStream {
    const stream = new TunnelStream(this.host, {
      id,
      destination,
      receiveWindowBytes: this.options.receiveWindowBytes,
      sendCreditBytes,
      dataFrameBytes: this.options.dataFrameBytes,
      closeTimeoutMs: this.options.streamCloseTimeoutMs,
    })
    this.streams.set(id, stream)
    this.counters.streamsOpened++
    return stream
  }

  private receive(message: Buffer, isBinary: boolean): void {
    if (this.ended) return
    this.keepalive.received()
    this.counters.framesReceived++
    this.bytesReceived += message.byteLength
    try {
      if (!isBinary) throw new TextMessageError()
      const frame = decodeFrame(message)
      this.options.trace?.(`recv ${describeFrame(frame)}`)
      this.dispatch(frame)
    } catch (error) {
      this.fail(
        error instanceof TunnelSessionError
          ? error
          : new TunnelSessionError('TUNNEL_ERR_INTERNAL', 'internal error', CloseCode.InternalError, {
              cause: error,
            }),
      )
    }
  }

  private dispatch(frame: Frame): void {
    switch (frame.type) {
      case FrameType.Data:
        this.lookup(frame.streamId)?.handleData(frame)
        if (this.heldBytes > this.options.bufferBudgetBytes) this.shedBuffers()
        return
      case FrameType.WindowUpdate:
        this.handleStreamControl(frame)
        return
      case FrameType.Ping:
        this.handlePing(frame)
        return
      case FrameType.GoAway:
        this.handleGoAway(frame)
        return
      default: {
        const unreachable: never = frame
        return unreachable
      }
    }
  }

  /**
   * Over budget: resets the streams holding the most until the session is within it again. A stream holds at most
   * its window, so only many readers that stopped reading at once get here.
   */
  private shedBuffers(): void {
    while (this.heldBytes > this.options.bufferBudgetBytes) {
      let largest: TunnelStream | undefined
      for (const stream of this.streams.values()) {
        if (largest === undefined || stream.heldBytes > largest.heldBytes) largest = stream
      }
      if (largest === undefined || largest.heldBytes === 0) return
      const heldBytes = largest.heldBytes
      this.streamsReset++
      largest.destroy(
        new TunnelError('TUNNEL_ERR_BUFFER_LIMIT', 'session buffer budget exceeded', {
          wireCode: WireErrorCode.BufferLimit,
        }),
      )
      this.emit('bufferLimit', largest, heldBytes)
    }
  }

  private handleStreamControl(frame: StreamControlFrame): void {
    if (frame.flags === Flag.SYN) {
      this.handleOpen(frame)
      return
    }
    const stream = this.lookup(frame.streamId)
    if (stream === undefined) return
    switch (frame.flags) {
      case Flag.None:
        stream.handleWindowUpdate(frame.delta)
        return
      case Flag.ACK:
        stream.handleAccept(frame.delta)
        this.pendingOpens.get(stream.id)?.accepted(stream)
        return
      case Flag.RST:
        this.pendingOpens.get(stream.id)?.failed(new OpenRefusedError(frame.errorCode))
        this.abortRequest(stream.id, new StreamResetError(frame.errorCode))
        stream.handleReset(frame.errorCode)
        return
      default: {
        const unreachable: never = frame
        return unreachable
      }
    }
  }

  /** The stream with `id`; undefined (frame ignored) if it has ended; a protocol error if it never existed. */
  private lookup(id: number): TunnelStream | undefined {
    const stream = this.streams.get(id)
    if (stream !== undefined) return stream
    if (id % 2 === 0 || id > this.highestStreamId) throw new UnknownStreamError(id)
    return undefined
  }

  private handleOpen(frame: OpenFrame): void {
    const onOpen = this.onOpen
    if (onOpen === undefined) throw new RoleViolationError('agent sent syn')
    const id = frame.streamId
    if (id % 2 === 0 || id <= this.highestStreamId) throw new StreamStateError(`syn reuses stream id ${id}`)
    this.highestStreamId = id
    const refusal = this.sentGoAway
      ? WireErrorCode.RefusedStream
      : this.streams.size >= this.options.maxConcurrentStreams
        ? WireErrorCode.StreamLimit
        : undefined
    if (refusal !== undefined) {
      this.counters.streamsRefused++
      this.send({type: FrameType.WindowUpdate, flags: Flag.RST, streamId: id, errorCode: refusal})
      return
    }
    const stream = this.createStream(id, frame.destination, INITIAL_WINDOW_BYTES + frame.delta)
    stream.receiveOpen()
    const controller = new AbortController()
    this.pendingRequests.set(id, controller)
    const request = openRequest(stream, controller.signal, {
      answered: () => this.pendingRequests.delete(id),
      refused: () => this.counters.streamsRefused++,
    })
    try {
      onOpen(request)
    } catch {
      // A throwing handler must not take the whole session down; the proxy learns of it as INTERNAL_ERROR.
      request.reject(WireErrorCode.InternalError)
    }
  }

  private abortRequest(id: number, reason: TunnelError): void {
    const controller = this.pendingRequests.get(id)
    if (controller === undefined) return
    this.pendingRequests.delete(id)
    controller.abort(reason)
  }

  private handlePing(frame: PingFrame): void {
    if (frame.flags === Flag.ACK) {
      this.keepalive.answered(frame.opaque)
      return
    }
    if (this.pendingPongs >= MAX_PENDING_PONGS) return
    this.pendingPongs++
    const pong: Frame = {
      type: FrameType.Ping,
      flags: Flag.ACK,
      streamId: SESSION_STREAM_ID,
      opaque: frame.opaque,
    }
    this.send(pong, () => this.pendingPongs--)
  }

  private handleGoAway(frame: GoAwayFrame): void {
    if (this.receivedGoAway) return
    this.receivedGoAway = true
    const code = frame.errorCode
    this.peerWentAwayGracefully = isKnownErrorCode(code) && code === WireErrorCode.NoError
    this.tellStreamsDraining()
    this.emit('goingAway')
  }

  /** Streams kept for reuse (an idle keep-alive connection) should close now rather than at the grace limit. */
  private tellStreamsDraining(): void {
    for (const stream of [...this.streams.values()]) stream.sessionDraining()
  }

  private forget(stream: TunnelStream): void {
    if (this.streams.get(stream.id) !== stream) return
    this.streams.delete(stream.id)
    if (this.draining && this.streams.size === 0) this.finish(undefined, CloseCode.Normal, 'go away')
  }

  /** Resets what is still open in `graceMs`, unless an earlier deadline is already set. */
  private endDrainWithin(graceMs: number): void {
    const deadline = performance.now() + graceMs
    if (deadline >= this.goAwayDeadline) return
    this.goAwayDeadline = deadline
    clearTimeout(this.goAwayTimer)
    this.goAwayTimer = setTimeout(() => this.graceExpired(), graceMs)
    this.goAwayTimer.unref()
  }

  private graceExpired(): void {
    this.draining = false
    const shutdown = new TunnelError('TUNNEL_ERR_SESSION_CLOSED', 'go away grace period expired', {
      wireCode: WireErrorCode.Shutdown,
    })
    for (const stream of [...this.streams.values()]) stream.destroy(shutdown)
    this.finish(undefined, CloseCode.GoingAway, 'go away grace period expired')
  }

  private send(frame: Frame, callback?: SendCallback): void {
    if (this.ended) {
      if (callback !== undefined) process.nextTick(callback, new SessionClosedError(this.endReason))
      return
    }
    const message = encodeFrame(frame)
    // An open or data expect the peer to react; the answer to an open may take as long as the agent's dial, a
    // PING's shows within the answer deadline whether the peer still hears us (PROTOCOL.md §7).
    if (
      frame.type === FrameType.Data ||
      (frame.type === FrameType.WindowUpdate && frame.flags === Flag.SYN)
    ) {
      this.keepalive.probe()
    }
    this.counters.framesSent++
    this.bytesSent += message.byteLength
    this.options.trace?.(`send ${describeFrame(frame)}`)
    this.transport.send(message, callback ?? ignoreSendError)
  }

  private sendGoAway(code: WireErrorCode | number): void {
    this.send({type: FrameType.GoAway, flags: Flag.None, streamId: SESSION_STREAM_ID, errorCode: code})
  }

  /** Ends the session for `error`: GO_AWAY with its code (best effort), then the close code that goes with it. */
  private fail(error: TunnelSessionError): void {
    if (this.ended) return
    if (!this.transportClosed) this.sendGoAway(error.wireCode)
    this.finish(error, error.closeCode, error.message)
  }

  private transportEnded(code: number, reason: string): void {
    this.transportClosed = true
    if (this.ended) return
    const graceful = code === CloseCode.Normal && (this.sentGoAway || this.peerWentAwayGracefully)
    this.finish(graceful ? undefined : new TransportClosedError(code, reason), code, reason)
  }

  private finish(reason: TunnelSessionError | undefined, closeCode: number, closeReason: string): void {
    if (this.ended) return
    this.ended = true
    this.endReason = reason
    this.keepalive.stop()
    clearTimeout(this.goAwayTimer)
    const streamError = new SessionClosedError(reason)
    for (const pending of [...this.pendingOpens.values()]) pending.failed(streamError)
    for (const id of [...this.pendingRequests.keys()]) this.abortRequest(id, streamError)
    const streams = [...this.streams.values()]
    this.streams.clear()
    for (const stream of streams) stream.sessionEnded(streamError)
    if (!this.transportClosed) this.transport.close(closeCode, closeReason)
    if (reason !== undefined && this.listenerCount('error') > 0) this.emit('error', reason)
    this.emit('close', reason)
    for (const resolve of this.endWaiters.splice(0)) resolve()
  }
}

/** The longest delay setTimeout takes (about 24.8 days); a longer one would fire at once. */
const maxTimerMs = 2 ** 31 - 1

function ignoreSendError(): void {
  // A failed send means the transport is going down; its close handler reports why.
}
