import assert from 'node:assert/strict'

import MemberJoin from '../../../commands/member/join.js'
import {parseLabels} from '../../../src/cli/labels.js'
import {ExitCode, KsctlError} from '../../../src/errors.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {runCommand} from '../../helpers/run-command.js'

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
          error.exitCode === ExitCode.Usage &&
          error.message.startsWith(`--label "${key}" is given more than once`),
      )
    })
  }
})

describe('member join --label a key twice', () => {
  let clusters: FakeClusters

  beforeEach(async () => {
    clusters = await startFakeClusters()
    seedFake(clusters.host, 'ks34-host')
    seedFake(clusters.member, 'ks34-none')
  })

  afterEach(() => clusters.stop())

  it('is a usage error naming the key, before anything is read or written', async () => {
    const {exitCode, stderr} = await runCommand(MemberJoin, [
      'member1',
      '--host-context',
      'host',
      '--member-context',
      'member',
      '--kubeconfig',
      clusters.kubeconfigPath,
      '--label',
      'team=a',
      '--label',
      'team=b',
    ])
    assert.equal(exitCode, 2)
    assert.match(
      stderr,
      /^error: --label "team" is given more than once \(--label team=a and --label team=b\)$/m,
    )
    assert.deepEqual([...clusters.host.requests, ...clusters.member.requests], [])
  })
})
