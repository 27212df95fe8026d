import {CloseCode} from './constants.js'
import {errorCodeName, WireErrorCode} from './frame.js'

/** Stable identifiers of tunnel failures, for logs and tests (PROTOCOL.md, appendix). */
export type TunnelErrorCode =
  | 'TUNNEL_ERR_INVALID_FRAME'
  | 'TUNNEL_ERR_UNSUPPORTED_VERSION'
  | 'TUNNEL_ERR_UNKNOWN_FRAME_TYPE'
  | 'TUNNEL_ERR_FRAME_TOO_LARGE'
  | 'TUNNEL_ERR_UNKNOWN_STREAM'
  | 'TUNNEL_ERR_STREAM_STATE'
  | 'TUNNEL_ERR_FLOW_CONTROL'
  | 'TUNNEL_ERR_ROLE'
  | 'TUNNEL_ERR_TEXT_MESSAGE'
  | 'TUNNEL_ERR_KEEPALIVE_TIMEOUT'
  | 'TUNNEL_ERR_INTERNAL'
  | 'TUNNEL_ERR_TRANSPORT_CLOSED'
  | 'TUNNEL_ERR_SESSION_CLOSED'
  | 'TUNNEL_ERR_GOING_AWAY'
  | 'TUNNEL_ERR_STREAM_LIMIT'
  | 'TUNNEL_ERR_STREAM_IDS_EXHAUSTED'
  | 'TUNNEL_ERR_OPEN_TIMEOUT'
  | 'TUNNEL_ERR_UNRESPONSIVE'
  | 'TUNNEL_ERR_BUFFER_LIMIT'
  | 'TUNNEL_ERR_OPEN_REFUSED'
  | 'TUNNEL_ERR_STREAM_RESET'
  | 'TUNNEL_ERR_CLOSE_TIMEOUT'
  | 'TUNNEL_ERR_INVALID_DESTINATION'

export interface TunnelErrorOptions {
  /** The code to put in the RST or GO_AWAY this failure causes. */
  wireCode?: number
  cause?: unknown
}

/** Every failure the tunnel reports is one of these; `code` is stable, the message is a short lowercase phrase. */
export class TunnelError extends Error {
  override readonly name: string = 'TunnelError'
  readonly code: TunnelErrorCode
  readonly wireCode: number

  constructor(code: TunnelErrorCode, message: string, options: TunnelErrorOptions = {}) {
    super(message, {cause: options.cause})
    this.code = code
    this.wireCode = options.wireCode ?? WireErrorCode.InternalError
  }
}

/** A failure that ends a whole session; `closeCode` is the WebSocket close code that goes with it. */
export class TunnelSessionError extends TunnelError {
  override readonly name: string = 'TunnelSessionError'
  readonly closeCode: number

  constructor(code: TunnelErrorCode, message: string, closeCode: number, options: TunnelErrorOptions = {}) {
    super(code, message, options)
    this.closeCode = closeCode
  }
}

/** The peer broke PROTOCOL.md. The session answers with GO_AWAY(`wireCode`) and closes with `closeCode`. */
export class TunnelProtocolError extends TunnelSessionError {
  override readonly name: string = 'TunnelProtocolError'

  constructor(
    code: TunnelErrorCode,
    message: string,
    closeCode: number = CloseCode.ProtocolError,
    wireCode: number = WireErrorCode.ProtocolError,
  ) {
    super(code, message, closeCode, {wireCode})
  }
}

export class InvalidFrameError extends TunnelProtocolError {
  override readonly name = 'InvalidFrameError'

  constructor(message: string) {
    super('TUNNEL_ERR_INVALID_FRAME', message)
  }
}

export class UnsupportedVersionError extends TunnelProtocolError {
  override readonly name = 'UnsupportedVersionError'

  constructor(readonly version: number) {
    super('TUNNEL_ERR_UNSUPPORTED_VERSION', `unsupported version ${version}`)
  }
}

