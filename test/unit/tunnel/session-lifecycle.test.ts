import assert from 'node:assert/strict'
import {once} from 'node:events'
import {performance} from 'node:perf_hooks'
import {setTimeout as delay} from 'node:timers/promises'

import {
  KeepaliveTimeoutError,
  OpenRefusedError,
  SessionClosedError,
  StreamResetError,
  TransportClosedError,
  TunnelError,
  type TunnelSessionError,
} from '../../../src/tunnel/errors.js'
import {WireErrorCode} from '../../../src/tunnel/frame.js'
import {MemoryTransport} from '../../../src/tunnel/memory-transport.js'
import {TunnelSession} from '../../../src/tunnel/session.js'
import type {TunnelStream} from '../../../src/tunnel/stream.js'
import {
  closeAll,
  connect,
  linkKinds,
  openPair,
  readAll,
  SeveredTransport,
  streamError,
  waitFor,
  whenClosed,
  type Link,
  type SessionPair,
} from './helpers.js'

// Real timers over real links: the deadlines to the millisecond are keepalive.test.ts's, on a fake clock. Here
// only that they hold end to end, with intervals long enough that a loaded machine's late timers do not matter.
const intervalMs = 200

async function closedAfter(
  session: TunnelSession,
  since: number,
): Promise<[TunnelSessionError | undefined, number]> {
  const reason = await whenClosed(session)
  return [reason, performance.now() - since]
}

