import assert from 'node:assert/strict'

import HostInit from '../../../commands/host/init.js'
import Info from '../../../commands/info.js'
import MemberJoin from '../../../commands/member/join.js'
import ProxySetAddress from '../../../commands/proxy/set-address.js'
import type {ErrorJson} from '../../../src/cli/base-command.js'
import type {KubeSphereInfo} from '../../../src/kubesphere/detect.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {runCommand} from '../../helpers/run-command.js'

const installerPath =
  '/apis/installer.kubesphere.io/v1alpha1/namespaces/kubesphere-system/clusterconfigurations/ks-installer'

/** Item 9: the edition is told from what an install leaves behind, not from the one object that is missing. */
describe('KubeSphere 3.x whose ks-installer ClusterConfiguration was deleted', () => {
  let clusters: FakeClusters

  beforeEach(async () => {
    clusters = await startFakeClusters()
    seedFake(clusters.host, 'ks34-host')
    seedFake(clusters.member, 'ks34-none')
    clusters.host.delete(installerPath)
  })

  afterEach(() => clusters.stop())

  const run = (command: Parameters<typeof runCommand>[0], ...argv: string[]) =>
    runCommand<KubeSphereInfo>(command, [...argv, '--kubeconfig', clusters.kubeconfigPath])

  it('is reported as 3.x with what is missing, from its ks-installer, config layout and images', async () => {
    const {exitCode, stdout, result} = await run(Info, '--context', 'host')
    assert.equal(exitCode, 0)
    assert.equal(result?.edition, '3.x')
    assert.equal(result?.version, 'v3.4.1')
    assert.equal(result?.role, 'host')
    assert.deepEqual(result?.incomplete?.signs, [
      'deployment kubesphere-system/ks-installer',
      'kubesphere-config has the 3.x layout (authentication.jwtSecret)',
      'ks-apiserver v3.4.1',
    ])
    assert.match(stdout, /^KubeSphere: +v3\.4\.1 \(3\.x, ks-installer\)$/m)
    assert.match(
      stdout,
      /^Incomplete: +KubeSphere 3\.x without its ks-installer ClusterConfiguration kubesphere-system\/ks-installer \(its CRD is still served;/m,
    )
    assert.match(stdout, /releases\/download\/v3\.4\.1\/cluster-configuration\.yaml/)
  })

  for (const [what, command, argv] of [
    ['host init', HostInit, ['--context', 'host']],
    ['proxy set-address', ProxySetAddress, ['http://127.0.0.1:30721', '--context', 'host']],
    [
      'member join',
      MemberJoin,
      ['member1', '--host-context', 'host', '--member-context', 'member', '--apply'],
    ],
  ] as const) {
    it(`${what} refuses, saying what is missing, and changes nothing`, async () => {
      const {exitCode, stdout} = await run(command, ...argv, '--json')
      assert.equal(exitCode, 1)
      const {error} = JSON.parse(stdout) as ErrorJson
      assert.equal(error.code, 'PRECONDITION_FAILED')
      assert.match(
        error.message,
        /^context "host": KubeSphere 3\.x without its ks-installer ClusterConfiguration .*; nothing was changed$/,
      )
      assert.match(error.suggestions[0] ?? '', /^recreate it with the settings this cluster has/)
      assert.deepEqual([...clusters.host.writes(), ...clusters.member.writes()], [])
    })
  }

  it('a 4.1 host is still 4.x and complete, ks-installer leftovers or not', async () => {
    const fresh = await startFakeClusters()
    try {
      seedFake(fresh.host, 'ks41-host')
      fresh.host.put('/apis/apps/v1/namespaces/kubesphere-system/deployments/ks-installer', {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: {name: 'ks-installer', namespace: 'kubesphere-system'},
        spec: {
          template: {spec: {containers: [{name: 'installer', image: 'kubesphere/ks-installer:v3.4.1'}]}},
        },
      })
      const {result} = await runCommand<KubeSphereInfo>(Info, [
        '--context',
        'host',
        '--kubeconfig',
        fresh.kubeconfigPath,
      ])
      assert.equal(result?.edition, '4.x')
      assert.equal(result?.incomplete, undefined)
    } finally {
      await fresh.stop()
    }
  })
})
