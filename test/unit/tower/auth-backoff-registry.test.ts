import assert from 'node:assert/strict'
import {writeFile} from 'node:fs/promises'
import path from 'node:path'

import {KsctlError} from '../../../src/errors.js'
import {redact} from '../../../src/redact.js'
import {FailureLimiter, tokensEqual} from '../../../src/tower/proxy/auth.js'
import {Backoff} from '../../../src/tower/shared/backoff.js'
import {FileClusterRegistry, parseClustersFile} from '../../../src/tower/proxy/file-registry.js'
import {tempDir} from './harness.js'

describe('tower auth', () => {
  it('compares tokens of any length in constant time', () => {
    assert.equal(tokensEqual('a-long-enough-token', 'a-long-enough-token'), true)
    assert.equal(tokensEqual('a-long-enough-token', 'a-long-enough-tokeN'), false)
    assert.equal(tokensEqual('short', 'a-long-enough-token'), false)
    assert.equal(tokensEqual('', ''), true)
  })

  it('blocks a source after 5 failures within a minute, for a while, and only that source', () => {
    let now = 0
    const limiter = new FailureLimiter({now: () => now})
    for (let i = 0; i < 4; i++) assert.equal(limiter.recordFailure('10.0.0.1'), false)
    assert.equal(limiter.blockedFor('10.0.0.1'), 0)
    assert.equal(limiter.recordFailure('10.0.0.1'), true, 'the failure that starts the block says so')
    assert.equal(limiter.blockedFor('10.0.0.1'), 60_000)
    assert.equal(limiter.blockedFor('10.0.0.2'), 0)
    now = 60_001
    assert.equal(limiter.blockedFor('10.0.0.1'), 0)
  })

  it('forgets failures older than the window', () => {
    let now = 0
    const limiter = new FailureLimiter({now: () => now})
    for (let i = 0; i < 4; i++) limiter.recordFailure('a')
    now = 61_000
    limiter.recordFailure('a')
    assert.equal(limiter.blockedFor('a'), 0)
  })
})

describe('tower backoff', () => {
  it('grows by 1.4 with jitter in [base/2, base), capped, and resets', () => {
    const low = new Backoff({initialMs: 1000, maxMs: 5000, random: () => 0})
    assert.deepEqual(
      Array.from({length: 7}, () => low.next()),
      [500, 700, 980, 1372, 1921, 2500, 2500],
    )
    const high = new Backoff({initialMs: 1000, maxMs: 5000, random: () => 0.999999})
    assert.deepEqual(
      Array.from({length: 3}, () => high.next()),
      [1000, 1400, 1960],
    )
    low.reset()
    assert.equal(low.attempts, 0)
    assert.equal(low.next(), 500)
    assert.equal(low.longest(), 5000)
  })
})

describe('tower clusters file', () => {
  const token = 'secret-token-value-0123456789'

  it('parses names, tokens and optional ports', () => {
    const clusters = parseClustersFile(
      `- {name: member1, token: ${token}, kubernetesPort: 6001, kubespherePort: 16001}\n- {name: member2, token: ${token}x}\n`,
      'clusters.yaml',
    )
    assert.deepEqual(clusters, [
      {name: 'member1', token, kubernetesPort: 6001, kubespherePort: 16001},
      {name: 'member2', token: `${token}x`, kubernetesPort: undefined, kubespherePort: undefined},
    ])
    assert.deepEqual(parseClustersFile('', 'empty.yaml'), [])
  })

  const bad: [string, string, RegExp][] = [
    ['not a list', `name: a\ntoken: ${token}`, /must be a YAML list/],
    ['bad YAML', `- {name: a, token: ${token}`, /is not valid YAML/],
    ['bad name', `- {name: A_B, token: ${token}}`, /name must be a DNS label/],
    ['short token', '- {name: a, token: short}', /at least 16 characters/],
    ['bad port', `- {name: a, token: ${token}, kubernetesPort: 70000}`, /port number/],
    ['unknown key', `- {name: a, token: ${token}, tokn: x}`, /unknown keys: tokn/],
    [
      'duplicate name',
      `- {name: a, token: ${token}}\n- {name: a, token: ${token}}`,
      /cluster name a appears twice/,
    ],
    [
      'duplicate port',
      `- {name: a, token: ${token}, kubernetesPort: 1}\n- {name: b, token: ${token}, kubespherePort: 1}`,
      /port 1 appears twice/,
    ],
  ]
  for (const [what, text, message] of bad) {
    it(`rejects ${what} without quoting the token`, () => {
      assert.throws(
        () => parseClustersFile(text, 'clusters.yaml'),
        (error: unknown) => {
          assert.ok(error instanceof KsctlError)
          assert.match(error.message, message)
          assert.ok(!error.message.includes(token))
          return true
        },
      )
    })
  }

  it('registers tokens with the redactor, and keeps the old clusters when a reload fails', async () => {
    const file = path.join(await tempDir(), 'clusters.yaml')
    await writeFile(file, `- {name: a, token: ${token}}\n`)
    const registry = await FileClusterRegistry.open(file)
    assert.ok(!redact(`saw ${token}`).includes(token))
    let changes = 0
    registry.onChange(() => changes++)
    await writeFile(file, '- {name: a}\n')
    await assert.rejects(registry.reload(), /token/)
    assert.equal(registry.get('a')?.token, token)
    await writeFile(file, `- {name: b, token: ${token}}\n`)
    await registry.reload()
    assert.deepEqual(
      registry.list().map((cluster) => cluster.name),
      ['b'],
    )
    assert.equal(changes, 1)
  })
})
