import assert from 'node:assert/strict'
import {createServer, type Server} from 'node:net'
import type {AddressInfo} from 'node:net'

import Doctor from '../../../commands/doctor.js'
import MemberJoin from '../../../commands/member/join.js'
import type {DoctorReport} from '../../../src/kubesphere/doctor.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {KubeSphereStandIn} from '../../helpers/kubesphere-standin.js'
import {runCommand} from '../../helpers/run-command.js'

const clusterPath = '/apis/cluster.kubesphere.io/v1alpha1/clusters/member1'
const agentPath = '/apis/apps/v1/namespaces/kubesphere-system/deployments/cluster-agent'

describe('ksctl doctor', () => {
  let clusters: FakeClusters
  let standIn: KubeSphereStandIn
  let proxy: Server
  let proxyAddress: string

  beforeEach(async () => {
    clusters = await startFakeClusters()
    proxy = createServer((socket) => socket.end())
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    proxyAddress = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
    seedFake(clusters.host, 'ks34-host', {proxyPublishAddress: proxyAddress})
    seedFake(clusters.member, 'ks34-none')
    standIn = new KubeSphereStandIn(clusters.kubeconfigPath, 'host', 'member').start()
    const joined = await runCommand(MemberJoin, [
      'member1',
      '--kubeconfig',
      clusters.kubeconfigPath,
      '--host-context',
      'host',
      '--member-context',
      'member',
      '--apply',
      '--wait',
      '--timeout',
      '20s',
    ])
    assert.equal(joined.exitCode, 0, joined.stderr)
    await standIn.stop()
  })

  afterEach(async () => {
    await standIn.stop()
    proxy.close()
    await clusters.stop()
  })

  const doctor = (...argv: string[]) =>
    runCommand<DoctorReport>(Doctor, [
      'member1',
      '--kubeconfig',
      clusters.kubeconfigPath,
      '--host-context',
      'host',
      ...argv,
    ])
  const failed = (report: DoctorReport | undefined) =>
    report?.findings.filter((f) => f.status === 'fail').map((f) => f.check)

  it('reports a joined member as healthy, exit 0', async () => {
    const {stdout, exitCode, result} = await doctor('--member-context', 'member')
    assert.equal(exitCode, 0, stdout)
    assert.equal(result?.healthy, true)
    assert.match(
      stdout,
      new RegExp(`^ok {4}proxy address: ${proxyAddress} accepts connections from here$`, 'm'),
    )
    assert.match(stdout, /^cluster "member1" is healthy$/m)
  })

  it("finds an agent whose token differs from the Cluster's, without printing either", async () => {
    const agent = clusters.member.get(agentPath)!
    const spec = agent.spec as {template: {spec: {containers: {command: string[]}[]}}}
    const command = spec.template.spec.containers[0]!.command
    const oldToken = command.find((arg) => arg.startsWith('--token='))!.slice('--token='.length)
    spec.template.spec.containers[0]!.command = command.map((arg) =>
      arg.startsWith('--token=') ? `--token=${'0'.repeat(64)}` : arg,
    )
    clusters.member.put(agentPath, agent)
    const {stdout, exitCode, result} = await doctor('--member-context', 'member')
    assert.equal(exitCode, 1)
    assert.deepEqual(failed(result), ['agent token'])
    assert.match(
      stdout,
      /FAIL {2}agent token: the agent's token \(sha256:[0-9a-f]{8}\) differs from the Cluster's \(sha256:[0-9a-f]{8}\)/,
    )
    assert.match(stdout, /fix: ksctl member join member1 --host-context host --member-context member --apply/)
    assert.ok(!stdout.includes(oldToken) && !stdout.includes('0'.repeat(64)))
  })

  it('finds a Cluster that is not a proxy cluster ("Unauthorized agent")', async () => {
    const cluster = clusters.host.get(clusterPath)!
    clusters.host.put(clusterPath, {...cluster, spec: {...(cluster.spec as object), joinFederation: false}})
    const {result, exitCode} = await doctor()
    assert.equal(exitCode, 1)
    assert.deepEqual(failed(result), ['cluster'])
  })

  it('finds a jwtSecret mismatch and a member whose role was changed back', async () => {
    const path =
      '/apis/installer.kubesphere.io/v1alpha1/namespaces/kubesphere-system/clusterconfigurations/ks-installer'
    const installer = clusters.member.get(path)!
    clusters.member.put(path, {
      ...installer,
      spec: {...(installer.spec as object), multicluster: {clusterRole: 'none'}},
    })
    const configPath = '/api/v1/namespaces/kubesphere-system/configmaps/kubesphere-config'
    const config = clusters.member.get(configPath)!
    clusters.member.put(configPath, {
      ...config,
      data: {'kubesphere.yaml': 'authentication:\n  jwtSecret: aDifferentSecretOf32Characters00\n'},
    })
    const {result, exitCode} = await doctor('--member-context', 'member')
    assert.equal(exitCode, 1)
    assert.deepEqual(failed(result), ['member role', 'jwtSecret'])
  })

  it('finds a missing agent and a stale Ready condition', async () => {
    clusters.member.delete(agentPath)
    const cluster = clusters.host.get(clusterPath)!
    const conditions = (cluster.status as {conditions: {type: string; status: string}[]}).conditions.map(
      (c) =>
        c.type === 'AgentAvailable'
          ? {...c, status: 'False', message: 'Agent has not connected to proxy.'}
          : c,
    )
    clusters.host.put(clusterPath, {...cluster, status: {...(cluster.status as object), conditions}})
    const {result, exitCode} = await doctor('--member-context', 'member')
    assert.equal(exitCode, 1)
    assert.deepEqual(failed(result), ['agent', 'condition AgentAvailable', 'condition Ready'])
    assert.match(result?.findings.find((f) => f.check === 'condition Ready')?.message ?? '', /stale/)
  })

  it('rejects an invalid name before asking any cluster', async () => {
    const {stderr, exitCode} = await runCommand(Doctor, [
      'Bad_Name',
      '--kubeconfig',
      clusters.kubeconfigPath,
      '--host-context',
      'host',
    ])
    assert.equal(exitCode, 2)
    assert.match(stderr, /NAME "Bad_Name" is not valid/)
  })
})
