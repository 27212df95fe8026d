import assert from 'node:assert/strict'

import {parseLabels} from '../../../src/cli/labels.js'
import {KsctlError} from '../../../src/errors.js'

describe('--label', () => {
  it('reads key=value pairs, prefixed keys and empty values', () => {
    assert.deepEqual(parseLabels(['a=1', 'cluster.kubesphere.io/group=production', 'empty=']), {
      a: '1',
      'cluster.kubesphere.io/group': 'production',
      empty: '',
    })
  })

  for (const pairs of [
    ['a=1', 'a=2'],
    ['a=1', 'a=1'],
    ['cluster.kubesphere.io/group=x', 'b=2', 'cluster.kubesphere.io/group='],
  ]) {
    it(`refuses a key given twice: ${pairs.join(' ')}`, () => {
      const key = (pairs[0] ?? '').split('=')[0] ?? ''
      assert.throws(
        () => parseLabels(pairs),
        (error: unknown) =>
          error instanceof KsctlError &&
          error.code === 'INVALID_INPUT' &&
          error.exitCode === 2 &&
          error.message.startsWith(`--label "${key}" is given more than once`),
      )
    })
  }
})
