import assert from 'node:assert/strict'
import {setTimeout as delay} from 'node:timers/promises'

import {encodeFrame} from '../../../src/tunnel/codec.js'
import {DATA_FRAME_BYTES, INITIAL_WINDOW_BYTES} from '../../../src/tunnel/constants.js'
import {
  FlowControlError,
  RoleViolationError,
  StreamStateError,
  TextMessageError,
  TunnelProtocolError,
  UnknownStreamError,
  UnsupportedVersionError,
} from '../../../src/tunnel/errors.js'
import {
  Flag,
  FrameType,
  WireErrorCode,
  type AcceptFrame,
  type Frame,
  type GoAwayFrame,
  type PingFrame,
  type ResetFrame,
} from '../../../src/tunnel/frame.js'
import {TunnelSession, type OpenRequest} from '../../../src/tunnel/session.js'
import type {TunnelStream} from '../../../src/tunnel/stream.js'
import {fastTimers, linkKinds, RawPeer, waitFor, webSocketLink, whenClosed, type Link} from './helpers.js'

const isGoAway = (frame: Frame): frame is GoAwayFrame => frame.type === FrameType.GoAway
const isPong = (frame: Frame): frame is PingFrame => frame.type === FrameType.Ping && frame.flags === Flag.ACK
const isAck =
  (streamId: number) =>
  (frame: Frame): frame is AcceptFrame =>
    frame.type === FrameType.WindowUpdate && frame.flags === Flag.ACK && frame.streamId === streamId
const isReset =
  (streamId: number) =>
  (frame: Frame): frame is ResetFrame =>
    frame.type === FrameType.WindowUpdate && frame.flags === Flag.RST && frame.streamId === streamId

const syn = (streamId: number, destination = 'kubernetes'): Frame => ({
  type: FrameType.WindowUpdate,
  flags: Flag.SYN,
  streamId,
  delta: 0,
  destination,
})
const data = (streamId: number, payload: Buffer): Frame => ({
  type: FrameType.Data,
  flags: Flag.None,
  streamId,
  payload,
})
const ping: Frame = {
  type: FrameType.Ping,
  flags: Flag.None,
  streamId: 0,
  opaque: Buffer.from('0102030405060708', 'hex'),
}

