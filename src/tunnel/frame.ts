/** Frame types, flags and error codes of PROTOCOL.md, and the decoded shape of each frame. */

/** The type byte (PROTOCOL.md §3.1). */
export enum FrameType {
  /**
   * Carries stream bytes. Its payload length counts against the receiver's window. With FIN it is the last
   * frame of data the sender will send on the stream.
   */
  Data = 0x00,
  /**
   * Grants the peer `delta` more bytes of send credit on the stream. It is also the frame that opens (SYN),
   * accepts (ACK) and aborts (RST) a stream; the delta on SYN and ACK enlarges the initial window.
   */
  WindowUpdate = 0x01,
  /**
   * Checks the link and measures round-trip time. The receiver of a PING without ACK must answer with a PING
   * with ACK carrying the same 8 bytes.
   */
  Ping = 0x02,
  /**
   * Announces that the sender is shutting the session down: no new streams, open ones may finish. The error
   * code says why.
   */
  GoAway = 0x03,
}

/** Bits of the 16-bit flags field. At most one is set in any frame; the other bits are reserved and zero. */
export enum Flag {
  None = 0x0000,
  /** On WINDOW_UPDATE: open a stream. The payload's delta is followed by the destination name. */
  SYN = 0x0001,
  /** On WINDOW_UPDATE: accept a stream. On PING: this is the answer to a PING. */
  ACK = 0x0002,
  /** On DATA: the sender will send no more data on this stream (half-close). */
  FIN = 0x0004,
  /** On WINDOW_UPDATE: abort the stream, or refuse to open it. The payload carries an error code. */
  RST = 0x0008,
}

/**
 * Error codes carried by RST and GO_AWAY (PROTOCOL.md §9). Any other 32-bit value is legal on the wire and is
 * treated like INTERNAL_ERROR.
 */
export enum WireErrorCode {
  /** Graceful shutdown. */
  NoError = 0x00,
  /** The peer broke the specification. */
  ProtocolError = 0x01,
  /** The sender failed unexpectedly. */
  InternalError = 0x02,
  /** The peer sent beyond its credit, or over-granted credit. */
  FlowControlError = 0x03,
  /** Open refused because the sender is going away; no data was processed, retry on another session. */
  RefusedStream = 0x04,
  /** Open refused: too many concurrent streams; retry later. */
  StreamLimit = 0x05,
  /** Open refused: the agent does not serve that destination name. */
  DestinationNotAllowed = 0x06,
  /** Open refused: the agent could not connect to the destination. */
  DialFailed = 0x07,
  /** The sender no longer wants the stream (an open abandoned, an application abort). */
  Cancel = 0x08,
  /** The sender's own end of the stream failed (for example its local connection was reset). */
  Aborted = 0x09,
  /** The sender half-closed and the peer stayed silent past the close timeout. */
  CloseTimeout = 0x0a,
  /** The sender's GO_AWAY grace period ended while the stream was open. */
  Shutdown = 0x0b,
  /** The sender stopped hearing from the peer. */
  KeepaliveTimeout = 0x0c,
  /** The sender's session held more unread data than its budget; this stream held the most. */
  BufferLimit = 0x0d,
}

export interface DataFrame {
  readonly type: FrameType.Data
  readonly flags: Flag.None | Flag.FIN
  readonly streamId: number
  /** Empty only together with FIN. */
  readonly payload: Uint8Array
}

/** A plain credit grant. */
export interface WindowUpdateFrame {
  readonly type: FrameType.WindowUpdate
  readonly flags: Flag.None
  readonly streamId: number
  /** At least 1. */
  readonly delta: number
}

/** Opens a stream; only the proxy sends it. */
export interface OpenFrame {
  readonly type: FrameType.WindowUpdate
  readonly flags: Flag.SYN
  readonly streamId: number
  /** How much larger than the initial window the opener's receive window is. */
  readonly delta: number
  /** A name the agent resolves itself (`kubernetes`, `kubesphere`, …), never an address. */
  readonly destination: string
}

/** Accepts a stream; only the agent sends it. */
export interface AcceptFrame {
  readonly type: FrameType.WindowUpdate
  readonly flags: Flag.ACK
  readonly streamId: number
  /** How much larger than the initial window the acceptor's receive window is. */
  readonly delta: number
}

/** Aborts a stream or refuses to open it. Its delta is always 0 on the wire. */
export interface ResetFrame {
  readonly type: FrameType.WindowUpdate
  readonly flags: Flag.RST
  readonly streamId: number
  /** A {@link WireErrorCode}, or any other u32 from a newer peer. */
  readonly errorCode: number
}