for (const kind of linkKinds) {
  describe(`tunnel session lifecycle over ${kind.name}`, () => {
    let link: Link
    let pair: SessionPair | undefined

    beforeEach(async () => {
      link = await kind.create()
    })

    afterEach(async () => {
      closeAll(pair)
      pair = undefined
      await link.dispose()
    })

    describe('keepalive', () => {
      const keepalive = {proxy: {pingIntervalMs: intervalMs}, agent: {pingIntervalMs: intervalMs}}

      it('keeps an idle link up and measures its round-trip time', async () => {
        pair = connect(link, keepalive)
        await delay(intervalMs * 6)
        assert.deepEqual([pair.proxy.closed, pair.agent.closed], [false, false])
        assert.ok((pair.proxy.stats.rttMs ?? -1) >= 0 && (pair.agent.stats.rttMs ?? -1) >= 0)
      })

      it('detects a link that silently drops everything, on both sides, within three intervals', async () => {
        let proxyLink: SeveredTransport | undefined
        let agentLink: SeveredTransport | undefined
        pair = connect(link, {
          ...keepalive,
          wrapProxy: (transport) => (proxyLink = new SeveredTransport(transport)),
          wrapAgent: (transport) => (agentLink = new SeveredTransport(transport)),
        })
        await delay(intervalMs * 2)
        const severedAt = performance.now()
        proxyLink?.sever()
        agentLink?.sever()
        const outcomes = await Promise.all([
          closedAfter(pair.proxy, severedAt),
          closedAfter(pair.agent, severedAt),
        ])
        for (const [reason, elapsedMs] of outcomes) {
          assert.ok(reason instanceof KeepaliveTimeoutError, String(reason))
          assert.equal(reason.closeCode, 1011)
          // The last frame arrived at most one interval before the cut; the deadline is three intervals after it.
          assert.ok(elapsedMs >= 2 * intervalMs - 10, `detected after ${elapsedMs} ms: too early`)
          assert.ok(reason.silentMs >= 3 * intervalMs, `declared dead after ${reason.silentMs} ms of silence`)
        }
      })

      it('detects a peer that stops answering; that peer then sees the link closed with 1011', async () => {
        let agentLink: SeveredTransport | undefined
        pair = connect(link, {
          ...keepalive,
          wrapAgent: (transport) => (agentLink = new SeveredTransport(transport)),
        })
        await delay(intervalMs)
        const silencedAt = performance.now()
        agentLink!.dropOutgoing = true
        const [[proxyReason, elapsedMs], [agentReason]] = await Promise.all([
          closedAfter(pair.proxy, silencedAt),
          closedAfter(pair.agent, silencedAt),
        ])
        assert.ok(proxyReason instanceof KeepaliveTimeoutError, String(proxyReason))
        assert.ok(elapsedMs >= 2 * intervalMs - 10, `detected after ${elapsedMs} ms: too early`)
        assert.ok(agentReason instanceof TransportClosedError, String(agentReason))
        assert.equal(agentReason.closeCode, 1011)
      })
    })

    describe('responsiveness', () => {
      it('an open on a quiet link sends a PING along: a peer that answers nothing is unresponsive at the answer deadline, the open is given up, then responsive when heard from', async () => {
        let agentLink: SeveredTransport | undefined
        let agentEndReset: Promise<unknown> | undefined
        // The proxy's own PINGs are far apart: only the open's PING can show the silence in time.
        pair = connect(link, {
          proxy: {pingIntervalMs: 60_000, answerDeadlineMs: 100},
          agent: {pingIntervalMs: 400},
          wrapAgent: (transport) => (agentLink = new SeveredTransport(transport)),
          // The agent accepts, but its ACK is lost with everything else it sends.
          onOpen: (request) => {
            agentEndReset = once(request.accept(), 'error')
          },
        })
        // Quiet for longer than half the answer deadline: the open sends its PING at once.
        await delay(100)
        agentLink!.dropOutgoing = true
        const silencedAt = performance.now()
        const unresponsive = new Promise<void>((resolve) => pair!.proxy.once('unresponsive', resolve))
        const opening = pair.proxy.openStream('kubernetes')
        opening.catch(() => undefined)
        await unresponsive
        const elapsedMs = performance.now() - silencedAt
        assert.ok(elapsedMs < 1000, `unresponsive after ${Math.round(elapsedMs)} ms; the deadline is 100 ms`)
        await assert.rejects(opening, {code: 'TUNNEL_ERR_UNRESPONSIVE'})
        const [reset] = (await agentEndReset) as [StreamResetError]
        assert.equal(reset.wireCode, WireErrorCode.Cancel)
        assert.equal(pair.proxy.responsive, false)
        assert.equal(pair.proxy.closed, false, 'unresponsive is not dead')
        const responsive = new Promise<void>((resolve) => pair!.proxy.once('responsive', resolve))
        agentLink!.dropOutgoing = false
        // The agent's next PING is the first frame the proxy hears again.
        await responsive
        assert.equal(pair.proxy.responsive, true)
      })

      it('stays responsive while the peer answers', async () => {
        pair = connect(link, {proxy: {pingIntervalMs: intervalMs, answerDeadlineMs: intervalMs}})
        let unresponsive = 0
        pair.proxy.on('unresponsive', () => unresponsive++)
        for (let i = 0; i < 5; i++) await openPair(pair)
        await delay(intervalMs * 6)
        assert.equal(unresponsive, 0)
        assert.equal(pair.proxy.responsive, true)
      })
    })

    describe('shutdown', () => {
      it('GO_AWAY refuses new streams, lets open ones finish, then closes cleanly', async () => {
        pair = connect(link)
        const proxyClosed = whenClosed(pair.proxy)
        const agentClosed = whenClosed(pair.agent)
        const [proxyEnd, agentEnd] = await openPair(pair)
        const goingAway = pair.proxy.goAway()
        await assert.rejects(pair.proxy.openStream('kubernetes'), {code: 'TUNNEL_ERR_GOING_AWAY'})
        const answer = readAll(proxyEnd)
        agentEnd.end('still flowing')
        proxyEnd.end('after go away')
        assert.equal((await readAll(agentEnd)).toString(), 'after go away')
        assert.equal((await answer).toString(), 'still flowing')
        await goingAway
        assert.deepEqual([await proxyClosed, await agentClosed], [undefined, undefined])
      })

      it('stops opening streams once the agent sent GO_AWAY', async () => {
        const received: string[] = []
        pair = connect(link, {proxy: {trace: (line) => received.push(line)}})
        const [proxyEnd] = await openPair(pair)
        void pair.agent.goAway()
        await waitFor(() => received.includes('recv GO_AWAY stream=0 code=NO_ERROR'))
        await assert.rejects(pair.proxy.openStream('kubernetes'), {code: 'TUNNEL_ERR_GOING_AWAY'})
        assert.equal(proxyEnd.state, 'Established')
      })

      it('resets what is left when the grace period ends, and closes with 1001', async () => {
        pair = connect(link, {proxy: {goAwayGraceMs: 50}})
        const agentClosed = whenClosed(pair.agent)
        const [proxyEnd, agentEnd] = await openPair(pair)
        const proxyFailed = streamError(proxyEnd)
        const agentFailed = streamError(agentEnd)
        await pair.proxy.goAway()
        assert.ok(hasWireCode(await agentFailed, WireErrorCode.Shutdown))
        assert.ok(hasWireCode(await proxyFailed, WireErrorCode.Shutdown))
        const agentReason = await agentClosed
        assert.ok(
          agentReason instanceof TransportClosedError && agentReason.closeCode === 1001,
          String(agentReason),
        )
      })

      it('GO_AWAY takes a grace of the caller: a long one lets a stream run past the default', async () => {
        pair = connect(link, {agent: {goAwayGraceMs: 50}})
        const [proxyEnd, agentEnd] = await openPair(pair)
        let ended = false
        const goingAway = pair.agent.goAway({graceMs: 60_000}).then(() => (ended = true))
        // Many times the default grace later, the stream still carries data both ways.
        await delay(500)
        assert.equal(ended, false)
        const answer = readAll(proxyEnd)
        agentEnd.end('still flowing')
        proxyEnd.end('after the default grace')
        assert.equal((await readAll(agentEnd)).toString(), 'after the default grace')
        assert.equal((await answer).toString(), 'still flowing')
        // Its last stream over, the session closes cleanly at once, not at the end of its grace.
        await goingAway
        assert.equal(await whenClosed(pair.proxy), undefined)
      })

      it('a second GO_AWAY brings the end of the grace closer, without a second frame', async () => {
        const received: string[] = []
        pair = connect(link, {proxy: {trace: (line) => received.push(line)}, agent: {goAwayGraceMs: 50}})
        const [proxyEnd, agentEnd] = await openPair(pair)
        const proxyFailed = streamError(proxyEnd)
        const agentFailed = streamError(agentEnd)
        const agentClosed = whenClosed(pair.agent)
        void pair.agent.goAway({graceMs: 60_000})
        await waitFor(() => received.includes('recv GO_AWAY stream=0 code=NO_ERROR'))
        // The default (50 ms) is sooner than what is left of the minute: the stream is reset now.
        await pair.agent.goAway()
        assert.ok(hasWireCode(await proxyFailed, WireErrorCode.Shutdown))
        assert.ok(hasWireCode(await agentFailed, WireErrorCode.Shutdown))
        const reason = await agentClosed
        assert.equal(reason, undefined, 'the sender ends its own session without an error')
        assert.equal(received.filter((line) => line.startsWith('recv GO_AWAY')).length, 1)
      })

      it('a second GO_AWAY never puts the end off', async () => {
        pair = connect(link)
        const [proxyEnd, agentEnd] = await openPair(pair)
        const proxyFailed = streamError(proxyEnd)
        const agentFailed = streamError(agentEnd)
        void pair.agent.goAway({graceMs: 50})
        // Were the minute taken, the stream would outlive the test's timeout.
        void pair.agent.goAway({graceMs: 60_000})
        assert.ok(hasWireCode(await proxyFailed, WireErrorCode.Shutdown))
        assert.ok(hasWireCode(await agentFailed, WireErrorCode.Shutdown))
      })

      it('refuses a grace setTimeout cannot keep', async () => {
        pair = connect(link)
        await assert.rejects(pair.agent.goAway({graceMs: 0}), RangeError)
        await assert.rejects(pair.agent.goAway({graceMs: 2 ** 31}), RangeError)
        assert.equal(pair.agent.closed, false, 'a refused call sends nothing')
      })

      it('close() ends open streams on both sides and the peer sees a clean close', async () => {
        pair = connect(link)
        const agentClosed = whenClosed(pair.agent)
        const [proxyEnd, agentEnd] = await openPair(pair)
        const proxyFailed = streamError(proxyEnd)
        const agentFailed = streamError(agentEnd)
        pair.proxy.close()
        assert.ok((await proxyFailed) instanceof SessionClosedError)
        assert.ok((await agentFailed) instanceof SessionClosedError)
        assert.equal(await agentClosed, undefined)
        await assert.rejects(pair.proxy.openStream('kubernetes'), SessionClosedError)
      })

      it('ends the session when the transport fails, with the close code', async () => {
        pair = connect(link)
        const proxyClosed = whenClosed(pair.proxy)
        link.agent.close(1011, 'agent crashed')
        const reason = await proxyClosed
        assert.ok(reason instanceof TransportClosedError && reason.closeCode === 1011, String(reason))
        assert.equal(reason.message, 'transport closed (1011 agent crashed)')
      })
    })

    describe('limits', () => {
      it('refuses locally to open beyond its own stream limit, and recovers when one ends', async () => {
        pair = connect(link, {proxy: {maxConcurrentStreams: 2}})
        const [first] = await openPair(pair)
        await openPair(pair)
        await assert.rejects(pair.proxy.openStream('kubernetes'), {code: 'TUNNEL_ERR_STREAM_LIMIT'})
        pair.agentStreams[0]!.on('error', () => undefined)
        first.destroy()
        await waitFor(() => pair?.proxy.stats.streamsActive === 1)
        await openPair(pair)
        assert.equal(pair.requests.length, 3, 'the refused open never reached the agent')
      })

      it('fails an open beyond the agent’s limit with STREAM_LIMIT, and the session carries on', async () => {
        pair = connect(link, {agent: {maxConcurrentStreams: 1}})
        await openPair(pair)
        await assert.rejects(
          pair.proxy.openStream('kubernetes'),
          (error) => error instanceof OpenRefusedError && hasWireCode(error, WireErrorCode.StreamLimit),
        )
        assert.deepEqual([pair.proxy.closed, pair.agent.closed], [false, false])
        assert.equal(pair.agent.stats.streamsRefused, 1)
        assert.equal(pair.proxy.stats.streamsActive, 1)
      })

      it('holds no more unread data than its budget: the streams holding the most are reset (BUFFER_LIMIT), the others go on', async () => {
        const windowBytes = 256 * 1024
        const budgetBytes = 4 * windowBytes
        pair = connect(link, {proxy: {bufferBudgetBytes: budgetBytes}})
        const ends: [TunnelStream, TunnelStream][] = []
        for (let index = 0; index < 6; index++) ends.push(await openPair(pair))
        const outcomes = ends.map(([proxyEnd, agentEnd]) => {
          agentEnd.on('error', () => undefined)
          proxyEnd.on('error', () => undefined)
          // Nobody reads the proxy's end: six stalled readers, each sent a full window.
          agentEnd.write(Buffer.alloc(windowBytes, 7))
          return streamError(proxyEnd).then((error) => error)
        })
        await waitFor(() => (pair?.proxy.stats.streamsResetForBuffer ?? 0) >= 2)
        await waitFor(() => pair?.agentStreams.filter((stream) => stream.destroyed).length === 2)
        assert.equal(pair.proxy.stats.streamsResetForBuffer, 2)
        assert.ok(pair.proxy.stats.bytesHeld <= budgetBytes, `${pair.proxy.stats.bytesHeld} bytes held`)
        const reset = ends.filter(([proxyEnd]) => proxyEnd.destroyed)
        assert.equal(reset.length, 2)
        for (const [, agentEnd] of reset) {
          assert.equal(
            agentEnd.errored instanceof StreamResetError && agentEnd.errored.wireCode,
            WireErrorCode.BufferLimit,
          )
        }
        const errors = await Promise.all(outcomes.filter((_, index) => ends[index]![0].destroyed))
        assert.ok(errors.every((error) => (error as TunnelError).code === 'TUNNEL_ERR_BUFFER_LIMIT'))
        for (const [proxyEnd, agentEnd] of ends.filter(([proxyEnd]) => !proxyEnd.destroyed)) {
          agentEnd.end()
          assert.equal((await readAll(proxyEnd)).length, windowBytes)
        }
        assert.deepEqual([pair.proxy.closed, pair.agent.closed], [false, false])
        await waitFor(() => pair?.proxy.stats.bytesHeld === 0)
      })
    })
  })
}

