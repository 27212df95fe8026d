import {
  DESTINATION_PATTERN,
  ERROR_CODE_BYTES,
  FRAME_HEADER_BYTES,
  INITIAL_WINDOW_BYTES,
  MAX_DATA_PAYLOAD_BYTES,
  MAX_DESTINATION_BYTES,
  MAX_FRAME_BYTES,
  MAX_STREAM_ID,
  MAX_WINDOW_BYTES,
  PING_PAYLOAD_BYTES,
  PROTOCOL_VERSION,
  WINDOW_DELTA_BYTES,
} from './constants.js'
import {
  FrameTooLargeError,
  InvalidFrameError,
  UnknownFrameTypeError,
  UnsupportedVersionError,
} from './errors.js'
import {
  Flag,
  FrameType,
  frameTypeName,
  type DataFrame,
  type Frame,
  type GoAwayFrame,
  type PingFrame,
  type StreamControlFrame,
} from './frame.js'

const frameTypes = new Map<number, FrameType>(
  [FrameType.Data, FrameType.WindowUpdate, FrameType.Ping, FrameType.GoAway].map((type) => [type, type]),
)

/** Single flags only: a reserved bit or two flags at once has no entry. */
const singleFlags = new Map<number, Flag>(
  [Flag.None, Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST].map((flag) => [flag, flag]),
)

/** The largest delta a SYN or ACK may carry: it enlarges the initial window up to the maximum. */
export const MAX_INITIAL_DELTA = MAX_WINDOW_BYTES - INITIAL_WINDOW_BYTES

export function isValidDestination(name: string): boolean {
  return name.length <= MAX_DESTINATION_BYTES && DESTINATION_PATTERN.test(name)
}

/**
 * Parses one WebSocket message. The result's byte fields are views into `message`, not copies. Anything that
 * is not a frame of PROTOCOL.md §3 throws a `TunnelProtocolError`, and nothing else is ever thrown.
 */
export function decodeFrame(message: Uint8Array): Frame {
  if (message.byteLength < FRAME_HEADER_BYTES) {
    throw new InvalidFrameError(`truncated header: ${message.byteLength} bytes`)
  }
  if (message.byteLength > MAX_FRAME_BYTES) throw new FrameTooLargeError(message.byteLength)
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength)
  const version = view.getUint8(0)
  if (version !== PROTOCOL_VERSION) throw new UnsupportedVersionError(version)
  const type = frameTypes.get(view.getUint8(1))
  if (type === undefined) throw new UnknownFrameTypeError(view.getUint8(1))
  const flag = singleFlags.get(view.getUint16(2))
  if (flag === undefined) throw badFlags(view.getUint16(2), frameTypeName(type))
  const streamId = view.getUint32(4)
  const payload = message.subarray(FRAME_HEADER_BYTES)
  switch (type) {
    case FrameType.Data:
      return decodeData(flag, streamId, payload)
    case FrameType.WindowUpdate:
      return decodeStreamControl(flag, streamId, payload)
    case FrameType.Ping:
      return decodePing(flag, streamId, payload)
    case FrameType.GoAway:
      return decodeGoAway(flag, streamId, payload)
    default: {
      const unreachable: never = type
      return unreachable
    }
  }
}

function decodeData(flags: Flag, streamId: number, payload: Uint8Array): DataFrame {
  requireStreamId(streamId, 'DATA')
  if (flags !== Flag.None && flags !== Flag.FIN) throw badFlags(flags, 'DATA')
  if (payload.byteLength === 0 && flags !== Flag.FIN) throw new InvalidFrameError('empty DATA without FIN')
  return {type: FrameType.Data, flags, streamId, payload}
}

function decodeStreamControl(flags: Flag, streamId: number, payload: Uint8Array): StreamControlFrame {
  requireStreamId(streamId, 'WINDOW_UPDATE')
  if (payload.byteLength < WINDOW_DELTA_BYTES) {
    throw new InvalidFrameError(`WINDOW_UPDATE payload of ${payload.byteLength} bytes`)
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
  const delta = view.getUint32(0)
  const rest = payload.subarray(WINDOW_DELTA_BYTES)
  switch (flags) {
    case Flag.None:
      requireLength(rest, 0, 'WINDOW_UPDATE')
      if (delta === 0 || delta > MAX_WINDOW_BYTES)
        throw new InvalidFrameError(`window delta ${delta} out of range`)
      return {type: FrameType.WindowUpdate, flags: Flag.None, streamId, delta}
    case Flag.SYN: {
      requireInitialDelta(delta)
      if (rest.byteLength === 0 || rest.byteLength > MAX_DESTINATION_BYTES) {
        throw new InvalidFrameError(`destination of ${rest.byteLength} bytes`)
      }
      const destination = Buffer.from(rest.buffer, rest.byteOffset, rest.byteLength).toString('latin1')
      if (!DESTINATION_PATTERN.test(destination)) throw new InvalidFrameError('malformed destination name')
      return {type: FrameType.WindowUpdate, flags: Flag.SYN, streamId, delta, destination}
    }
    case Flag.ACK:
      requireLength(rest, 0, 'ACK')
      requireInitialDelta(delta)
      return {type: FrameType.WindowUpdate, flags: Flag.ACK, streamId, delta}
    case Flag.RST:
      requireLength(rest, ERROR_CODE_BYTES, 'RST')
      if (delta !== 0) throw new InvalidFrameError(`RST with window delta ${delta}`)
      return {type: FrameType.WindowUpdate, flags: Flag.RST, streamId, errorCode: view.getUint32(4)}
    case Flag.FIN:
      throw badFlags(flags, 'WINDOW_UPDATE')
    default: {
      const unreachable: never = flags
      return unreachable
    }
  }
}

function decodePing(flags: Flag, streamId: number, payload: Uint8Array): PingFrame {
  requireSessionId(streamId, 'PING')
  if (flags !== Flag.None && flags !== Flag.ACK) throw badFlags(flags, 'PING')
  requireLength(payload, PING_PAYLOAD_BYTES, 'PING')
  return {type: FrameType.Ping, flags, streamId, opaque: payload}
}

function decodeGoAway(flags: Flag, streamId: number, payload: Uint8Array): GoAwayFrame {
  requireSessionId(streamId, 'GO_AWAY')
  if (flags !== Flag.None) throw badFlags(flags, 'GO_AWAY')
  requireLength(payload, ERROR_CODE_BYTES, 'GO_AWAY')
  const errorCode = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0)
  return {type: FrameType.GoAway, flags, streamId, errorCode}
}