export interface PingFrame {
  readonly type: FrameType.Ping
  /** ACK marks the answer. */
  readonly flags: Flag.None | Flag.ACK
  readonly streamId: 0
  /** Exactly 8 bytes, echoed unchanged by the answer. */
  readonly opaque: Uint8Array
}

export interface GoAwayFrame {
  readonly type: FrameType.GoAway
  readonly flags: Flag.None
  readonly streamId: 0
  /** A {@link WireErrorCode}, or any other u32 from a newer peer. */
  readonly errorCode: number
}

export type StreamControlFrame = WindowUpdateFrame | OpenFrame | AcceptFrame | ResetFrame
export type Frame = DataFrame | StreamControlFrame | PingFrame | GoAwayFrame

const frameTypeNames: Record<FrameType, string> = {
  [FrameType.Data]: 'DATA',
  [FrameType.WindowUpdate]: 'WINDOW_UPDATE',
  [FrameType.Ping]: 'PING',
  [FrameType.GoAway]: 'GO_AWAY',
}

const flagNames: Record<Flag, string> = {
  [Flag.None]: '',
  [Flag.SYN]: 'SYN',
  [Flag.ACK]: 'ACK',
  [Flag.FIN]: 'FIN',
  [Flag.RST]: 'RST',
}

const errorCodeNames: Record<WireErrorCode, string> = {
  [WireErrorCode.NoError]: 'NO_ERROR',
  [WireErrorCode.ProtocolError]: 'PROTOCOL_ERROR',
  [WireErrorCode.InternalError]: 'INTERNAL_ERROR',
  [WireErrorCode.FlowControlError]: 'FLOW_CONTROL_ERROR',
  [WireErrorCode.RefusedStream]: 'REFUSED_STREAM',
  [WireErrorCode.StreamLimit]: 'STREAM_LIMIT',
  [WireErrorCode.DestinationNotAllowed]: 'DESTINATION_NOT_ALLOWED',
  [WireErrorCode.DialFailed]: 'DIAL_FAILED',
  [WireErrorCode.Cancel]: 'CANCEL',
  [WireErrorCode.Aborted]: 'ABORTED',
  [WireErrorCode.CloseTimeout]: 'CLOSE_TIMEOUT',
  [WireErrorCode.Shutdown]: 'SHUTDOWN',
  [WireErrorCode.KeepaliveTimeout]: 'KEEPALIVE_TIMEOUT',
  [WireErrorCode.BufferLimit]: 'BUFFER_LIMIT',
}

export function isKnownErrorCode(code: number): code is WireErrorCode {
  return Object.hasOwn(errorCodeNames, code)
}

/** The spec's name of an error code (`DIAL_FAILED`), or its hex value when this version does not know it. */
export function errorCodeName(code: number): string {
  return isKnownErrorCode(code) ? errorCodeNames[code] : `0x${code.toString(16).padStart(8, '0')}`
}

export function frameTypeName(type: FrameType): string {
  return frameTypeNames[type]
}

/**
 * One line for debug logs: type, stream, flag and the frame's fields, but never payload bytes, which may be
 * credentials on their way to an API server.
 */
export function describeFrame(frame: Frame): string {
  const flag = frame.flags === Flag.None ? '' : ` flags=${flagNames[frame.flags]}`
  const head = `${frameTypeNames[frame.type]} stream=${frame.streamId}${flag}`
  switch (frame.type) {
    case FrameType.Data:
      return `${head} bytes=${frame.payload.byteLength}`
    case FrameType.WindowUpdate:
      return `${head} ${describeStreamControl(frame)}`
    case FrameType.Ping:
      return `${head} opaque=${Buffer.from(frame.opaque).toString('hex')}`
    case FrameType.GoAway:
      return `${head} code=${errorCodeName(frame.errorCode)}`
    default: {
      const unreachable: never = frame
      return unreachable
    }
  }
}

function describeStreamControl(frame: StreamControlFrame): string {
  switch (frame.flags) {
    case Flag.None:
    case Flag.ACK:
      return `delta=${frame.delta}`
    case Flag.SYN:
      return `delta=${frame.delta} destination=${frame.destination}`
    case Flag.RST:
      return `code=${errorCodeName(frame.errorCode)}`
    default: {
      const unreachable: never = frame
      return unreachable
    }
  }
}
