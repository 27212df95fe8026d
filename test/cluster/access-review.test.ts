import assert from 'node:assert/strict'

import {KubeSphereStandIn} from '../helpers/kubesphere-standin.js'
import {resetCluster} from '../testbed/seed.js'
import {bothClusters, run} from './cluster-state.js'
import {testBed} from './hooks.js'

/**
 * Item 5 on real API servers: with read-only rights on one cluster (the test bed's `*-readonly` contexts,
 * which read everything), every changing command is refused before its first write, listing what is
 * missing, and neither cluster changes, not even the one where the user is an administrator.
 */
describe('a read-only user is refused before the first write, real apiservers', function () {
  this.timeout(120_000)

  const refused = async (args: string[], missing: RegExp) => {
    const before = await bothClusters()
    const outcome = await run(args)
    assert.equal(outcome.exitCode, 1, outcome.stderr)
    assert.match(outcome.stderr, /^error: missing permissions, so nothing was changed: /m)
    assert.match(outcome.stderr, missing)
    assert.match(outcome.stderr, /→ grant in context "(host|member)-readonly": /)
    assert.match(outcome.stderr, /→ check with: kubectl --context (host|member)-readonly auth can-i /)
    assert.deepEqual(await bothClusters(), before)
  }

  it('host init', async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-none')
    await refused(
      ['host', 'init', '--context', 'host-readonly'],
      /in context "host-readonly": update clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer$/m,
    )
  })

  it('proxy set-address, with the restart of ks-apiserver it plans', async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks41-host')
    await refused(
      ['proxy', 'set-address', 'http://127.0.0.1:30721', '--context', 'host-readonly'],
      /in context "host-readonly": update configmaps kubesphere-system\/kubesphere-config; patch deployments\.apps kubesphere-system\/ks-apiserver$/m,
    )
  })

  describe('member join and member leave', () => {
    beforeEach(async () => {
      await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-host')
      await resetCluster(testBed().kubeconfigPath, 'member', 'ks34-none')
    })

    const join = (host: string, member: string) => [
      'member',
      'join',
      'member1',
      '--host-context',
      host,
      '--member-context',
      member,
      '--apply',
    ]

    it('member join, read-only on the host: the member is not changed either', async () => {
      await refused(
        join('host-readonly', 'member'),
        /in context "host-readonly": create leases\.coordination\.k8s\.io in namespace kubesphere-system; update, delete leases\.coordination\.k8s\.io kubesphere-system\/ksctl-join-[-0-9a-f]+; patch, create clusters\.cluster\.kubesphere\.io member1$/m,
      )
    })

    it('member join, read-only on the member', async () => {
      await refused(
        join('host', 'member-readonly'),
        /in context "member-readonly": update clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer; patch, create deployments\.apps kubesphere-system\/cluster-agent$/m,
      )
    })

    for (const [side, host, member, missing] of [
      [
        'host',
        'host-readonly',
        'member',
        /in context "host-readonly": delete clusters\.cluster\.kubesphere\.io member1$/m,
      ],
      [
        'member',
        'host',
        'member-readonly',
        /in context "member-readonly": delete deployments\.apps kubesphere-system\/cluster-agent; update clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer$/m,
      ],
    ] as const) {
      it(`member leave, read-only on the ${side}`, async () => {
        const standIn = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', 'member').start()
        try {
          const joined = await run([...join('host', 'member'), '--wait', '--timeout', '60s'])
          assert.equal(joined.exitCode, 0, joined.stderr)
        } finally {
          await standIn.stop()
        }
        await refused(
          ['member', 'leave', 'member1', '--host-context', host, '--member-context', member, '--yes'],
          missing,
        )
      })
    }
  })
})