function requireStreamId(streamId: number, type: string): void {
  if (streamId === 0) throw new InvalidFrameError(`${type} on stream 0`)
}

function requireSessionId(streamId: number, type: string): asserts streamId is 0 {
  if (streamId !== 0) throw new InvalidFrameError(`${type} on stream ${streamId}`)
}

function requireLength(bytes: Uint8Array, length: number, type: string): void {
  if (bytes.byteLength !== length) throw new InvalidFrameError(`${type} payload of wrong size`)
}

function requireInitialDelta(delta: number): void {
  if (delta > MAX_INITIAL_DELTA) throw new InvalidFrameError(`initial window delta ${delta} out of range`)
}

function badFlags(flags: number, type: string): InvalidFrameError {
  return new InvalidFrameError(`flags 0x${flags.toString(16).padStart(4, '0')} not allowed on ${type}`)
}

/**
 * Serialises a frame into a new buffer, one WebSocket message. Frames this side builds are valid by
 * construction; a frame that is not throws RangeError (a bug here, not the peer's).
 */
export function encodeFrame(frame: Frame): Buffer {
  checkStreamId(frame.streamId)
  switch (frame.type) {
    case FrameType.Data: {
      if (frame.payload.byteLength > MAX_DATA_PAYLOAD_BYTES) throw new RangeError('DATA payload too large')
      const message = header(frame, frame.payload.byteLength)
      message.set(frame.payload, FRAME_HEADER_BYTES)
      return message
    }
    case FrameType.WindowUpdate:
      return encodeStreamControl(frame)
    case FrameType.Ping: {
      if (frame.opaque.byteLength !== PING_PAYLOAD_BYTES) throw new RangeError('PING payload must be 8 bytes')
      const message = header(frame, PING_PAYLOAD_BYTES)
      message.set(frame.opaque, FRAME_HEADER_BYTES)
      return message
    }
    case FrameType.GoAway: {
      const message = header(frame, ERROR_CODE_BYTES)
      message.writeUInt32BE(frame.errorCode, FRAME_HEADER_BYTES)
      return message
    }
    default: {
      const unreachable: never = frame
      return unreachable
    }
  }
}

function encodeStreamControl(frame: StreamControlFrame): Buffer {
  switch (frame.flags) {
    case Flag.None:
    case Flag.ACK: {
      const message = header(frame, WINDOW_DELTA_BYTES)
      message.writeUInt32BE(frame.delta, FRAME_HEADER_BYTES)
      return message
    }
    case Flag.SYN: {
      if (!isValidDestination(frame.destination)) throw new RangeError('malformed destination name')
      const message = header(frame, WINDOW_DELTA_BYTES + frame.destination.length)
      message.writeUInt32BE(frame.delta, FRAME_HEADER_BYTES)
      message.write(frame.destination, FRAME_HEADER_BYTES + WINDOW_DELTA_BYTES, 'latin1')
      return message
    }
    case Flag.RST: {
      const message = header(frame, WINDOW_DELTA_BYTES + ERROR_CODE_BYTES)
      message.writeUInt32BE(0, FRAME_HEADER_BYTES)
      message.writeUInt32BE(frame.errorCode, FRAME_HEADER_BYTES + WINDOW_DELTA_BYTES)
      return message
    }
    default: {
      const unreachable: never = frame
      return unreachable
    }
  }
}

function header(frame: Frame, payloadBytes: number): Buffer {
  const message = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadBytes)
  message.writeUInt8(PROTOCOL_VERSION, 0)
  message.writeUInt8(frame.type, 1)
  message.writeUInt16BE(frame.flags, 2)
  message.writeUInt32BE(frame.streamId, 4)
  return message
}

function checkStreamId(streamId: number): void {
  if (!Number.isInteger(streamId) || streamId < 0 || streamId > MAX_STREAM_ID) {
    throw new RangeError(`stream id ${streamId} out of range`)
  }
}
