import assert from 'node:assert/strict'

import Doctor from '../../../commands/doctor.js'
import MemberJoin, {type MemberJoinOutput} from '../../../commands/member/join.js'
import type {ErrorJson} from '../../../src/cli/base-command.js'
import type {DoctorReport} from '../../../src/kubesphere/doctor.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {KubeSphereStandIn} from '../../helpers/kubesphere-standin.js'
import {runCommand} from '../../helpers/run-command.js'

const leasePath =
  '/apis/coordination.k8s.io/v1/namespaces/kubesphere-system/leases/ksctl-join-member-kube-system-uid'
const installerPath =
  '/apis/installer.kubesphere.io/v1alpha1/namespaces/kubesphere-system/clusterconfigurations/ks-installer'
const clusterPath = (name: string) => `/apis/cluster.kubesphere.io/v1alpha1/clusters/${name}`

/** Item 8: one member, one registration; the lock that guards a join until its Cluster exists. */
describe('member join lock', () => {
  let clusters: FakeClusters
  let standIn: KubeSphereStandIn | undefined

  beforeEach(async () => {
    clusters = await startFakeClusters()
    seedFake(clusters.host, 'ks34-host')
    seedFake(clusters.member, 'ks34-none')
  })

  afterEach(async () => {
    await standIn?.stop()
    standIn = undefined
    await clusters.stop()
  })

  const join = (name: string, ...argv: string[]) =>
    runCommand<MemberJoinOutput>(MemberJoin, [
      name,
      '--host-context',
      'host',
      '--member-context',
      'member',
      '--kubeconfig',
      clusters.kubeconfigPath,
      ...argv,
    ])
  const holdLease = (clusterName: string, renewedSecondsAgo: number) =>
    clusters.host.put(leasePath, {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: 'ksctl-join-member-kube-system-uid',
        namespace: 'kubesphere-system',
        annotations: {'ksctl.io/cluster-name': clusterName, 'ksctl.io/member-context': 'member'},
      },
      spec: {
        holderIdentity: `elsewhere/1/${clusterName}`,
        leaseDurationSeconds: 60,
        acquireTime: new Date(Date.now() - renewedSecondsAgo * 1000).toISOString(),
        renewTime: new Date(Date.now() - renewedSecondsAgo * 1000).toISOString(),
      },
    })

  it('holds the lock only while registering, and leaves no lease behind', async () => {
    standIn = new KubeSphereStandIn(clusters.kubeconfigPath, 'host', 'member').start()
    const {exitCode, stderr} = await join('member1', '--apply')
    assert.equal(exitCode, 0, stderr)
    assert.equal(clusters.host.get(leasePath), undefined)
    const leaseWrites = clusters.host
      .writes()
      .filter((write) => write.path.includes('/leases'))
      .map((write) => write.method)
    assert.deepEqual(leaseWrites, ['POST', 'PUT', 'DELETE'], 'taken, renewed before the Cluster, released')

    const again = await join('member1', '--apply')
    assert.equal(again.exitCode, 0, again.stderr)
    assert.equal(
      clusters.host.writes().filter((write) => write.path.includes('/leases')).length,
      3,
      'a re-run of a registered member needs no lock',
    )
  })

  it('refuses while another join of the member holds the lock, naming it, and changes nothing', async () => {
    holdLease('member7', 5)
    const installerBefore = clusters.member.get(installerPath)
    const {exitCode, stdout} = await join('member1', '--apply', '--json')
    assert.equal(exitCode, 1)
    const {error} = JSON.parse(stdout) as ErrorJson
    assert.equal(error.code, 'CONFLICT')
    assert.match(
      error.message,
      /^the member of context "member" is being joined to this host as "member7" by another ksctl run \(lease kubesphere-system\/ksctl-join-member-kube-system-uid in context "host", since .*\): nothing was changed$/,
    )
    assert.match(
      error.suggestions[1] ?? '',
      /ksctl member join member7 --host-context host --member-context member/,
    )
    assert.deepEqual(clusters.member.get(installerPath), installerBefore)
    assert.equal(clusters.host.get(clusterPath('member1')), undefined)
    assert.deepEqual(clusters.member.writes(), [])
    assert.deepEqual(
      clusters.host
        .writes()
        .filter((write) => !write.dryRun)
        .map((write) => write.method),
      ['POST'],
      'only the create of the lease, which got 409 (and the dry run of the Cluster before it)',
    )
  })

  for (const [why, holder, secondsAgo] of [
    ['an expired lock of another join', 'member7', 120],
    ['a lock under its own name (a run that stopped)', 'member1', 5],
  ] as const) {
    it(`takes over ${why}`, async () => {
      holdLease(holder, secondsAgo)
      standIn = new KubeSphereStandIn(clusters.kubeconfigPath, 'host', 'member').start()
      const {exitCode, stderr} = await join('member1', '--apply')
      assert.equal(exitCode, 0, stderr)
      assert.ok(clusters.host.get(clusterPath('member1')) !== undefined)
      assert.equal(clusters.host.get(leasePath), undefined)
    })
  }

  it('doctor reports a member registered under two names', async () => {
    standIn = new KubeSphereStandIn(clusters.kubeconfigPath, 'host', 'member').start()
    assert.equal((await join('member1', '--apply')).exitCode, 0)
    await standIn.stop()
    const registered = clusters.host.get(clusterPath('member1'))
    assert.ok(registered !== undefined)
    clusters.host.put(clusterPath('member1-again'), {
      ...registered,
      metadata: {name: 'member1-again', annotations: registered.metadata.annotations},
    })
    const {result} = await runCommand<DoctorReport>(Doctor, [
      'member1',
      '--host-context',
      'host',
      '--kubeconfig',
      clusters.kubeconfigPath,
    ])
    assert.deepEqual(
      result?.findings.find((finding) => finding.check === 'registration'),
      {
        check: 'registration',
        status: 'fail',
        message:
          'the member of cluster "member1" (kube-system UID member-kube-system-uid) is registered under two names: ' +
          '"member1", "member1-again"',
        why: 'KubeSphere must not import the same cluster twice: both Clusters reach one member, whose agent serves only one of them',
        fix: "keep the Cluster the member's agent connects as, and delete the other: kubectl --context host delete cluster member1-again",
      },
    )
  })
})
