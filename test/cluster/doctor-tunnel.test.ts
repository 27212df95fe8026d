import assert from 'node:assert/strict'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {PatchStrategy, setHeaderOptions} from '@kubernetes/client-node'

import {ClusterClients} from '../../src/k8s/clients.js'
import {ClusterResource} from '../../src/k8s/resources.js'
import {conditionOf, type KubeSphereCluster} from '../../src/kubesphere/cluster-object.js'
import type {DoctorReport} from '../../src/kubesphere/doctor.js'
import {ksctl} from '../helpers/ksctl-process.js'
import {startKsctl, until, type RunningKsctl} from '../helpers/ksctl-running.js'
import {leastPrivilegeAgent} from '../helpers/member-rbac.js'
import {freeClusterPorts, freePort} from '../testbed/http.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {testBed} from './hooks.js'

/**
 * Issue 10, item 27: an agent that hangs keeps AgentAvailable True (the proxy clears it only when the connection
 * closes), so doctor proves the tunnel with a request to the member through the proxy. ksctl's own proxy and
 * agent run as processes against the real apiservers; the agent is stopped with SIGSTOP, as a hung or
 * partitioned one would be.
 */
describe('doctor proves the tunnel through the real proxy and agent', function () {
  this.timeout(180_000)
  const running: RunningKsctl[] = []
  let dir: string | undefined
  let removeAgentAccount: (() => Promise<void>) | undefined

  after(async () => {
    for (const {process: child} of running) child.kill('SIGKILL')
    await Promise.allSettled(running.map(({process: child}) => child))
    await removeAgentAccount?.()
    if (dir !== undefined) await rm(dir, {recursive: true, force: true})
  })

  const start = (args: string[]): RunningKsctl => {
    const started = startKsctl(args)
    running.push(started)
    return started
  }

  it('reports a stopped agent as a broken tunnel within its time-out while AgentAvailable is still True, and healthy once it runs again', async () => {
    const kubeconfig = testBed().kubeconfigPath
    const [listenPort, frontEndPort] = [await freePort(), await freePort()]
    await resetCluster(kubeconfig, 'host', 'ks41-host', {
      proxyPublishAddress: `https://127.0.0.1:${String(listenPort)}`,
    })
    await resetCluster(kubeconfig, 'member', 'plain')
    const proxy = start([
      ...['tower', 'proxy', '--kubeconfig', kubeconfig, '--context', 'host', '--resync', '300ms'],
      ...['--listen', `127.0.0.1:${String(listenPort)}`, '--front-end', `127.0.0.1:${String(frontEndPort)}`],
      ...['--cluster-ports', (await freeClusterPorts(2)).flag],
    ])
    await until(() => proxy.output().includes('tower proxy started'), 'the proxy', {output: proxy.output})

    const join = await ksctl([
      ...['member', 'join', 'member1', '--kubeconfig', kubeconfig],
      ...['--host-context', 'host', '--member-context', 'member', '--apply', '--timeout', '30s'],
    ])
    assert.equal(join.exitCode, 0, join.stderr)
    const host = ClusterClients.load({kubeconfig}).forContext('host')
    const readCluster = () => host.findCustomObject<KubeSphereCluster>(ClusterResource, 'member1')
    const token = (await readCluster())?.spec?.connection?.token ?? ''
    dir = await mkdtemp(path.join(os.tmpdir(), 'ksctl-doctor-tunnel-'))
    const ca = await host.findSecret('kubesphere-system', 'ksctl-tower-ca')
    await writeFile(path.join(dir, 'ca.crt'), ca?.data['tls.crt'] ?? '')
    await writeFile(path.join(dir, 'token'), token, {mode: 0o600})
    const leastPrivilege = await leastPrivilegeAgent(
      kubeconfig,
      testBed().clusters.member.url,
      testBed().caCertPem,
    )
    removeAgentAccount = leastPrivilege.remove
    // The agent Deployment's pod, played by a process on this machine.
    const agent = start([
      ...['tower', 'agent', '--name', 'member1', '--token-file', path.join(dir, 'token')],
      ...[
        '--proxy-server',
        `https://127.0.0.1:${String(listenPort)}`,
        '--proxy-ca',
        path.join(dir, 'ca.crt'),
      ],
      // Its service account may only impersonate: doctor's GET /version runs as KubeSphere's identity.
      ...leastPrivilege.flags,
    ])
    const agentAvailable = async () => conditionOf(await readCluster(), 'AgentAvailable')?.status
    await until(async () => (await agentAvailable()) === 'True', 'AgentAvailable True', {
      output: agent.output,
    })
    await playKubernetesAndKubeSphere(kubeconfig)

    const port = ((await readCluster())?.spec?.connection as {kubernetesAPIServerPort: number})
      .kubernetesAPIServerPort
    const doctor = async () => {
      const started = Date.now()
      const outcome = await ksctl([
        ...['doctor', 'member1', '--kubeconfig', kubeconfig, '--host-context', 'host'],
        ...['--member-context', 'member', '--json'],
        // The issued kubeconfig names Service mc-member1's ClusterIP, which only kube-proxy routes; the
        // cluster's front end listens on its port here.
        ...['--tunnel-server', `https://127.0.0.1:${String(port)}`],
      ])
      const report = JSON.parse(outcome.stdout) as DoctorReport
      const tunnel = report.findings.find((finding) => finding.check === 'tunnel')
      return {exitCode: outcome.exitCode, report, tunnel, ms: Date.now() - started}
    }

    const healthy = await doctor()
    assert.equal(healthy.exitCode, 0, JSON.stringify(healthy.report, null, 2))
    assert.equal(healthy.report.summary, 'cluster "member1" is healthy')
    assert.match(healthy.tunnel?.message ?? '', /reached the member's kube-apiserver \(v\d+\.\d+\.\d+/)

    process.kill(agent.process.pid ?? 0, 'SIGSTOP')
    const hung = await doctor()
    assert.equal(hung.exitCode, 1, JSON.stringify(hung.report, null, 2))
    assert.equal(hung.tunnel?.status, 'fail')
    // The proxy itself finds the agent silent within seconds (a PING unanswered) and answers 502 saying so; on a
    // slow machine the doctor's own time-out may come first.
    assert.match(
      hung.tunnel?.message ?? '',
      /^the proxy reports an agent \(AgentAvailable True\), but a request to the member through it failed: (the proxy answered HTTP 502: the agent of cluster member1 is connected but does not answer|no answer within 5s)/,
    )
    assert.deepEqual(
      hung.report.findings.filter((finding) => finding.status === 'fail').map((finding) => finding.check),
      ['tunnel'],
    )
    // Its own time-out, plus starting a process and the other checks; far below the proxy's keepalive deadline.
    assert.ok(hung.ms < 15_000, `doctor took ${String(hung.ms)} ms`)
    assert.equal(await agentAvailable(), 'True', 'the proxy still reports the stopped agent')

    process.kill(agent.process.pid ?? 0, 'SIGCONT')
    const recovered = await doctor()
    assert.equal(recovered.exitCode, 0, JSON.stringify(recovered.report, null, 2))
    assert.equal(recovered.report.summary, 'cluster "member1" is healthy')
  })
})

/** What the member's kubelet and the host's cluster controller would write: the agent's pod runs, and Ready. */
async function playKubernetesAndKubeSphere(kubeconfig: string): Promise<void> {
  await adminApis(kubeconfig, 'member').apps.patchNamespacedDeploymentStatus(
    {
      name: 'cluster-agent',
      namespace: 'kubesphere-system',
      body: {
        status: {
          replicas: 1,
          readyReplicas: 1,
          availableReplicas: 1,
          conditions: [{type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable'}],
        },
      },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  )
  const host = ClusterClients.load({kubeconfig}).forContext('host')
  const cluster = await host.findCustomObject<KubeSphereCluster>(ClusterResource, 'member1')
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
  const conditions = [
    ...(cluster?.status?.conditions ?? []).filter((condition) => condition.type !== 'Ready'),
    {
      type: 'Ready',
      status: 'True',
      reason: 'Ready',
      message: 'Cluster is available now',
      lastUpdateTime: now,
      lastTransitionTime: now,
    },
  ]
  await host.patchCustomObject(ClusterResource, 'member1', {strategy: 'merge', body: {status: {conditions}}})
}
