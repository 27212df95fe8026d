import assert from 'node:assert/strict'

import type {KubeSphereInfo} from '../../src/kubesphere/detect.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {bothClusters, run} from './cluster-state.js'
import {testBed} from './hooks.js'

/**
 * Item 9 on real API servers, seeded from KubeSphere 3.4.1's published objects: the ks-installer
 * ClusterConfiguration is deleted while its CRD is still served and the ks-installer Deployment and
 * kubesphere-config stay. ksctl must call it 3.x, say what is missing, and change nothing.
 */
describe('KubeSphere 3.4 without its ClusterConfiguration, real apiservers', function () {
  this.timeout(120_000)

  before(async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-host')
    await resetCluster(testBed().kubeconfigPath, 'member', 'ks34-none')
    await adminApis(testBed().kubeconfigPath, 'host').custom.deleteNamespacedCustomObject({
      group: 'installer.kubesphere.io',
      version: 'v1alpha1',
      plural: 'clusterconfigurations',
      namespace: 'kubesphere-system',
      name: 'ks-installer',
    })
  })

  it('info reports 3.x, what is missing, and the signs it was told from', async () => {
    const text = await run(['info', '--context', 'host'])
    assert.equal(text.exitCode, 0, text.stderr)
    assert.match(text.stdout, /^KubeSphere: +v3\.4\.1 \(3\.x, ks-installer\)$/m)
    assert.match(
      text.stdout,
      /^Incomplete: +KubeSphere 3\.x without its ks-installer ClusterConfiguration kubesphere-system\/ks-installer \(its CRD is still served; signs of 3\.x: deployment kubesphere-system\/ks-installer, kubesphere-config has the 3\.x layout \(authentication\.jwtSecret\), ks-apiserver v3\.4\.1\)/m,
    )
    const json = await run(['info', '--context', 'host', '--json'])
    const info = JSON.parse(json.stdout) as KubeSphereInfo
    assert.equal(info.edition, '3.x')
    assert.equal(info.role, 'host')
  })

  for (const [command, args] of [
    ['host init', ['host', 'init', '--context', 'host']],
    ['proxy set-address', ['proxy', 'set-address', 'http://127.0.0.1:30721', '--context', 'host']],
    [
      'member join',
      ['member', 'join', 'member1', '--host-context', 'host', '--member-context', 'member', '--apply'],
    ],
    [
      'member leave',
      ['member', 'leave', 'member1', '--host-context', 'host', '--member-context', 'member', '--yes'],
    ],
  ] as const) {
    it(`${command} refuses with what is missing, and changes nothing`, async () => {
      const before = await bothClusters()
      const outcome = await run([...args])
      assert.equal(outcome.exitCode, 1, outcome.stderr)
      assert.match(
        outcome.stderr,
        /^error: context "host": KubeSphere 3\.x without its ks-installer ClusterConfiguration .*; nothing was changed$/m,
      )
      assert.match(outcome.stderr, /→ recreate it with the settings this cluster has/)
      assert.doesNotMatch(outcome.stdout + outcome.stderr, /4\.x/)
      assert.deepEqual(await bothClusters(), before)
    })
  }
})
