import assert from 'node:assert/strict'

import {CoordinationV1Api} from '@kubernetes/client-node'

import type {DoctorReport} from '../../src/kubesphere/doctor.js'
import {KubeSphereStandIn} from '../helpers/kubesphere-standin.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {run} from './cluster-state.js'
import {testBed} from './hooks.js'

const NAMESPACE = 'kubesphere-system'
const clusterGvr = {group: 'cluster.kubesphere.io', version: 'v1alpha1', plural: 'clusters'}

interface Cluster {
  metadata: {name: string; annotations?: Record<string, string>; resourceVersion?: string}
}

/**
 * Item 8 on real API servers, with the real binary: eight joins of one member under eight names, at once.
 * Exactly one registers; the others fail naming it, and leave nothing of theirs on either cluster.
 */
describe('parallel joins of one member under different names, real apiservers', function () {
  this.timeout(180_000)
  let standIn: KubeSphereStandIn | undefined

  beforeEach(async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-host')
    await resetCluster(testBed().kubeconfigPath, 'member', 'ks34-none')
  })

  afterEach(async () => {
    await standIn?.stop()
    standIn = undefined
  })

  const memberClusters = async (): Promise<Cluster[]> => {
    const list = (await adminApis(testBed().kubeconfigPath, 'host').custom.listClusterCustomObject(
      clusterGvr,
    )) as {items: Cluster[]}
    return list.items.filter((cluster) => cluster.metadata.name !== 'host')
  }

  it('exactly one of eight succeeds; the others name it and leave nothing behind', async () => {
    standIn = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', 'member').start()
    const names = Array.from({length: 8}, (_, index) => `racer${index + 1}`)
    const outcomes = await Promise.all(
      names.map((name) =>
        run(['member', 'join', name, '--host-context', 'host', '--member-context', 'member', '--apply']),
      ),
    )
    await standIn.stop()

    const winners = names.filter((_, index) => outcomes[index]?.exitCode === 0)
    assert.equal(winners.length, 1, outcomes.map((outcome) => outcome.stderr).join('\n'))
    const [winner] = winners as [string]
    for (const [index, outcome] of outcomes.entries()) {
      if (names[index] === winner) continue
      assert.equal(outcome.exitCode, 1, outcome.stderr)
      assert.match(
        outcome.stderr,
        new RegExp(
          `^error: the member of context "member" is (being joined|already joined) to this host as "${winner}"`,
          'm',
        ),
      )
    }

    const registered = await memberClusters()
    assert.deepEqual(
      registered.map((cluster) => cluster.metadata.name),
      [winner],
    )
    const host = adminApis(testBed().kubeconfigPath, 'host')
    const leases = await host.config
      .makeApiClient(CoordinationV1Api)
      .listNamespacedLease({namespace: NAMESPACE})
    assert.deepEqual(leases.items, [], 'no lock is left behind')
    const member = adminApis(testBed().kubeconfigPath, 'member')
    const agent = await member.apps.readNamespacedDeployment({name: 'cluster-agent', namespace: NAMESPACE})
    assert.ok(agent.spec?.template.spec?.containers[0]?.command?.includes(`--name=${winner}`))
    const installer = (await member.custom.getNamespacedCustomObject({
      group: 'installer.kubesphere.io',
      version: 'v1alpha1',
      plural: 'clusterconfigurations',
      namespace: NAMESPACE,
      name: 'ks-installer',
    })) as {spec: {multicluster: {clusterRole: string}}}
    assert.equal(installer.spec.multicluster.clusterRole, 'member')

    const rerun = await run([
      'member',
      'join',
      winner,
      '--host-context',
      'host',
      '--member-context',
      'member',
      '--apply',
    ])
    assert.equal(rerun.exitCode, 0, `a re-run of the winner passes: ${rerun.stderr}`)
  })

  it('doctor reports a member registered under two names', async () => {
    standIn = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', 'member').start()
    const joined = await run([
      'member',
      'join',
      'member1',
      '--host-context',
      'host',
      '--member-context',
      'member',
      '--apply',
      '--wait',
      '--timeout',
      '60s',
    ])
    assert.equal(joined.exitCode, 0, joined.stderr)
    await standIn.stop()
    // What an unguarded join left behind: a second Cluster for the same member.
    const [first] = (await memberClusters()) as [Cluster]
    const host = adminApis(testBed().kubeconfigPath, 'host')
    await host.custom.createClusterCustomObject({
      ...clusterGvr,
      body: {
        apiVersion: 'cluster.kubesphere.io/v1alpha1',
        kind: 'Cluster',
        metadata: {name: 'member1-again', annotations: first.metadata.annotations},
        spec: {joinFederation: true, connection: {type: 'proxy'}},
      },
    })
    const doctor = await run([
      'doctor',
      'member1',
      '--host-context',
      'host',
      '--member-context',
      'member',
      '--json',
    ])
    const report = JSON.parse(doctor.stdout) as DoctorReport
    const finding = report.findings.find((item) => item.check === 'registration')
    assert.equal(finding?.status, 'fail')
    assert.match(finding?.message ?? '', /is registered under two names: "member1", "member1-again"$/)
    assert.equal(report.healthy, false)
  })
})