function hasWireCode(error: Error, wireCode: number): boolean {
  return error instanceof TunnelError && error.wireCode === wireCode
}

describe('tunnel session', () => {
  it('traces frames without their payload', async () => {
    const lines: string[] = []
    const [proxyLink, agentLink] = MemoryTransport.pair()
    const proxy = new TunnelSession(proxyLink, {role: 'proxy', trace: (line) => lines.push(line)})
    const agent = new TunnelSession(agentLink, {
      role: 'agent',
      onOpen: (request) =>
        request
          .accept()
          .on('error', () => undefined)
          .resume(),
    })
    const stream = await proxy.openStream('kubernetes')
    stream.write('Authorization: Bearer planted-secret')
    await waitFor(() => lines.some((line) => line.startsWith('send DATA')))
    proxy.close()
    agent.close()
    stream.on('error', () => undefined)
    assert.ok(!lines.join('\n').includes('planted-secret'))
    assert.deepEqual(lines.slice(0, 3), [
      'send WINDOW_UPDATE stream=1 flags=SYN delta=0 destination=kubernetes',
      'recv WINDOW_UPDATE stream=1 flags=ACK delta=0',
      'send DATA stream=1 bytes=36',
    ])
  })

  it('rejects options outside their range', () => {
    const [transport] = MemoryTransport.pair()
    assert.throws(() => new TunnelSession(transport, {role: 'proxy', receiveWindowBytes: 1000}), RangeError)
    assert.throws(() => new TunnelSession(transport, {role: 'proxy', dataFrameBytes: 300 * 1024}), RangeError)
    assert.throws(() => new TunnelSession(transport, {role: 'proxy', pingIntervalMs: 0}), RangeError)
  })
})
