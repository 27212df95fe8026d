import assert from 'node:assert/strict'

import {
  generateJoinToken,
  hashJoinToken,
  parseJoinToken,
  TOKEN_PATTERN,
  tokenMatches,
} from '../../../src/join-token/token.js'
import {
  stateOf,
  verifyPresented,
  withoutStale,
  parseRecords,
  serializeRecords,
  RETENTION_AFTER_EXPIRY_MS,
  type JoinTokenRecord,
} from '../../../src/join-token/records.js'

const now = new Date('2026-12-07T12:00:00Z')

function recordOf(
  token: ReturnType<typeof generateJoinToken>,
  fields: Partial<JoinTokenRecord> = {},
): JoinTokenRecord {
  return {
    id: token.id,
    hash: hashJoinToken(token),
    cluster: 'member1',
    clusterUid: 'uid-1',
    edition: '4.x',
    createdAt: '2026-12-07T11:30:00Z',
    expiresAt: '2026-12-07T12:30:00Z',
    ...fields,
  }
}

describe('join tokens', () => {
  it('are ID.SECRET in lowercase base32 with 130 bits of secret, different every time, and parse back', () => {
    const tokens = Array.from({length: 200}, () => generateJoinToken())
    for (const token of tokens) {
      assert.match(token.text, TOKEN_PATTERN)
      assert.equal(token.secret.length * 5, 130)
      assert.deepEqual(parseJoinToken(` ${token.text}\n`), token)
    }
    assert.equal(new Set(tokens.map((token) => token.secret)).size, tokens.length)
    // Every character of the alphabet turns up: the secret is not drawn from part of it.
    const seen = new Set(tokens.flatMap((token) => [...token.secret]))
    assert.equal(seen.size, 32)
  })

  it('refuse text of any other shape', () => {
    for (const text of [
      '',
      'abcdef',
      'abcdef.',
      'ABCDEF.abcdefghijklmnopqrstuvwxyz',
      'abcdef.abcdefghijklmnopqrstuvwxy',
      'abcdef.abcdefghijklmnopqrstuvwxyz2',
      'abcde1.abcdefghijklmnopqrstuvwxyz',
      'abcdef.abcdefghijklmnopqrstuvwxy0',
      'abcdef.abcdefghijklmnopqrstuvwxyz.abc',
    ]) {
      assert.equal(parseJoinToken(text), undefined, text)
    }
  })

  it('are kept as a SHA-256 hash, which matches the token and nothing else', () => {
    const token = generateJoinToken()
    const other = generateJoinToken()
    const hash = hashJoinToken(token)
    assert.match(hash, /^sha256:[0-9a-f]{64}$/)
    assert.ok(!hash.includes(token.secret))
    assert.equal(tokenMatches(token, hash), true)
    assert.equal(tokenMatches(other, hash), false)
    const sameId = {...token, secret: other.secret, text: `${token.id}.${other.secret}`}
    assert.equal(tokenMatches(sameId, hash), false)
    assert.equal(tokenMatches(token, undefined), false)
    assert.equal(tokenMatches(token, 'sha256:not-hex'), false)
  })
})

describe('join token records', () => {
  it('say whether a token is valid, used, expired or revoked', () => {
    const token = generateJoinToken()
    assert.equal(stateOf(recordOf(token), now), 'valid')
    assert.equal(stateOf(recordOf(token, {expiresAt: now.toISOString()}), now), 'expired')
    assert.equal(stateOf(recordOf(token, {usedAt: '2026-12-07T11:40:00Z'}), now), 'used')
    assert.equal(stateOf(recordOf(token, {revokedAt: '2026-12-07T11:40:00Z'}), now), 'revoked')
  })

  it('let a token through only with its secret, for its cluster, while valid', () => {
    const token = generateJoinToken()
    const records = (fields: Partial<JoinTokenRecord> = {}) => new Map([[token.id, recordOf(token, fields)]])
    const refusal = (result: ReturnType<typeof verifyPresented>) =>
      'refusal' in result ? result.refusal.code : 'ok'
    assert.equal(refusal(verifyPresented(records(), token.text, 'member1', now)), 'ok')
    assert.equal(refusal(verifyPresented(records(), 'not a token', 'member1', now)), 'token_malformed')
    assert.equal(
      refusal(verifyPresented(records(), generateJoinToken().text, 'member1', now)),
      'token_invalid',
    )
    assert.equal(refusal(verifyPresented(records(), token.text, 'member2', now)), 'token_wrong_cluster')
    assert.equal(refusal(verifyPresented(records({usedAt: 'x'}), token.text, 'member1', now)), 'token_used')
    assert.equal(
      refusal(verifyPresented(records({revokedAt: 'x'}), token.text, 'member1', now)),
      'token_revoked',
    )
    assert.equal(
      refusal(verifyPresented(records({expiresAt: '2026-12-07T11:59:59Z'}), token.text, 'member1', now)),
      'token_expired',
    )
  })

  it("tell nothing of a token's state to who has only its ID", () => {
    const token = generateJoinToken()
    const guess = `${token.id}.${generateJoinToken().secret}`
    for (const fields of [
      {usedAt: 'x'},
      {revokedAt: 'x'},
      {expiresAt: '2026-01-01T00:00:00Z'},
      {cluster: 'member2'},
    ]) {
      const result = verifyPresented(new Map([[token.id, recordOf(token, fields)]]), guess, 'member1', now)
      assert.deepEqual('refusal' in result && result.refusal.code, 'token_invalid')
    }
  })

  it('round-trip through the Secret, skip entries that are not records, and drop records a day after expiry', () => {
    const fresh = recordOf(generateJoinToken())
    const expiredToday = recordOf(generateJoinToken(), {expiresAt: '2026-12-07T06:00:00Z'})
    const stale = recordOf(generateJoinToken(), {
      expiresAt: new Date(now.getTime() - RETENTION_AFTER_EXPIRY_MS - 1).toISOString(),
    })
    const data = {
      ...serializeRecords([fresh, expiredToday, stale]),
      handmade: 'not json',
      other: '{"id":"x"}',
    }
    const {records, unreadable} = parseRecords(data)
    assert.deepEqual([...records.keys()].sort(), [fresh.id, expiredToday.id, stale.id].sort())
    assert.deepEqual(unreadable.sort(), ['handmade', 'other'])
    assert.deepEqual([...withoutStale(records, now).keys()].sort(), [fresh.id, expiredToday.id].sort())
  })
})