for (const kind of linkKinds) {
  describe(`tunnel session protocol errors over ${kind.name}`, () => {
    let link: Link
    let session: TunnelSession | undefined
    const accepted: TunnelStream[] = []

    /** A real agent session facing a hand-driven proxy; these tests are about the session, not stream errors. */
    function agentFacingRawProxy(onOpen?: (request: OpenRequest) => void): [TunnelSession, RawPeer] {
      const raw = new RawPeer(link.proxy)
      session = new TunnelSession(link.agent, {
        role: 'agent',
        ...fastTimers,
        onOpen: onOpen ?? ((request) => accepted.push(request.accept().on('error', () => undefined))),
      })
      return [session, raw]
    }

    /** The session closes with `expected`, and the raw peer sees GO_AWAY(`wireCode`) and close `closeCode`. */
    async function assertFailed(
      closed: Promise<unknown>,
      raw: RawPeer,
      expected: new (...args: never[]) => TunnelProtocolError,
      wireCode: number,
      closeCode: number,
    ): Promise<void> {
      const reason = await closed
      assert.ok(reason instanceof expected, String(reason))
      assert.equal((await raw.frame(isGoAway)).errorCode, wireCode)
      assert.equal((await raw.closed()).code, closeCode)
    }

    beforeEach(async () => {
      link = await kind.create()
    })

    afterEach(async () => {
      accepted.length = 0
      session?.close()
      session = undefined
      await link.dispose()
    })

    it('ends the session on a frame for a stream that never existed', async () => {
      const [agent, raw] = agentFacingRawProxy()
      const closed = whenClosed(agent)
      raw.send(data(99, Buffer.from('x')))
      await assertFailed(closed, raw, UnknownStreamError, WireErrorCode.ProtocolError, 1002)
    })

    it('ignores frames for a stream that has ended, and keeps answering pings', async () => {
      const [agent, raw] = agentFacingRawProxy()
      raw.send(syn(1))
      await raw.frame(isAck(1))
      raw.send({type: FrameType.WindowUpdate, flags: Flag.RST, streamId: 1, errorCode: WireErrorCode.Cancel})
      raw.send(data(1, Buffer.from('in flight')))
      raw.send({type: FrameType.WindowUpdate, flags: Flag.None, streamId: 1, delta: 100})
      raw.send({type: FrameType.WindowUpdate, flags: Flag.RST, streamId: 1, errorCode: WireErrorCode.Cancel})
      raw.send(ping)
      const pong = await raw.frame(isPong)
      assert.equal(Buffer.from(pong.opaque).toString('hex'), '0102030405060708')
      assert.equal(agent.closed, false)
      assert.equal(raw.frames.filter(isReset(1)).length, 0, 'no RST answers an RST')
    })

    it('treats a SYN from the agent side as a policy violation (1008)', async () => {
      const raw = new RawPeer(link.agent)
      session = new TunnelSession(link.proxy, {role: 'proxy', ...fastTimers})
      const closed = whenClosed(session)
      raw.send(syn(2))
      const reason = await closed
      assert.ok(reason instanceof RoleViolationError)
      assert.equal(reason.code, 'TUNNEL_ERR_ROLE')
      await assertFailed(Promise.resolve(reason), raw, RoleViolationError, WireErrorCode.ProtocolError, 1008)
    })

    it('ends the session when the peer sends beyond the window', async () => {
      const [agent, raw] = agentFacingRawProxy()
      const closed = whenClosed(agent)
      raw.send(syn(1))
      await raw.frame(isAck(1))
      for (let sent = 0; sent < INITIAL_WINDOW_BYTES; sent += DATA_FRAME_BYTES) {
        raw.send(data(1, Buffer.alloc(DATA_FRAME_BYTES)))
      }
      await waitFor(() => accepted[0]?.readableLength === INITIAL_WINDOW_BYTES)
      raw.send(data(1, Buffer.from('!')))
      await assertFailed(closed, raw, FlowControlError, WireErrorCode.FlowControlError, 1002)
    })

    it('gathers tiny frames a slow reader has not taken into a few buffers', async () => {
      const [, raw] = agentFacingRawProxy()
      raw.send(syn(1))
      await raw.frame(isAck(1))
      const sent = Buffer.from(Array.from({length: 20_000}, (_, index) => index % 251))
      for (const byte of sent) raw.send(data(1, Buffer.from([byte])))
      raw.send({type: FrameType.Data, flags: Flag.FIN, streamId: 1, payload: Buffer.alloc(0)})
      const stream = accepted[0]!
      await waitFor(() => stream.stats.bytesReceived === sent.length)
      const chunks: Buffer[] = []
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      await new Promise((resolve) => stream.once('end', resolve))
      assert.ok(Buffer.concat(chunks).equals(sent))
      // How often Node asks for more (which releases a partly filled block) depends on how the frames were
      // batched on the socket; the point is a handful of blocks, not a buffer per frame.
      assert.ok(chunks.length <= 8, `${chunks.length} buffers for 20000 one-byte frames`)
    })

    it('ends the session on a frame of another version', async () => {
      const [agent, raw] = agentFacingRawProxy()
      const closed = whenClosed(agent)
      const message = encodeFrame(ping)
      message[0] = 0x02
      raw.sendBytes(message)
      await assertFailed(closed, raw, UnsupportedVersionError, WireErrorCode.ProtocolError, 1002)
    })

    it('ends the session on a SYN that reuses a stream id', async () => {
      const [agent, raw] = agentFacingRawProxy()
      const closed = whenClosed(agent)
      raw.send(syn(3))
      await raw.frame(isAck(3))
      raw.send(syn(1))
      await assertFailed(closed, raw, StreamStateError, WireErrorCode.ProtocolError, 1002)
    })

    it('ends the session on DATA before the stream was accepted', async () => {
      const [agent, raw] = agentFacingRawProxy(() => undefined)
      const closed = whenClosed(agent)
      raw.send(syn(1))
      raw.send(data(1, Buffer.from('too early')))
      await assertFailed(closed, raw, StreamStateError, WireErrorCode.ProtocolError, 1002)
    })

    it('refuses a SYN that arrives after its own GO_AWAY with REFUSED_STREAM', async () => {
      const [agent, raw] = agentFacingRawProxy()
      raw.send(syn(1))
      await raw.frame(isAck(1))
      const goingAway = agent.goAway()
      assert.equal((await raw.frame(isGoAway)).errorCode, WireErrorCode.NoError)
      raw.send(syn(3))
      assert.equal((await raw.frame(isReset(3))).errorCode, WireErrorCode.RefusedStream)
      raw.send({type: FrameType.Data, flags: Flag.FIN, streamId: 1, payload: Buffer.alloc(0)})
      accepted[0]!.resume()
      accepted[0]!.end()
      await goingAway
      assert.equal((await raw.closed()).code, 1000)
    })

    // Only a WebSocket can carry text; the memory transport has no such thing.
    if (kind === webSocketLink) {
      it('ends the session on a text message', async () => {
        const socket = link.agentSocket!
        session = new TunnelSession(link.proxy, {role: 'proxy', ...fastTimers})
        const closed = whenClosed(session)
        const closeCode = new Promise<number>((resolve) => socket.once('close', resolve))
        socket.send('hello')
        assert.ok((await closed) instanceof TextMessageError)
        assert.equal(await closeCode, 1002)
      })
    }

    it('answers only a bounded number of pings at once', async () => {
      const [, raw] = agentFacingRawProxy()
      for (let count = 0; count < 50; count++) raw.send(ping)
      await waitFor(() => raw.frames.some(isPong))
      await delay(30)
      const pongs = raw.frames.filter(isPong).length
      assert.ok(pongs < 50, `${pongs} pongs for 50 pings`)
    })
  })
}
