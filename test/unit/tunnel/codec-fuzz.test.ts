import assert from 'node:assert/strict'

import {decodeFrame, encodeFrame} from '../../../src/tunnel/codec.js'
import {TunnelProtocolError} from '../../../src/tunnel/errors.js'
import {Flag, FrameType, type Frame} from '../../../src/tunnel/frame.js'
import {randomBytes, seededRandom} from './helpers.js'

const seed = Number(process.env.TUNNEL_FUZZ_SEED ?? Date.now() % 2 ** 32)
const iterations = 20_000

const validFrames: Frame[] = [
  {type: FrameType.Data, flags: Flag.None, streamId: 1, payload: Buffer.from('GET /api HTTP/1.1\r\n\r\n')},
  {type: FrameType.Data, flags: Flag.FIN, streamId: 3, payload: Buffer.alloc(0)},
  {type: FrameType.WindowUpdate, flags: Flag.None, streamId: 5, delta: 131072},
  {type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 7, delta: 0, destination: 'kubesphere'},
  {type: FrameType.WindowUpdate, flags: Flag.ACK, streamId: 7, delta: 65536},
  {type: FrameType.WindowUpdate, flags: Flag.RST, streamId: 9, errorCode: 6},
  {type: FrameType.Ping, flags: Flag.ACK, streamId: 0, opaque: Buffer.from('0123456789abcdef', 'hex')},
  {type: FrameType.GoAway, flags: Flag.None, streamId: 0, errorCode: 0},
]

/**
 * Either the decoder accepts the message, and then it is the one canonical encoding of what it decoded, or it
 * throws a TunnelProtocolError. Any other outcome (a TypeError, a RangeError, a crash) fails with the input.
 */
function check(message: Buffer): 'decoded' | 'rejected' {
  let frame: Frame
  try {
    frame = decodeFrame(message)
  } catch (error) {
    if (error instanceof TunnelProtocolError) return 'rejected'
    assert.fail(`seed ${seed}: ${message.toString('hex')} threw ${String(error)}`)
  }
  assert.equal(encodeFrame(frame).toString('hex'), message.toString('hex'), `seed ${seed}: not canonical`)
  return 'decoded'
}

function mutate(random: () => number, message: Buffer): Buffer {
  const pick = (limit: number): number => Math.floor(random() * limit)
  switch (pick(4)) {
    case 0: {
      const copy = Buffer.from(message)
      for (let flips = 1 + pick(3); flips > 0; flips--) copy[pick(copy.length)] = pick(256)
      return copy
    }
    case 1:
      return message.subarray(0, pick(message.length))
    case 2:
      return Buffer.concat([message, randomBytes(random, 1 + pick(8))])
    default: {
      const copy = Buffer.from(message)
      const index = pick(Math.min(8, copy.length))
      copy[index] = copy[index]! ^ (1 << pick(8))
      return copy
    }
  }
}

describe('tunnel frame codec fuzzing', () => {
  it(`decodes or rejects ${iterations} random messages (seed ${seed}, replay with TUNNEL_FUZZ_SEED)`, () => {
    const random = seededRandom(seed)
    const outcomes = {decoded: 0, rejected: 0}
    for (let index = 0; index < iterations; index++) {
      const length = Math.floor(random() * 48)
      const message = randomBytes(random, length)
      // Fully random headers die on the version byte; steer half of them deeper into the decoder.
      if (length >= 8 && random() < 0.5) {
        message[0] = 0x01
        message[1] = Math.floor(random() * 5)
        message.writeUInt16BE([0, 1, 2, 4, 8][Math.floor(random() * 5)]!, 2)
        if (random() < 0.3) message.writeUInt32BE(0, 4)
      }
      outcomes[check(message)]++
    }
    assert.ok(outcomes.rejected > 0 && outcomes.decoded > 0, JSON.stringify(outcomes))
  })

  it(`decodes or rejects ${iterations} mutations of valid frames (seed ${seed})`, () => {
    const random = seededRandom(seed ^ 0x5eed)
    const outcomes = {decoded: 0, rejected: 0}
    const encoded = validFrames.map(encodeFrame)
    for (let index = 0; index < iterations; index++) {
      const original = encoded[index % encoded.length]!
      outcomes[check(mutate(random, original))]++
    }
    assert.ok(outcomes.rejected > 0 && outcomes.decoded > 0, JSON.stringify(outcomes))
  })
})
