import assert from 'node:assert/strict'

import {StandInLoop} from '../../../src/kubesphere-standin/loop.js'

/** Resolves on the next pass of a loop that counts its passes. */
function countingLoop() {
  let passes = 0
  let onPass: (() => void) | undefined
  const loop = new StandInLoop(
    [
      () => {
        passes++
        onPass?.()
        return Promise.resolve()
      },
    ],
    1,
  )
  const nextPass = () => new Promise<void>((resolve) => (onPass = resolve))
  return {loop, nextPass, passes: () => passes}
}

describe('StandInLoop', function () {
  it('runs no pass once stop() has resolved', async () => {
    const {loop, nextPass, passes} = countingLoop()
    const first = nextPass()
    loop.start()
    await first
    await loop.stop()
    const stoppedAt = passes()
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(passes(), stoppedAt)
  })

  it('runs again when started after stop()', async () => {
    const {loop, nextPass} = countingLoop()
    const first = nextPass()
    loop.start()
    await first
    await loop.stop()
    const again = nextPass()
    loop.start()
    await again
    await loop.stop()
  })

  it('goes on after a pass that failed, handing its error over', async () => {
    const errors: unknown[] = []
    let calls = 0
    let secondCall: () => void = () => undefined
    const reached = new Promise<void>((resolve) => (secondCall = resolve))
    const loop = new StandInLoop(
      [
        () => {
          calls++
          if (calls === 2) secondCall()
          return calls === 1 ? Promise.reject(new Error('first pass fails')) : Promise.resolve()
        },
      ],
      1,
      (error) => errors.push(error),
    ).start()
    await reached
    await loop.stop()
    assert.equal((errors[0] as Error).message, 'first pass fails')
  })
})
