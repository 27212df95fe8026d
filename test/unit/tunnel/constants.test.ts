import assert from 'node:assert/strict'

import {
  CloseCode,
  FRAME_HEADER_BYTES,
  INITIAL_WINDOW_BYTES,
  KEEPALIVE_MISSED_INTERVALS,
  MAX_DATA_PAYLOAD_BYTES,
  MAX_DESTINATION_BYTES,
  MAX_FRAME_BYTES,
  MAX_WINDOW_BYTES,
  PING_PAYLOAD_BYTES,
  PROTOCOL_VERSION,
  SUBPROTOCOL,
} from '../../../src/tunnel/constants.js'
import {Flag, FrameType, WireErrorCode} from '../../../src/tunnel/frame.js'

// Every value here is on the wire or in PROTOCOL.md. A change is a new protocol version, never a refactor.
describe('tunnel wire constants', () => {
  it('pins the version, sub-protocol and sizes', () => {
    assert.deepEqual(
      {
        PROTOCOL_VERSION,
        SUBPROTOCOL,
        FRAME_HEADER_BYTES,
        MAX_DATA_PAYLOAD_BYTES,
        MAX_FRAME_BYTES,
        INITIAL_WINDOW_BYTES,
        MAX_WINDOW_BYTES,
        MAX_DESTINATION_BYTES,
        PING_PAYLOAD_BYTES,
        KEEPALIVE_MISSED_INTERVALS,
      },
      {
        PROTOCOL_VERSION: 0x01,
        SUBPROTOCOL: 'ksctl-tunnel.v1',
        FRAME_HEADER_BYTES: 8,
        MAX_DATA_PAYLOAD_BYTES: 262144,
        MAX_FRAME_BYTES: 262152,
        INITIAL_WINDOW_BYTES: 262144,
        MAX_WINDOW_BYTES: 16777216,
        MAX_DESTINATION_BYTES: 253,
        PING_PAYLOAD_BYTES: 8,
        KEEPALIVE_MISSED_INTERVALS: 3,
      },
    )
  })

  it('pins the frame types', () => {
    assert.deepEqual([FrameType.Data, FrameType.WindowUpdate, FrameType.Ping, FrameType.GoAway], [0, 1, 2, 3])
  })

  it('pins the flags', () => {
    assert.deepEqual([Flag.None, Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST], [0x0, 0x1, 0x2, 0x4, 0x8])
  })

  it('pins the error codes', () => {
    assert.deepEqual(
      [
        WireErrorCode.NoError,
        WireErrorCode.ProtocolError,
        WireErrorCode.InternalError,
        WireErrorCode.FlowControlError,
        WireErrorCode.RefusedStream,
        WireErrorCode.StreamLimit,
        WireErrorCode.DestinationNotAllowed,
        WireErrorCode.DialFailed,
        WireErrorCode.Cancel,
        WireErrorCode.Aborted,
        WireErrorCode.CloseTimeout,
        WireErrorCode.Shutdown,
        WireErrorCode.KeepaliveTimeout,
        WireErrorCode.BufferLimit,
      ],
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
    )
  })

  it('pins the WebSocket close codes', () => {
    assert.deepEqual(CloseCode, {
      Normal: 1000,
      GoingAway: 1001,
      ProtocolError: 1002,
      PolicyViolation: 1008,
      MessageTooBig: 1009,
      InternalError: 1011,
    })
  })
})
