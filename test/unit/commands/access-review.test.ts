import assert from 'node:assert/strict'

import HostInit from '../../../commands/host/init.js'
import MemberJoin from '../../../commands/member/join.js'
import MemberLeave from '../../../commands/member/leave.js'
import ProxySetAddress from '../../../commands/proxy/set-address.js'
import type {Command} from '@oclif/core'

import type {ErrorJson} from '../../../src/cli/base-command.js'
import type {FakeApiServer, RecordedRequest} from '../../helpers/fake-apiserver.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {KubeSphereStandIn} from '../../helpers/kubesphere-standin.js'
import {runCommand} from '../../helpers/run-command.js'

/**
 * The access review of item 5: before its first write, every changing command asks the API servers
 * (SelfSubjectAccessReview) about every write its plan makes. The drift guard below checks the plan against
 * what the commands really send: every write request a run makes was reviewed first.
 */
describe('access review before the first write', () => {
  let clusters: FakeClusters
  let ci: string | undefined

  beforeEach(async () => {
    clusters = await startFakeClusters()
    ci = process.env.CI
    process.env.CI = 'true'
  })

  afterEach(async () => {
    if (ci === undefined) delete process.env.CI
    else process.env.CI = ci
    await clusters.stop()
  })

  const run = (command: Command.Class, argv: string[]) =>
    runCommand<unknown>(command, [...argv, '--kubeconfig', clusters.kubeconfigPath])
  const contexts = ['--host-context', 'host', '--member-context', 'member']

  /** The writes of a run, as `verb resource namespace/name`, the way the fake lists access reviews. */
  const writesSince = (fake: FakeApiServer, from: number): string[] =>
    fake.requests
      .slice(from)
      .filter((request) => fake.writes().includes(request))
      .map(describeWrite)

  /** Runs a command and checks that each write it sent to either cluster had been reviewed. */
  const expectEveryWriteReviewed = async (command: Command.Class, argv: string[], minimumWrites: number) => {
    const from = {host: clusters.host.requests.length, member: clusters.member.requests.length}
    const outcome = await run(command, argv)
    assert.equal(outcome.exitCode, 0, outcome.stderr)
    let writes = 0
    for (const side of ['host', 'member'] as const) {
      const fake = clusters[side]
      const reviewed = new Set(fake.accessReviews())
      for (const write of writesSince(fake, from[side])) {
        writes++
        assert.ok(reviewed.has(write), `${side}: "${write}" was sent without an access review`)
      }
    }
    assert.ok(writes >= minimumWrites, `only ${writes} writes`)
  }

  describe('every write a command sends was reviewed first (the plan is the real list of writes)', () => {
    it('host init', async () => {
      seedFake(clusters.host, 'ks34-none')
      await expectEveryWriteReviewed(HostInit, ['--context', 'host'], 1)
    })

    it('proxy set-address, with its restart of ks-apiserver', async () => {
      seedFake(clusters.host, 'ks41-host')
      await expectEveryWriteReviewed(ProxySetAddress, ['http://127.0.0.1:30721', '--context', 'host'], 2)
    })

    for (const [edition, host, member] of [
      ['3.4', 'ks34-host', 'ks34-none'],
      ['4.1', 'ks41-host', 'plain'],
    ] as const) {
      it(`member join ${edition}, every write sent as a server dry run`, async () => {
        seedFake(clusters.host, host, {proxyPublishAddress: 'http://127.0.0.3:30721'})
        seedFake(clusters.member, member)
        await expectEveryWriteReviewed(MemberJoin, ['member1', ...contexts, '--apply', '--dry-run=server'], 3)
      })
    }

    it('member join 3.4 for real, and member leave after it', async () => {
      seedFake(clusters.host, 'ks34-host')
      seedFake(clusters.member, 'ks34-none')
      // The stand-in issues the token only: its one write, a patch of the Cluster, is one ksctl reviewed too.
      const standIn = new KubeSphereStandIn(clusters.kubeconfigPath, 'host', 'member', {
        installer: false,
        agentConnects: false,
      }).start()
      try {
        await expectEveryWriteReviewed(MemberJoin, ['member1', ...contexts, '--apply'], 5)
      } finally {
        await standIn.stop()
      }
      assert.ok(
        clusters.host.accessReviews().includes('create leases.coordination.k8s.io kubesphere-system'),
        'the join lock is part of the plan',
      )
      await expectEveryWriteReviewed(MemberLeave, ['member1', ...contexts, '--yes'], 3)
    })
  })

  describe('refuses a plan the user lacks rights for, listing them, and changes nothing', () => {
    it('member join: read-only on the host, so not even the member is changed', async () => {
      seedFake(clusters.host, 'ks34-host')
      seedFake(clusters.member, 'ks34-none')
      clusters.host.denyAccess('patch', 'clusters.cluster.kubesphere.io')
      clusters.host.denyAccess('create', 'clusters.cluster.kubesphere.io')
      clusters.host.denyAccess('create', 'leases.coordination.k8s.io')
      const {exitCode, stdout} = await run(MemberJoin, ['member1', ...contexts, '--apply', '--json'])
      assert.equal(exitCode, 1)
      const {error} = JSON.parse(stdout) as ErrorJson
      assert.equal(error.code, 'FORBIDDEN')
      assert.equal(
        error.message,
        'missing permissions, so nothing was changed: in context "host": create leases.coordination.k8s.io in ' +
          'namespace kubesphere-system; patch, create clusters.cluster.kubesphere.io member1',
      )
      assert.deepEqual(error.suggestions, [
        'grant in context "host": Role in namespace kubesphere-system rule {apiGroups: ["coordination.k8s.io"], ' +
          'resources: ["leases"], verbs: [create]}; ClusterRole rule {apiGroups: ["cluster.kubesphere.io"], ' +
          'resources: ["clusters"], verbs: [patch, create]}',
        'check with: kubectl --context host auth can-i create leases.coordination.k8s.io -n kubesphere-system',
      ])
      assert.deepEqual(clusters.host.writes(), [])
      assert.deepEqual(clusters.member.writes(), [])
    })

    it('member leave: no delete of the agent on the member, so not even the host is changed', async () => {
      seedFake(clusters.host, 'ks34-host')
      seedFake(clusters.member, 'ks34-none')
      const standIn = new KubeSphereStandIn(clusters.kubeconfigPath, 'host', 'member').start()
      const joined = await run(MemberJoin, ['member1', ...contexts, '--apply', '--wait', '--timeout', '20s'])
      await standIn.stop()
      assert.equal(joined.exitCode, 0, joined.stderr)
      const before = [clusters.host.writes().length, clusters.member.writes().length]
      clusters.member.denyAccess('delete', 'deployments.apps')
      const {exitCode, stderr} = await run(MemberLeave, ['member1', ...contexts, '--yes'])
      assert.equal(exitCode, 1)
      assert.match(
        stderr,
        /^error: missing permissions, so nothing was changed: in context "member": delete deployments\.apps kubesphere-system\/cluster-agent$/m,
      )
      assert.deepEqual([clusters.host.writes().length, clusters.member.writes().length], before)
    })

    it('host init --dry-run only warns: a preview needs no write rights', async () => {
      seedFake(clusters.host, 'ks34-none')
      clusters.host.denyAccess('update', 'clusterconfigurations.installer.kubesphere.io')
      const {exitCode, stderr, stdout} = await run(HostInit, ['--context', 'host', '--dry-run'])
      assert.equal(exitCode, 0, stderr)
      assert.match(
        stderr,
        /^warn: the real run would be refused: missing permissions in context "host": update clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer$/m,
      )
      assert.match(stdout, /dry run: nothing was changed/)
      const refused = await run(HostInit, ['--context', 'host'])
      assert.equal(refused.exitCode, 1)
      assert.deepEqual(clusters.host.writes(), [])
    })
  })
})

/** `update configmaps kubesphere-system/kubesphere-config`, from a recorded request's method and path. */
function describeWrite(request: RecordedRequest): string {
  const segments = request.path.split('/').filter((segment) => segment !== '')
  const [prefix, ...afterPrefix] = segments
  const group = prefix === 'api' ? '' : (afterPrefix[0] ?? '')
  const rest = prefix === 'api' ? afterPrefix.slice(1) : afterPrefix.slice(2)
  const namespaced = rest[0] === 'namespaces' && rest.length >= 3
  const namespace = namespaced ? rest[1] : undefined
  const [resource = '', name] = namespaced ? rest.slice(2) : rest
  const verbs: Record<string, string> = {POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete'}
  const target = [namespace, request.method === 'POST' ? undefined : name].filter(
    (part) => part !== undefined,
  )
  const qualified = group === '' ? resource : `${resource}.${group}`
  return `${verbs[request.method] ?? request.method} ${qualified}${target.length === 0 ? '' : ` ${target.join('/')}`}`
}
