import assert from 'node:assert/strict'

import {quantityValue} from '../../src/quantity.js'

describe('Kubernetes quantities', () => {
  it('reads decimal, binary and exponent suffixes', () => {
    assert.equal(quantityValue('1'), 1)
    assert.equal(quantityValue('100m'), 0.1)
    assert.equal(quantityValue('200M'), 200e6)
    assert.equal(quantityValue('1.5Gi'), 1.5 * 2 ** 30)
    assert.equal(quantityValue('1e3'), 1000)
    assert.equal(quantityValue('.5'), 0.5)
  })

  it('refuses what the API server would not parse, and negative amounts', () => {
    for (const text of ['', 'lots', '1 Gi', '1gb', '-1', '1.2.3', 'Mi'])
      assert.equal(quantityValue(text), undefined, text)
  })
})