export class UnknownFrameTypeError extends TunnelProtocolError {
  override readonly name = 'UnknownFrameTypeError'

  constructor(readonly frameType: number) {
    super('TUNNEL_ERR_UNKNOWN_FRAME_TYPE', `unknown frame type 0x${frameType.toString(16).padStart(2, '0')}`)
  }
}

export class FrameTooLargeError extends TunnelProtocolError {
  override readonly name = 'FrameTooLargeError'

  constructor(readonly length: number) {
    super('TUNNEL_ERR_FRAME_TOO_LARGE', `frame of ${length} bytes too large`, CloseCode.MessageTooBig)
  }
}

export class UnknownStreamError extends TunnelProtocolError {
  override readonly name = 'UnknownStreamError'

  constructor(readonly streamId: number) {
    super('TUNNEL_ERR_UNKNOWN_STREAM', `unknown stream ${streamId}`)
  }
}

export class StreamStateError extends TunnelProtocolError {
  override readonly name = 'StreamStateError'

  constructor(message: string) {
    super('TUNNEL_ERR_STREAM_STATE', message)
  }
}

export class FlowControlError extends TunnelProtocolError {
  override readonly name = 'FlowControlError'

  constructor(message: string) {
    super('TUNNEL_ERR_FLOW_CONTROL', message, CloseCode.ProtocolError, WireErrorCode.FlowControlError)
  }
}

/** The agent sent SYN: it tried to make the host open a connection. */
export class RoleViolationError extends TunnelProtocolError {
  override readonly name = 'RoleViolationError'

  constructor(message: string) {
    super('TUNNEL_ERR_ROLE', message, CloseCode.PolicyViolation)
  }
}

export class TextMessageError extends TunnelProtocolError {
  override readonly name = 'TextMessageError'

  constructor() {
    super('TUNNEL_ERR_TEXT_MESSAGE', 'text message on a binary protocol')
  }
}

export class KeepaliveTimeoutError extends TunnelSessionError {
  override readonly name = 'KeepaliveTimeoutError'

  /** How long nothing had arrived when the link was declared dead. */
  constructor(readonly silentMs: number) {
    super(
      'TUNNEL_ERR_KEEPALIVE_TIMEOUT',
      `nothing received for ${Math.round(silentMs)} ms`,
      CloseCode.InternalError,
      {
        wireCode: WireErrorCode.KeepaliveTimeout,
      },
    )
  }
}

/** The WebSocket closed without a graceful GO_AWAY: the peer went away, failed, or closed it for an error. */
export class TransportClosedError extends TunnelSessionError {
  override readonly name = 'TransportClosedError'

  constructor(
    closeCode: number,
    readonly reason: string,
  ) {
    super(
      'TUNNEL_ERR_TRANSPORT_CLOSED',
      `transport closed (${closeCode}${reason === '' ? '' : ` ${reason}`})`,
      closeCode,
    )
  }
}

/** The peer aborted a stream with RST. */
export class StreamResetError extends TunnelError {
  override readonly name: string = 'StreamResetError'

  constructor(wireCode: number, code: TunnelErrorCode = 'TUNNEL_ERR_STREAM_RESET', prefix = 'stream reset') {
    super(code, `${prefix}: ${errorCodeName(wireCode)}`, {wireCode})
  }
}

/** The agent answered our SYN with RST; `wireCode` says why (`DESTINATION_NOT_ALLOWED`, `DIAL_FAILED`, …). */
export class OpenRefusedError extends StreamResetError {
  override readonly name = 'OpenRefusedError'

  constructor(wireCode: number) {
    super(wireCode, 'TUNNEL_ERR_OPEN_REFUSED', 'open refused')
  }
}

/** The session ended (closed, failed, or went away) while a stream or an open was still pending. */
export class SessionClosedError extends TunnelError {
  override readonly name = 'SessionClosedError'

  constructor(cause?: unknown) {
    super('TUNNEL_ERR_SESSION_CLOSED', 'session closed', {cause, wireCode: WireErrorCode.Cancel})
  }
}
