import assert from 'node:assert/strict'

import {formatDuration, parseDuration} from '../../../src/cli/duration.js'

describe('durations', () => {
  const valid: [string, number][] = [
    ['90s', 90_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['2', 2000],
    ['1.5s', 1500],
  ]
  for (const [text, ms] of valid) {
    it(`reads ${text} as ${ms} ms`, () => assert.equal(parseDuration(text, '--timeout'), ms))
  }

  for (const text of ['', 'soon', '5x', '5m and a bit', '-1s']) {
    it(`rejects "${text}" naming the flag`, () => {
      assert.throws(() => parseDuration(text, '--keepalive'), /--keepalive ".*" is not a duration/)
    })
  }

  it('prints whole units', () => {
    assert.deepEqual(
      [formatDuration(120_000), formatDuration(1500), formatDuration(3_600_000)],
      ['2m', '1500ms', '1h'],
    )
  })
})
