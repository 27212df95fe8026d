import assert from 'node:assert/strict'

import {decodeFrame, encodeFrame, MAX_INITIAL_DELTA} from '../../../src/tunnel/codec.js'
import {MAX_DATA_PAYLOAD_BYTES, MAX_FRAME_BYTES, MAX_WINDOW_BYTES} from '../../../src/tunnel/constants.js'
import {TunnelProtocolError, type TunnelErrorCode} from '../../../src/tunnel/errors.js'
import {describeFrame, Flag, FrameType, WireErrorCode, type Frame} from '../../../src/tunnel/frame.js'

const maxId = 0xffffffff
const bytes = (hex: string): Buffer => Buffer.from(hex.replace(/\s+/g, ''), 'hex')

const roundTrips: [string, Frame][] = [
  ['empty DATA with FIN', {type: FrameType.Data, flags: Flag.FIN, streamId: 1, payload: Buffer.alloc(0)}],
  ['one byte DATA with FIN', {type: FrameType.Data, flags: Flag.FIN, streamId: 3, payload: Buffer.from('x')}],
  [
    'max-size DATA on the last stream id',
    {
      type: FrameType.Data,
      flags: Flag.None,
      streamId: maxId,
      payload: Buffer.alloc(MAX_DATA_PAYLOAD_BYTES, 0xab),
    },
  ],
  ['WINDOW_UPDATE of 1', {type: FrameType.WindowUpdate, flags: Flag.None, streamId: 1, delta: 1}],
  [
    'WINDOW_UPDATE of the largest window',
    {type: FrameType.WindowUpdate, flags: Flag.None, streamId: maxId, delta: MAX_WINDOW_BYTES},
  ],
  [
    'SYN with a one-letter destination',
    {type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, delta: 0, destination: 'a'},
  ],
  [
    'SYN with the longest destination and delta',
    {
      type: FrameType.WindowUpdate,
      flags: Flag.SYN,
      streamId: maxId,
      delta: MAX_INITIAL_DELTA,
      destination: 'a'.repeat(253),
    },
  ],
  [
    'SYN with dots, dashes and underscores',
    {type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 7, delta: 4096, destination: 'prom.mon-1_x'},
  ],
  ['ACK', {type: FrameType.WindowUpdate, flags: Flag.ACK, streamId: 1, delta: 0}],
  [
    'ACK with the largest delta',
    {type: FrameType.WindowUpdate, flags: Flag.ACK, streamId: 1, delta: MAX_INITIAL_DELTA},
  ],
  [
    'RST NO_ERROR',
    {type: FrameType.WindowUpdate, flags: Flag.RST, streamId: 1, errorCode: WireErrorCode.NoError},
  ],
  [
    'RST with a code from a newer peer',
    {type: FrameType.WindowUpdate, flags: Flag.RST, streamId: maxId, errorCode: maxId},
  ],
  ['PING', {type: FrameType.Ping, flags: Flag.None, streamId: 0, opaque: Buffer.alloc(8)}],
  ['PING ACK', {type: FrameType.Ping, flags: Flag.ACK, streamId: 0, opaque: Buffer.alloc(8, 0xff)}],
  [
    'GO_AWAY NO_ERROR',
    {type: FrameType.GoAway, flags: Flag.None, streamId: 0, errorCode: WireErrorCode.NoError},
  ],
  ['GO_AWAY with an unknown code', {type: FrameType.GoAway, flags: Flag.None, streamId: 0, errorCode: maxId}],
]

// The worked example of PROTOCOL.md §11, byte for byte.
const wireFixtures: [string, string, Frame][] = [
  [
    'SYN stream 1 to kubernetes',
    '01 01 0001 00000001 00000000 6b756265726e65746573',
    {type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, delta: 0, destination: 'kubernetes'},
  ],
  [
    'ACK stream 1',
    '01 01 0002 00000001 00000000',
    {type: FrameType.WindowUpdate, flags: Flag.ACK, streamId: 1, delta: 0},
  ],
  [
    'DATA "GET /"',
    '01 00 0000 00000001 474554202f',
    {type: FrameType.Data, flags: Flag.None, streamId: 1, payload: Buffer.from('GET /')},
  ],
  [
    'DATA FIN',
    '01 00 0004 00000001',
    {type: FrameType.Data, flags: Flag.FIN, streamId: 1, payload: Buffer.alloc(0)},
  ],
  [
    'WINDOW_UPDATE of 2',
    '01 01 0000 00000001 00000002',
    {type: FrameType.WindowUpdate, flags: Flag.None, streamId: 1, delta: 2},
  ],
  [
    'RST DESTINATION_NOT_ALLOWED',
    '01 01 0008 00000003 00000000 00000006',
    {
      type: FrameType.WindowUpdate,
      flags: Flag.RST,
      streamId: 3,
      errorCode: WireErrorCode.DestinationNotAllowed,
    },
  ],
  [
    'PING 1',
    '01 02 0000 00000000 0000000000000001',
    {type: FrameType.Ping, flags: Flag.None, streamId: 0, opaque: bytes('0000000000000001')},
  ],
  [
    'PING ACK 1',
    '01 02 0002 00000000 0000000000000001',
    {type: FrameType.Ping, flags: Flag.ACK, streamId: 0, opaque: bytes('0000000000000001')},
  ],
  [
    'GO_AWAY NO_ERROR',
    '01 03 0000 00000000 00000000',
    {type: FrameType.GoAway, flags: Flag.None, streamId: 0, errorCode: WireErrorCode.NoError},
  ],
]

