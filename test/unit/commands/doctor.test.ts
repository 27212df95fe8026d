import assert from 'node:assert/strict'
import {createServer, type AddressInfo, type Socket} from 'node:net'

import Doctor from '../../../commands/doctor.js'
import MemberJoin from '../../../commands/member/join.js'
import {renderKsctlAgentManifest} from '../../../src/kubesphere/agent-manifest.js'
import {ksctlProxyAddress} from '../../../src/kubesphere/agent-runtime.js'
import type {DoctorReport} from '../../../src/kubesphere/doctor.js'
import {restPath} from '../../fixtures/kubesphere/rest-path.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {KubeSphereStandIn} from '../../helpers/kubesphere-standin.js'
import {runCommand} from '../../helpers/run-command.js'
import {CapturedLog, startProxy, type ProxyHarness} from '../tower/harness.js'

const clusterPath = '/apis/cluster.kubesphere.io/v1alpha1/clusters/member1'
const agentPath = '/apis/apps/v1/namespaces/kubesphere-system/deployments/cluster-agent'
/** The host kube-apiserver's service proxy to the member's mc-NAME Service, where doctor asks for /version. */
const tunnelPath = '/api/v1/namespaces/kubesphere-system/services/https:mc-member1:kubernetes/proxy/version'

describe('ksctl doctor', () => {
  let clusters: FakeClusters
  let standIn: KubeSphereStandIn
  let proxy: ProxyHarness
  let proxyAddress: string

  beforeEach(async () => {
    clusters = await startFakeClusters()
    // ksctl's own proxy: the proxy address check must see an agent's upgrade refused as a tower proxy does.
    proxy = await startProxy(new CapturedLog(), [])
    proxyAddress = `http://127.0.0.1:${proxy.proxy.agentPort}`
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
    // What Tower's front end answers through the service proxy: the member's /version, via the agent.
    clusters.host.put(tunnelPath, {metadata: {name: 'version'}, gitVersion: 'v1.35.4'})
  })

  afterEach(async () => {
    await standIn.stop()
    await proxy.proxy.stop()
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
      new RegExp(
        `^ok {4}proxy address: ${proxyAddress} answers as a tower proxy: ksctl's tower proxy \\(an agent without a token is refused\\)$`,
        'm',
      ),
    )
    assert.match(
      stdout,
      /^ok {4}tunnel: a request through the proxy reached the member's kube-apiserver \(v1\.35\.4\) in \d+ ms, through the host kube-apiserver's service proxy to kubesphere-system\/mc-member1$/m,
    )
    assert.match(stdout, /^cluster "member1" is healthy$/m)
  })

  it('says that the member was not checked without --member-context, and does not call it healthy', async () => {
    const {stdout, exitCode, result} = await doctor()
    assert.equal(exitCode, 0, stdout)
    assert.equal(result?.healthy, false)
    const skipped = result?.findings.find((finding) => finding.check === 'member')
    assert.equal(skipped?.status, 'skipped')
    assert.match(skipped?.message ?? '', /the member's checks were skipped \(no --member-context\)/)
    assert.match(stdout, /^skip {2}member: the member's checks were skipped/m)
    const summary = 'cluster "member1": no check failed, but it is not proven healthy: member (skipped)'
    assert.equal(result?.summary, summary)
    assert.equal(stdout.trimEnd().split('\n').at(-1), summary)
    assert.ok(!stdout.includes('is healthy'))
  })

  it('warns when something else than a tower proxy answers at the proxy address (a TCP connect proves nothing)', async () => {
    const accepted = new Set<Socket>()
    const impostor = createServer((socket) => {
      accepted.add(socket)
      socket.end()
    })
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve))
    try {
      const address = `http://127.0.0.1:${(impostor.address() as AddressInfo).port}`
      seedFake(clusters.host, 'ks34-host', {proxyPublishAddress: address})
      const {result, exitCode} = await doctor('--member-context', 'member')
      assert.equal(exitCode, 0)
      const finding = result?.findings.find((f) => f.check === 'proxy address')
      assert.equal(finding?.status, 'warn')
      assert.match(finding?.message ?? '', /answers, but not as a tower proxy/)
      assert.equal(result?.healthy, false)
      assert.match(
        result?.summary ?? '',
        /not proven healthy: proxy address \(warning\), agent proxy address \(warning\)/,
      )
    } finally {
      for (const socket of accepted) socket.destroy()
      await new Promise((resolve) => impostor.close(resolve))
    }
  })

  it('warns, naming what it could not check, when the tunnel cannot be reached from here', async () => {
    clusters.host.delete(tunnelPath)
    clusters.host.failNext('GET', /\/proxy\/version$/, 503, 'no endpoints available for service "mc-member1"')
    const {result, stdout, exitCode} = await doctor('--member-context', 'member')
    assert.equal(exitCode, 0, stdout)
    const finding = result?.findings.find((f) => f.check === 'tunnel')
    assert.equal(finding?.status, 'warn')
    assert.equal(
      finding?.message,
      "the tunnel to the member could not be checked from here, so AgentAvailable True is the proxy's word only: " +
        'the Cluster has no issued kubeconfig (spec.connection.kubeconfig); ' +
        'the host kube-apiserver\'s service proxy to kubesphere-system/mc-member1: HTTP 503: no endpoints available for service "mc-member1"',
    )
    assert.match(finding?.fix ?? '', /--tunnel-server https:\/\/127\.0\.0\.1:16443$/)
    assert.equal(
      result?.summary,
      'cluster "member1": no check failed, but it is not proven healthy: tunnel (warning)',
    )
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

  it('names the context in every kubectl command it suggests, with or without --member-context', async () => {
    clusters.member.delete(agentPath)
    const cluster = clusters.host.get(clusterPath)!
    const conditions = (cluster.status as {conditions: {type: string; status: string}[]}).conditions.map(
      (c) => ({...c, status: 'False'}),
    )
    clusters.host.put(clusterPath, {
      ...cluster,
      spec: {...(cluster.spec as object), joinFederation: false},
      status: {...(cluster.status as object), conditions},
    })
    const fixes: string[] = []
    for (const argv of [['--member-context', 'member'], []]) {
      const {result} = await doctor(...argv)
      fixes.push(
        ...(result?.findings.flatMap((finding) => (finding.fix === undefined ? [] : [finding.fix])) ?? []),
      )
    }
    const commands = fixes.flatMap((fix) => fix.match(/kubectl [^;]*/g) ?? [])
    assert.ok(commands.length >= 6, commands.join('\n'))
    for (const command of commands) assert.match(command, /^kubectl --context \S+ /, command)
    assert.ok(
      commands.includes('kubectl --context member -n kubesphere-system logs deployment/cluster-agent') &&
        commands.includes(
          'kubectl --context <member-context> -n kubesphere-system logs deployment/cluster-agent',
        ),
      commands.join('\n'),
    )
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

  describe("a member that runs ksctl's agent", () => {
    /** Replaces Tower's agent with ksctl's, as `member join --runtime ksctl` leaves it, with `token` in its Secret. */
    const runKsctlAgent = (token: string) => {
      clusters.member.delete(agentPath)
      const objects = renderKsctlAgentManifest({
        clusterName: 'member1',
        token,
        proxyAddress: ksctlProxyAddress(proxyAddress, 'proxyPublishAddress'),
        trust: {pin: `sha256:${'A'.repeat(43)}=`},
      })
      for (const object of objects) {
        if (object.kind === 'Namespace') continue
        // Not available: its pods do not run.
        clusters.member.put(restPath(object), object.kind === 'Deployment' ? {...object, status: {}} : object)
      }
    }
    const clusterToken = () =>
      (clusters.host.get(clusterPath)?.spec as {connection: {token: string}}).connection.token

    it('names its Deployment in the agent check, the logs hint and the restart hint; its token is read from its Secret', async () => {
      runKsctlAgent(clusterToken())
      // The service proxy answers, but not with the member's /version: a broken tunnel.
      clusters.host.put(tunnelPath, {metadata: {name: 'version'}})
      const {stdout, exitCode, result} = await doctor('--member-context', 'member')
      assert.equal(exitCode, 1, stdout)
      assert.deepEqual(failed(result), ['agent deployment', 'tunnel'], 'token, name and address agree')
      const finding = (check: string) => result?.findings.find((f) => f.check === check)
      assert.equal(
        finding('agent deployment')?.message,
        'deployment kubesphere-system/ksctl-tower-agent is not available',
      )
      assert.equal(
        finding('agent deployment')?.fix,
        'kubectl --context member -n kubesphere-system describe deployment ksctl-tower-agent; ' +
          'kubectl --context member -n kubesphere-system logs deployment/ksctl-tower-agent',
      )
      assert.equal(
        finding('tunnel')?.fix,
        'check the agent: kubectl --context member -n kubesphere-system logs deployment/ksctl-tower-agent; ' +
          'restart it: kubectl --context member -n kubesphere-system rollout restart deployment/ksctl-tower-agent',
      )
      assert.ok(!stdout.includes('cluster-agent'))
      assert.ok(!stdout.includes(clusterToken()))
    })

    it("finds a token Secret that holds another cluster's token, without printing either", async () => {
      const other = 'f'.repeat(64)
      runKsctlAgent(other)
      const {stdout, exitCode, result} = await doctor('--member-context', 'member', '--json')
      assert.equal(exitCode, 1)
      assert.deepEqual(failed(result), ['agent token', 'agent deployment'])
      for (const token of [clusterToken(), other, Buffer.from(other).toString('base64')]) {
        assert.ok(!stdout.includes(token))
      }
    })
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

  it('rejects a --tunnel-server that is not https://host:port before asking any cluster', async () => {
    const requests = clusters.host.requests.length
    const {stderr, exitCode} = await doctor('--tunnel-server', 'http://127.0.0.1:16443/x')
    assert.equal(exitCode, 2)
    assert.match(stderr, /--tunnel-server "http:\/\/127\.0\.0\.1:16443\/x" must be https:\/\/host:port/)
    assert.equal(clusters.host.requests.length, requests)
  })
})
