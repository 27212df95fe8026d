import assert from 'node:assert/strict'

import {INITIAL_WINDOW_BYTES, MAX_WINDOW_BYTES} from '../../../src/tunnel/constants.js'
import {FlowControlError} from '../../../src/tunnel/errors.js'
import {ReceiveWindow, SendWindow} from '../../../src/tunnel/flow.js'

describe('tunnel flow control', () => {
  describe('send window', () => {
    it('spends credit down to zero and no further', () => {
      const window = new SendWindow(100)
      assert.deepEqual([window.take(60), window.take(60), window.take(60), window.credit], [60, 40, 0, 0])
    })

    it('resumes when credit is granted', () => {
      const window = new SendWindow(0)
      window.grant(10)
      assert.deepEqual([window.take(64), window.credit], [10, 0])
    })

    it('refuses a grant that would exceed the largest window', () => {
      const window = new SendWindow(INITIAL_WINDOW_BYTES)
      window.grant(MAX_WINDOW_BYTES - INITIAL_WINDOW_BYTES)
      assert.throws(() => window.grant(1), FlowControlError)
    })
  })

  describe('receive window', () => {
    it('accepts exactly the window and rejects one byte more as a flow-control error', () => {
      const window = new ReceiveWindow(1000)
      window.receive(600)
      window.receive(400)
      assert.equal(window.remaining, 0)
      assert.throws(
        () => window.receive(1),
        (error: unknown) => error instanceof FlowControlError && error.code === 'TUNNEL_ERR_FLOW_CONTROL',
      )
    })

    it('returns no credit until half the window was consumed, then all of it at once', () => {
      const window = new ReceiveWindow(1000)
      window.receive(1000)
      assert.deepEqual([window.consume(300), window.consume(199)], [0, 0])
      assert.equal(window.remaining, 0)
      assert.equal(window.consume(1), 500)
      assert.equal(window.remaining, 500)
    })

    it('never credits data that was received but not consumed', () => {
      const window = new ReceiveWindow(1000)
      window.receive(800)
      assert.equal(window.consume(800), 800)
      window.receive(1000)
      assert.throws(() => window.receive(1), FlowControlError)
      assert.throws(() => window.consume(1001), RangeError)
    })
  })
})
