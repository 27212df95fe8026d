import assert from 'node:assert/strict'

import {acceptedToken} from '../../../../src/tower/proxy/agent-listener.js'

describe("the agent listener's token check", () => {
  const cluster = {name: 'member1', token: 'current-token-0123456789'}
  const rotating = {...cluster, nextToken: 'next-token-9876543210'}

  it('takes the current token, and during a rotation the next one as well, and says which', () => {
    assert.equal(acceptedToken('current-token-0123456789', cluster, 0), cluster.token)
    assert.equal(acceptedToken('next-token-9876543210', cluster, 0), undefined)
    assert.equal(acceptedToken('current-token-0123456789', rotating, 0), rotating.token)
    assert.equal(acceptedToken('next-token-9876543210', rotating, 0), rotating.nextToken)
    assert.equal(acceptedToken('another-token-000000000', rotating, 0), undefined)
  })

  it('refuses the current token from its expiry on, while the next one is still taken', () => {
    const expiring = {...rotating, tokenExpiresAt: 1000}
    assert.equal(acceptedToken('current-token-0123456789', expiring, 999), expiring.token)
    assert.equal(acceptedToken('current-token-0123456789', expiring, 1000), undefined)
    assert.equal(acceptedToken('next-token-9876543210', expiring, 5000), expiring.nextToken)
  })
})
