// PROTOCOL.md §7's clock, on a fake one: the deadlines are asserted to the millisecond here, so that the session
// tests over real links need only say that they happen (a loaded machine fires real timers late).
import assert from 'node:assert/strict'

import {install, type Clock} from '@sinonjs/fake-timers'

import {Keepalive} from '../../../src/tunnel/keepalive.js'

interface Recorded {
  pings: Buffer[]
  dead: number[]
  unresponsive: number
  responsive: number
}

const intervalMs = 1000
const timeoutMs = 3 * intervalMs
const answerDeadlineMs = 400

describe('keepalive (PROTOCOL.md §7) on a fake clock', () => {
  let clock: Clock
  let keepalive: Keepalive
  let recorded: Recorded

  beforeEach(() => {
    clock = install({
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'performance'],
    })
    recorded = {pings: [], dead: [], unresponsive: 0, responsive: 0}
    keepalive = new Keepalive(
      {intervalMs, timeoutMs, answerDeadlineMs},
      {
        sendPing: (opaque) => recorded.pings.push(Buffer.from(opaque)),
        dead: (silentMs) => recorded.dead.push(silentMs),
        unresponsive: () => recorded.unresponsive++,
        responsive: () => recorded.responsive++,
      },
    )
    keepalive.start()
  })

  afterEach(() => {
    keepalive.stop()
    clock.uninstall()
  })

  it('pings once an interval', () => {
    clock.tick(intervalMs - 1)
    assert.equal(recorded.pings.length, 0)
    clock.tick(1)
    assert.equal(recorded.pings.length, 1)
    keepalive.received()
    clock.tick(intervalMs)
    assert.equal(recorded.pings.length, 2)
    assert.notDeepEqual(recorded.pings[0], recorded.pings[1], 'each PING carries its own payload')
  })

  it('declares the link dead after exactly the timeout of silence, counted from the last frame received', () => {
    clock.tick(intervalMs * 2)
    keepalive.received()
    clock.tick(timeoutMs - 1)
    assert.deepEqual(recorded.dead, [])
    clock.tick(1)
    assert.deepEqual(recorded.dead, [timeoutMs])
  })

  it('is unresponsive once a PING went unanswered for the answer deadline, and responsive at the next frame', () => {
    clock.tick(intervalMs + answerDeadlineMs - 1)
    assert.equal(recorded.unresponsive, 0)
    assert.equal(keepalive.responsive, true)
    clock.tick(1)
    assert.equal(recorded.unresponsive, 1)
    assert.equal(keepalive.responsive, false)
    keepalive.received()
    assert.equal(recorded.responsive, 1)
    assert.equal(keepalive.responsive, true)
  })

  it('stays responsive while every PING is answered within the deadline', () => {
    clock.tick(intervalMs)
    for (let round = 0; round < 10; round++) {
      clock.tick(answerDeadlineMs - 1)
      keepalive.received()
      keepalive.answered(recorded.pings.at(-1)!)
      clock.tick(intervalMs - (answerDeadlineMs - 1))
    }
    assert.equal(recorded.pings.length, 11)
    assert.equal(recorded.unresponsive, 0)
    assert.equal(keepalive.rttMs, answerDeadlineMs - 1)
  })

  it('measures the round-trip time only from the answer to its latest PING', () => {
    clock.tick(intervalMs)
    const first = recorded.pings[0]!
    clock.tick(intervalMs)
    keepalive.answered(first)
    assert.equal(keepalive.rttMs, undefined, 'an answer to an older PING measures nothing')
    clock.tick(25)
    keepalive.answered(recorded.pings[1]!)
    assert.equal(keepalive.rttMs, 25)
  })

  it('a probe on a link quiet for half the deadline pings at once; on a busier one, only if nothing arrives for half a deadline', () => {
    clock.tick(answerDeadlineMs / 2)
    keepalive.probe()
    assert.equal(recorded.pings.length, 1, 'a quiet link: at once')
    keepalive.received()
    keepalive.probe()
    clock.tick(answerDeadlineMs / 2 - 1)
    assert.equal(recorded.pings.length, 1)
    clock.tick(1)
    assert.equal(recorded.pings.length, 2, 'nothing arrived for half a deadline after the probe')
    keepalive.probe()
    assert.equal(recorded.pings.length, 2, 'none while one is unanswered')
    clock.tick(answerDeadlineMs - 1)
    assert.equal(recorded.unresponsive, 0)
    clock.tick(1)
    assert.equal(recorded.unresponsive, 1, 'the probe PING has the answer deadline of any PING')
  })

  it('a probe on a link that hears from the peer in time sends nothing', () => {
    keepalive.received()
    keepalive.probe()
    clock.tick(answerDeadlineMs / 4)
    keepalive.received()
    clock.tick(answerDeadlineMs)
    assert.equal(recorded.pings.length, 0)
  })
})