/** version type flags stream, then the payload, all as hex. */
const frameHex = (type: string, flags: string, stream: string, payload = ''): Buffer =>
  bytes(`01 ${type} ${flags} ${stream} ${payload}`)
const ascii = (text: string): string => Buffer.from(text, 'latin1').toString('hex')

const malformed: [string, Buffer, TunnelErrorCode][] = [
  ['an empty message', Buffer.alloc(0), 'TUNNEL_ERR_INVALID_FRAME'],
  ['a truncated header', bytes('01 00 0000 000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['version 2', bytes('02 00 0004 00000001'), 'TUNNEL_ERR_UNSUPPORTED_VERSION'],
  ['version 0', bytes('00 00 0004 00000001'), 'TUNNEL_ERR_UNSUPPORTED_VERSION'],
  ['type 0x04', frameHex('04', '0000', '00000000'), 'TUNNEL_ERR_UNKNOWN_FRAME_TYPE'],
  ['type 0xff', frameHex('ff', '0000', '00000001', '00'), 'TUNNEL_ERR_UNKNOWN_FRAME_TYPE'],
  ['a reserved flag bit', frameHex('00', '0010', '00000001', '00'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['the top flag bit', frameHex('00', '8000', '00000001', '00'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['SYN and ACK together', frameHex('01', '0003', '00000001', '00000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['FIN and RST together', frameHex('00', '000c', '00000001'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['SYN on DATA', frameHex('00', '0001', '00000001', '00'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['RST on DATA', frameHex('00', '0008', '00000001', '00'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['FIN on WINDOW_UPDATE', frameHex('01', '0004', '00000001', '00000001'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['FIN on PING', frameHex('02', '0004', '00000000', '0000000000000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['ACK on GO_AWAY', frameHex('03', '0002', '00000000', '00000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['DATA on stream 0', frameHex('00', '0000', '00000000', '00'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['WINDOW_UPDATE on stream 0', frameHex('01', '0000', '00000000', '00000001'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['PING on stream 1', frameHex('02', '0000', '00000001', '0000000000000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['GO_AWAY on stream 5', frameHex('03', '0000', '00000005', '00000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['empty DATA without FIN', frameHex('00', '0000', '00000001'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['a 3-byte WINDOW_UPDATE', frameHex('01', '0000', '00000001', '000001'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['a 5-byte WINDOW_UPDATE', frameHex('01', '0000', '00000001', '0000000100'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['a WINDOW_UPDATE of 0', frameHex('01', '0000', '00000001', '00000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  [
    'a WINDOW_UPDATE above 16 MiB',
    frameHex('01', '0000', '00000001', '01000001'),
    'TUNNEL_ERR_INVALID_FRAME',
  ],
  ['SYN without destination', frameHex('01', '0001', '00000001', '00000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  [
    'SYN with a 254-byte destination',
    frameHex('01', '0001', '00000001', '00000000' + ascii('a'.repeat(254))),
    'TUNNEL_ERR_INVALID_FRAME',
  ],
  ...[
    'Kubernetes',
    'kubernetes:443',
    '10.0.0.1:6443',
    '-kube',
    'kube.',
    'a/b',
    'a b',
    'k\u00e9',
    'a\u0000',
  ].map((name): [string, Buffer, TunnelErrorCode] => [
    `SYN to ${JSON.stringify(name)}`,
    frameHex('01', '0001', '00000001', '00000000' + ascii(name)),
    'TUNNEL_ERR_INVALID_FRAME',
  ]),
  [
    'SYN with a delta past the largest window',
    frameHex('01', '0001', '00000001', 'ffffffff' + ascii('kubernetes')),
    'TUNNEL_ERR_INVALID_FRAME',
  ],
  ['ACK with trailing bytes', frameHex('01', '0002', '00000001', '0000000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  [
    'ACK with a delta past the largest window',
    frameHex('01', '0002', '00000001', '00fc0001'),
    'TUNNEL_ERR_INVALID_FRAME',
  ],
  ['RST without a code', frameHex('01', '0008', '00000001', '00000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['RST with a delta', frameHex('01', '0008', '00000001', '00000001 00000008'), 'TUNNEL_ERR_INVALID_FRAME'],
  [
    'RST with trailing bytes',
    frameHex('01', '0008', '00000001', '00000000 00000008 00'),
    'TUNNEL_ERR_INVALID_FRAME',
  ],
  ['a 7-byte PING', frameHex('02', '0000', '00000000', '00000000000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['a 9-byte PING', frameHex('02', '0000', '00000000', '000000000000000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['a 3-byte GO_AWAY', frameHex('03', '0000', '00000000', '000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  ['an 8-byte GO_AWAY', frameHex('03', '0000', '00000000', '0000000000000000'), 'TUNNEL_ERR_INVALID_FRAME'],
  [
    'a DATA frame one byte over the limit',
    Buffer.concat([frameHex('00', '0000', '00000001'), Buffer.alloc(MAX_DATA_PAYLOAD_BYTES + 1)]),
    'TUNNEL_ERR_FRAME_TOO_LARGE',
  ],
]

describe('tunnel frame codec', () => {
  describe('round trip', () => {
    for (const [name, frame] of roundTrips) {
      it(name, () => assert.deepEqual(decodeFrame(encodeFrame(frame)), frame))
    }
  })

  describe('wire fixtures', () => {
    for (const [name, hex, frame] of wireFixtures) {
      it(`${name} is ${hex}`, () => {
        assert.equal(encodeFrame(frame).toString('hex'), bytes(hex).toString('hex'))
        assert.deepEqual(decodeFrame(bytes(hex)), frame)
      })
    }
  })

  describe('rejects with a typed protocol error', () => {
    for (const [name, message, code] of malformed) {
      it(`${name} (${code})`, () => {
        assert.throws(
          () => decodeFrame(message),
          (error: unknown) => error instanceof TunnelProtocolError && error.code === code,
        )
      })
    }

    it('an oversized message with close code 1009, the others with 1002', () => {
      const closeCodeOf = (message: Buffer): number => {
        try {
          decodeFrame(message)
        } catch (error) {
          if (error instanceof TunnelProtocolError) return error.closeCode
        }
        return 0
      }
      assert.equal(closeCodeOf(Buffer.alloc(MAX_FRAME_BYTES + 1, 1)), 1009)
      assert.equal(closeCodeOf(bytes('02 00 0004 00000001')), 1002)
    })
  })

  it('decodes a frame that sits at an offset inside a larger buffer', () => {
    const frame = encodeFrame({type: FrameType.WindowUpdate, flags: Flag.RST, streamId: 9, errorCode: 7})
    const backing = Buffer.concat([Buffer.from('junk!'), frame, Buffer.from('more junk')])
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 5, frame.byteLength)
    assert.deepEqual(decodeFrame(view), {
      type: FrameType.WindowUpdate,
      flags: Flag.RST,
      streamId: 9,
      errorCode: 7,
    })
  })

  it('decodes the destination from a plain Uint8Array', () => {
    const message = new Uint8Array(encodeFrame(wireFixtures[0]![2]))
    assert.deepEqual(decodeFrame(message), wireFixtures[0]![2])
  })

  it('refuses to encode what it would refuse to decode', () => {
    const invalid: Frame[] = [
      {type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, delta: 0, destination: 'kubernetes:443'},
      {
        type: FrameType.Data,
        flags: Flag.None,
        streamId: 1,
        payload: Buffer.alloc(MAX_DATA_PAYLOAD_BYTES + 1),
      },
      {type: FrameType.Data, flags: Flag.FIN, streamId: 2 ** 32, payload: Buffer.alloc(0)},
      {type: FrameType.Data, flags: Flag.FIN, streamId: -1, payload: Buffer.alloc(0)},
      {type: FrameType.Ping, flags: Flag.None, streamId: 0, opaque: Buffer.alloc(4)},
    ]
    for (const frame of invalid) assert.throws(() => encodeFrame(frame), RangeError, describeFrame(frame))
  })

  it('describes frames on one line without their payload', () => {
    const secret = Buffer.from('Authorization: Bearer planted-token')
    assert.deepEqual(
      [
        describeFrame({type: FrameType.Data, flags: Flag.FIN, streamId: 5, payload: secret}),
        describeFrame(wireFixtures[0]![2]),
        describeFrame(wireFixtures[5]![2]),
        describeFrame({type: FrameType.WindowUpdate, flags: Flag.RST, streamId: 5, errorCode: 0xabcdef}),
        describeFrame(wireFixtures[7]![2]),
        describeFrame(wireFixtures[8]![2]),
      ],
      [
        'DATA stream=5 flags=FIN bytes=35',
        'WINDOW_UPDATE stream=1 flags=SYN delta=0 destination=kubernetes',
        'WINDOW_UPDATE stream=3 flags=RST code=DESTINATION_NOT_ALLOWED',
        'WINDOW_UPDATE stream=5 flags=RST code=0x00abcdef',
        'PING stream=0 flags=ACK opaque=0000000000000001',
        'GO_AWAY stream=0 code=NO_ERROR',
      ],
    )
  })
})
