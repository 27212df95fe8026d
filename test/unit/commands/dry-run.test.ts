import assert from 'node:assert/strict'

import HostInit from '../../../commands/host/init.js'
import MemberJoin, {type MemberJoinOutput} from '../../../commands/member/join.js'
import MemberLeave from '../../../commands/member/leave.js'
import ProxySetAddress from '../../../commands/proxy/set-address.js'
import {withDryRunValue} from '../../../src/cli/flags.js'
import type {HostInitResult} from '../../../src/kubesphere/host-init.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {runCommand} from '../../helpers/run-command.js'

const installerPath =
  '/apis/installer.kubesphere.io/v1alpha1/namespaces/kubesphere-system/clusterconfigurations/ks-installer'

describe('--dry-run in kubectl forms', () => {
  it('reads a bare --dry-run as --dry-run=client, up to a "--"', () => {
    assert.deepEqual(withDryRunValue(['member1', '--dry-run', '--apply']), [
      'member1',
      '--dry-run=client',
      '--apply',
    ])
    assert.deepEqual(withDryRunValue(['--dry-run=server', '--', '--dry-run']), [
      '--dry-run=server',
      '--',
      '--dry-run',
    ])
  })

  describe('on the commands that change clusters', () => {
    let clusters: FakeClusters

    beforeEach(async () => {
      clusters = await startFakeClusters()
      seedFake(clusters.host, 'ks34-host')
      seedFake(clusters.member, 'ks34-none')
    })

    afterEach(() => clusters.stop())

    const join = (...argv: string[]) =>
      runCommand<MemberJoinOutput>(MemberJoin, [
        'member1',
        '--host-context',
        'host',
        '--member-context',
        'member',
        '--kubeconfig',
        clusters.kubeconfigPath,
        ...argv,
      ])
    const nothingWritten = () => {
      const real = (fake: typeof clusters.host) => fake.writes().filter((write) => !write.dryRun)
      assert.deepEqual([...real(clusters.host), ...real(clusters.member)], [])
    }

    for (const form of [['--dry-run'], ['--dry-run=client'], ['--dry-run', '--apply']]) {
      it(`member join ${form.join(' ')}: the preview, no argument taken for a value`, async () => {
        const {exitCode, stdout, stderr, result} = await join(...form)
        assert.equal(exitCode, 0, stderr)
        assert.equal(result?.dryRun, true)
        assert.match(stdout, /^would change host: clusters\.cluster\.kubesphere\.io member1/m)
        assert.match(stdout, /dry run: nothing was changed\n$/)
        nothingWritten()
        assert.ok(
          !clusters.member.requests.some((request) => request.method === 'PUT'),
          'a client dry run sends no update of the member',
        )
      })
    }

    it('member join --dry-run=server: every write of the plan sent as a dry run, in order', async () => {
      const {exitCode, stdout, stderr} = await join('--apply', '--dry-run=server')
      assert.equal(exitCode, 0, stderr)
      nothingWritten()
      assert.deepEqual(
        clusters.member.writes().map((write) => [write.method, write.path, write.dryRun]),
        [
          ['PUT', installerPath, true],
          ['PATCH', '/apis/apps/v1/namespaces/kubesphere-system/deployments/cluster-agent', true],
        ],
      )
      assert.deepEqual(
        clusters.host.writes().map((write) => [write.method, write.path, write.dryRun]),
        [
          ['PATCH', '/apis/cluster.kubesphere.io/v1alpha1/clusters/member1', true],
          ['POST', '/apis/coordination.k8s.io/v1/namespaces/kubesphere-system/leases', true],
        ],
        "the Cluster's apply is tried before the lock is taken: its dry run is also the real run's first check",
      )
      assert.match(stdout, /^would change member: clusterconfigurations\.installer\.kubesphere\.io/m)
      assert.match(stdout, /^\+ {4}clusterRole: member$/m, "the diff is the server's answer")
    })

    it('host init --dry-run=server fails as the real run would when the server refuses the write', async () => {
      seedFake(clusters.host, 'ks34-none')
      clusters.host.failNext('PUT', /ks-installer$/, 422, 'refused by an admission policy', 2)
      const server = await runCommand<HostInitResult>(HostInit, [
        '--context',
        'host',
        '--kubeconfig',
        clusters.kubeconfigPath,
        '--dry-run=server',
      ])
      assert.equal(server.exitCode, 1)
      assert.match(server.stderr, /refused by an admission policy/)
      const client = await runCommand<HostInitResult>(HostInit, [
        '--context',
        'host',
        '--kubeconfig',
        clusters.kubeconfigPath,
        '--dry-run=client',
      ])
      assert.equal(client.exitCode, 0, client.stderr)
      nothingWritten()
    })

    it('refuses another value, naming the ones it takes', async () => {
      for (const command of [HostInit, ProxySetAddress, MemberLeave]) {
        const {exitCode, stderr} = await runCommand(command, [
          ...(command === MemberLeave
            ? ['member1', '--host-context', 'host', '--member-context', 'member']
            : []),
          '--kubeconfig',
          clusters.kubeconfigPath,
          '--dry-run=later',
        ])
        assert.equal(exitCode, 2)
        assert.match(stderr, /Expected --dry-run=later to be one of: client, server, none/)
      }
      nothingWritten()
    })
  })
})
