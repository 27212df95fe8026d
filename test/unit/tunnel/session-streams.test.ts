import assert from 'node:assert/strict'
import {Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {setTimeout as delay} from 'node:timers/promises'

import {INITIAL_WINDOW_BYTES} from '../../../src/tunnel/constants.js'
import {OpenRefusedError, StreamResetError, TunnelError} from '../../../src/tunnel/errors.js'
import {WireErrorCode} from '../../../src/tunnel/frame.js'
import type {OpenRequest} from '../../../src/tunnel/session.js'
import {StreamState} from '../../../src/tunnel/state.js'
import type {TunnelStream} from '../../../src/tunnel/stream.js'
import {
  closeAll,
  connect,
  linkKinds,
  openPair,
  randomBytes,
  readAll,
  seededRandom,
  streamError,
  waitFor,
  type Link,
  type SessionPair,
} from './helpers.js'

const random = seededRandom(0x7e57)

function hasCode(code: string, wireCode?: number): (error: unknown) => boolean {
  return (error) =>
    error instanceof TunnelError &&
    error.code === code &&
    (wireCode === undefined || error.wireCode === wireCode)
}

for (const kind of linkKinds) {
  describe(`tunnel streams over ${kind.name}`, () => {
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

    describe('open', () => {
      it('opens streams to named destinations on odd ids, and the agent sees the name', async () => {
        pair = connect(link)
        const [first, firstAgent] = await openPair(pair, 'kubesphere')
        const [second] = await openPair(pair, 'kubernetes')
        assert.deepEqual(
          pair.requests.map((request) => [request.streamId, request.destination]),
          [
            [1, 'kubesphere'],
            [3, 'kubernetes'],
          ],
        )
        assert.deepEqual([first.id, second.id, firstAgent.id], [1, 3, 1])
        assert.deepEqual([first.state, firstAgent.state], [StreamState.Established, StreamState.Established])
        assert.deepEqual([pair.proxy.stats.streamsActive, pair.agent.stats.streamsActive], [2, 2])
      })

      it('fails an open the agent rejects with its reason, and stays usable', async () => {
        const accepted: TunnelStream[] = []
        pair = connect(link, {
          onOpen: (request) => {
            if (request.destination === 'kubernetes') accepted.push(request.accept())
            else request.reject(WireErrorCode.DestinationNotAllowed)
          },
        })
        await assert.rejects(
          pair.proxy.openStream('metrics'),
          (error) => error instanceof OpenRefusedError && hasCode('TUNNEL_ERR_OPEN_REFUSED', 6)(error),
        )
        const stream = await pair.proxy.openStream('kubernetes')
        pair.proxyStreams.push(stream, ...accepted)
        assert.equal(stream.state, StreamState.Established)
        assert.deepEqual([pair.proxy.stats.streamsActive, pair.agent.stats.streamsActive], [1, 1])
        assert.equal(pair.agent.stats.streamsRefused, 1)
      })

      it('accepts once the agent has dialled, asynchronously', async () => {
        pair = connect(link, {
          onOpen: (request) => setTimeout(() => pair?.agentStreams.push(request.accept()), 20),
        })
        const started = Date.now()
        const stream = await pair.proxy.openStream('kubernetes')
        pair.proxyStreams.push(stream)
        assert.ok(Date.now() - started >= 15)
      })

      it('gives up after the open timeout, and the agent sees the cancel', async () => {
        pair = connect(link, {proxy: {streamOpenTimeoutMs: 50}, onOpen: () => undefined})
        await assert.rejects(pair.proxy.openStream('kubernetes'), hasCode('TUNNEL_ERR_OPEN_TIMEOUT'))
        const request = pair.requests[0]!
        await waitFor(() => request.signal.aborted)
        assert.ok(hasCode('TUNNEL_ERR_STREAM_RESET', WireErrorCode.Cancel)(request.signal.reason))
        assert.throws(() => request.accept(), StreamResetError)
        await waitFor(() => pair?.agent.stats.streamsActive === 0)
        assert.equal(pair.proxy.stats.streamsActive, 0)
      })

      it('cancels an open when its signal aborts', async () => {
        const requests: OpenRequest[] = []
        pair = connect(link, {onOpen: (request) => requests.push(request)})
        const controller = new AbortController()
        const opening = pair.proxy.openStream('kubernetes', {signal: controller.signal})
        await waitFor(() => requests.length === 1)
        controller.abort()
        await assert.rejects(opening, {name: 'AbortError'})
        await waitFor(() => requests[0]!.signal.aborted)
        assert.equal(pair.proxy.stats.streamsActive, 0)
      })

      it('refuses locally to open a malformed destination, or to open from the agent', async () => {
        pair = connect(link)
        await assert.rejects(
          pair.proxy.openStream('10.0.0.1:6443'),
          hasCode('TUNNEL_ERR_INVALID_DESTINATION'),
        )
        await assert.rejects(pair.agent.openStream('kubernetes'), hasCode('TUNNEL_ERR_ROLE'))
        await delay(10)
        assert.equal(pair.requests.length, 0)
      })
    })

    describe('data', () => {
      it('echoes 1 MiB through the agent and back, across many window updates', async () => {
        pair = connect(link, {
          onOpen: (request) => {
            const stream = request.accept()
            void pipeline(stream, stream)
          },
        })
        const stream = await pair.proxy.openStream('kubernetes')
        const payload = randomBytes(random, 1024 * 1024 + 17)
        const echoed = readAll(stream)
        for (let offset = 0; offset < payload.length;) {
          const size = 1 + Math.floor(random() * 100_000)
          if (!stream.write(payload.subarray(offset, offset + size))) {
            await new Promise((resolve) => stream.once('drain', resolve))
          }
          offset += size
        }
        stream.end()
        assert.ok((await echoed).equals(payload))
        await waitFor(() => pair?.agent.stats.streamsActive === 0 && pair.proxy.stats.streamsActive === 0)
      })

      it('keeps 64 concurrent streams apart', async () => {
        pair = connect(link, {
          onOpen: (request) => {
            const stream = request.accept()
            void pipeline(stream, stream)
          },
        })
        const session = pair.proxy
        const results = await Promise.all(
          Array.from({length: 64}, async (_, index) => {
            const stream = await session.openStream('kubernetes')
            const payload = randomBytes(random, 1000 + index * 5000)
            const echoed = readAll(stream)
            stream.end(payload)
            return (await echoed).equals(payload)
          }),
        )
        assert.deepEqual(new Set(results), new Set([true]))
      })

      it('half-closes from the proxy: the agent reads to the end and can still answer', async () => {
        pair = connect(link)
        const [proxyEnd, agentEnd] = await openPair(pair)
        proxyEnd.end('request')
        assert.equal((await readAll(agentEnd)).toString(), 'request')
        assert.equal(agentEnd.state, StreamState.RemoteClosed)
        assert.equal(proxyEnd.state, StreamState.LocalClosed)
        agentEnd.end('late answer')
        assert.equal((await readAll(proxyEnd)).toString(), 'late answer')
        assert.deepEqual([proxyEnd.state, agentEnd.state], [StreamState.Closed, StreamState.Closed])
        await waitFor(() => pair?.agent.stats.streamsActive === 0 && pair.proxy.stats.streamsActive === 0)
      })

      it('half-closes from the agent: the proxy reads to the end and can still send', async () => {
        pair = connect(link)
        const [proxyEnd, agentEnd] = await openPair(pair)
        agentEnd.end('greeting')
        assert.equal((await readAll(proxyEnd)).toString(), 'greeting')
        assert.equal(proxyEnd.state, StreamState.RemoteClosed)
        proxyEnd.end('reply')
        assert.equal((await readAll(agentEnd)).toString(), 'reply')
        assert.deepEqual([proxyEnd.state, agentEnd.state], [StreamState.Closed, StreamState.Closed])
      })
    })

    describe('reset', () => {
      it('survives a reader that destroys the stream from inside a data handler', async () => {
        pair = connect(link)
        const [proxyEnd, agentEnd] = await openPair(pair)
        const failed = streamError(proxyEnd)
        agentEnd.once('data', () => agentEnd.destroy())
        proxyEnd.end('one frame, then FIN')
        assert.ok(hasCode('TUNNEL_ERR_STREAM_RESET', WireErrorCode.Cancel)(await failed))
        assert.deepEqual([pair.proxy.closed, pair.agent.closed], [false, false])
      })

      it('a proxy destroy() resets the agent end with CANCEL', async () => {
        pair = connect(link)
        const [proxyEnd, agentEnd] = await openPair(pair)
        const failed = streamError(agentEnd)
        proxyEnd.destroy()
        assert.ok(hasCode('TUNNEL_ERR_STREAM_RESET', WireErrorCode.Cancel)(await failed))
        assert.deepEqual([proxyEnd.state, agentEnd.state], [StreamState.Reset, StreamState.Reset])
        await waitFor(() => pair?.agent.stats.streamsActive === 0)
        assert.equal(pair.proxy.stats.streamsActive, 0)
        await openPair(pair)
      })

      it('a proxy destroy(error) resets the agent end with ABORTED', async () => {
        pair = connect(link)
        const [proxyEnd, agentEnd] = await openPair(pair)
        const failed = streamError(agentEnd)
        proxyEnd.on('error', () => undefined)
        proxyEnd.destroy(new Error('client went away'))
        assert.ok(hasCode('TUNNEL_ERR_STREAM_RESET', WireErrorCode.Aborted)(await failed))
      })

      it('an agent destroy(error) resets the proxy end with the error’s wire code', async () => {
        pair = connect(link)
        const [proxyEnd, agentEnd] = await openPair(pair)
        const failed = streamError(proxyEnd)
        agentEnd.on('error', () => undefined)
        agentEnd.destroy(
          new TunnelError('TUNNEL_ERR_INTERNAL', 'upstream failed', {wireCode: WireErrorCode.DialFailed}),
        )
        assert.ok(hasCode('TUNNEL_ERR_STREAM_RESET', WireErrorCode.DialFailed)(await failed))
        assert.equal(proxyEnd.state, StreamState.Reset)
        await waitFor(() => pair?.proxy.stats.streamsActive === 0)
      })
    })

    describe('flow control', () => {
      it('stops the sender at the window while the reader is paused, and resumes when it reads', async () => {
        pair = connect(link)
        const [proxyEnd, agentEnd] = await openPair(pair)
        const payload = randomBytes(random, 4 * INITIAL_WINDOW_BYTES + 5)
        let finished = false
        proxyEnd.end(payload, () => (finished = true))
        await waitFor(() => agentEnd.readableLength === INITIAL_WINDOW_BYTES)
        await delay(50)
        assert.equal(agentEnd.readableLength, INITIAL_WINDOW_BYTES, 'nothing beyond the window arrives')
        assert.deepEqual(proxyEnd.stats.sendCredit, 0)
        assert.equal(proxyEnd.stats.bytesSent, INITIAL_WINDOW_BYTES)
        assert.equal(agentEnd.stats.receiveCredit, 0)
        assert.equal(finished, false)
        assert.ok((await readAll(agentEnd)).equals(payload))
        await waitFor(() => finished)
      })

      it('lets a fast reader finish while a slow reader on the same session is blocked', async () => {
        pair = connect(link)
        const [slowProxy, slowAgent] = await openPair(pair)
        const [fastProxy, fastAgent] = await openPair(pair)
        const payload = randomBytes(random, 2 * 1024 * 1024)
        let slowFinished = false
        slowAgent.end(payload, () => (slowFinished = true))
        fastAgent.end(payload)
        assert.ok((await readAll(fastProxy)).equals(payload))
        assert.equal(slowFinished, false)
        assert.equal(slowAgent.stats.sendCredit, 0)
        assert.equal(slowProxy.readableLength, INITIAL_WINDOW_BYTES)
        assert.ok((await readAll(slowProxy)).equals(payload))
        await waitFor(() => slowFinished)
      })

      const consumers: [string, (stream: TunnelStream) => Promise<Buffer>][] = [
        ['data events', readAll],
        [
          'pipe() into a slow writable',
          async (stream) => {
            const chunks: Buffer[] = []
            const slow = new Writable({
              highWaterMark: 16 * 1024,
              write: (chunk: Buffer, _encoding, callback) => {
                chunks.push(chunk)
                setTimeout(callback, 1)
              },
            })
            await pipeline(stream, slow)
            return Buffer.concat(chunks)
          },
        ],
        [
          'read() on readable',
          (stream) =>
            new Promise((resolve) => {
              const chunks: Buffer[] = []
              stream.on('readable', () => {
                for (let chunk: unknown; (chunk = stream.read(7000)) !== null;) chunks.push(chunk as Buffer)
              })
              stream.once('end', () => resolve(Buffer.concat(chunks)))
            }),
        ],
        [
          'an async iterator',
          async (stream) => {
            const chunks: Buffer[] = []
            for await (const chunk of stream.iterator({destroyOnReturn: false})) chunks.push(chunk as Buffer)
            return Buffer.concat(chunks)
          },
        ],
      ]
      for (const [mode, consume] of consumers) {
        it(`returns credit to a reader using ${mode}, never buffering past the window`, async () => {
          pair = connect(link)
          const [proxyEnd, agentEnd] = await openPair(pair)
          const payload = randomBytes(random, 2 * 1024 * 1024 + 3)
          let largestBuffer = 0
          const sampler = setInterval(
            () => (largestBuffer = Math.max(largestBuffer, proxyEnd.readableLength)),
            1,
          )
          agentEnd.end(payload)
          const received = await consume(proxyEnd)
          clearInterval(sampler)
          assert.ok(received.equals(payload))
          assert.ok(largestBuffer <= INITIAL_WINDOW_BYTES, `buffered ${largestBuffer} bytes`)
        })
      }

      it('returns all credit to a reader that mixes read(n), read(), data events and pauses (seeded)', async () => {
        for (let seed = 1; seed <= 12; seed++) {
          const mixed = seededRandom(seed)
          const [proxyEnd, agentEnd] = await openPair((pair ??= connect(link)))
          const payload = randomBytes(mixed, 1 + Math.floor(mixed() * 2_000_000))
          agentEnd.end(payload)
          const chunks: Buffer[] = []
          const take = (chunk: unknown): void => {
            if (chunk !== null) chunks.push(chunk as Buffer)
          }
          while (!proxyEnd.readableEnded) {
            assert.ok(
              proxyEnd.readableLength <= INITIAL_WINDOW_BYTES,
              `seed ${seed}: buffered past the window`,
            )
            const step = Math.floor(mixed() * 4)
            if (step === 0) take(proxyEnd.read(1 + Math.floor(mixed() * 200_000)))
            else if (step === 1) take(proxyEnd.read())
            else if (step === 2) {
              proxyEnd.on('data', take)
              await delay(Math.floor(mixed() * 3))
              proxyEnd.off('data', take)
              proxyEnd.pause()
            } else await delay(1)
            await new Promise((resolve) => setImmediate(resolve))
          }
          assert.ok(Buffer.concat(chunks).equals(payload), `seed ${seed}`)
        }
      })

      it('advertises a larger receive window with SYN and ACK', async () => {
        pair = connect(link, {
          proxy: {receiveWindowBytes: 1024 * 1024},
          agent: {receiveWindowBytes: 512 * 1024},
        })
        const [proxyEnd, agentEnd] = await openPair(pair)
        assert.deepEqual([agentEnd.stats.sendCredit, proxyEnd.stats.sendCredit], [1024 * 1024, 512 * 1024])
        agentEnd.write(randomBytes(random, 2 * 1024 * 1024))
        await waitFor(() => proxyEnd.readableLength === 1024 * 1024)
        await delay(30)
        assert.equal(proxyEnd.readableLength, 1024 * 1024)
      })
    })

    describe('close timeout', () => {
      it('resets a stream whose peer never answers FIN', async () => {
        pair = connect(link, {proxy: {streamCloseTimeoutMs: 60}})
        const [proxyEnd, agentEnd] = await openPair(pair)
        const proxyFailed = streamError(proxyEnd)
        const agentFailed = streamError(agentEnd)
        proxyEnd.end()
        agentEnd.resume()
        assert.ok(hasCode('TUNNEL_ERR_CLOSE_TIMEOUT', WireErrorCode.CloseTimeout)(await proxyFailed))
        assert.ok(hasCode('TUNNEL_ERR_STREAM_RESET', WireErrorCode.CloseTimeout)(await agentFailed))
      })

      it('keeps a half-closed stream alive while the peer is still sending', async () => {
        // The peer sends for twice the close timeout, a message every third of it: the stream outlives the
        // timeout only if each message pushes it back. Wide margins: a loaded machine fires timers late.
        const closeTimeoutMs = 300
        pair = connect(link, {proxy: {streamCloseTimeoutMs: closeTimeoutMs}})
        const [proxyEnd, agentEnd] = await openPair(pair)
        proxyEnd.end()
        const received = readAll(proxyEnd)
        for (let tick = 0; tick < 6; tick++) {
          agentEnd.write(`tick ${tick};`)
          await delay(closeTimeoutMs / 3)
        }
        agentEnd.end()
        assert.equal((await received).toString(), 'tick 0;tick 1;tick 2;tick 3;tick 4;tick 5;')
        assert.equal(proxyEnd.state, StreamState.Closed)
      })
    })
  })
}
