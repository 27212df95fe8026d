import assert from 'node:assert/strict'
import {connect, createServer, type AddressInfo, type Server, type Socket} from 'node:net'

import {KubeConfig} from '@kubernetes/client-node'
import {dump} from 'js-yaml'

import {KubeSphereStandIn} from '../helpers/kubesphere-standin.js'
import {serveClusterWebhook, type ClusterWebhook} from '../testbed/admission.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {bothClusters, run} from './cluster-state.js'
import {testBed} from './hooks.js'

const NAMESPACE = 'kubesphere-system'
const clusterGvr = {group: 'cluster.kubesphere.io', version: 'v1alpha1', plural: 'clusters'}

/**
 * The member as the Cluster's kubeconfig reaches it: through the tower proxy and the agent. Here a TCP
 * relay to the member's API server that forwards only while it is up and the member runs the agent
 * Deployment, so deleting the agent cuts the path, as it does for KubeSphere.
 */
class AgentPath {
  up = true
  private readonly sockets = new Set<Socket>()
  private readonly server: Server

  constructor(private readonly target: URL) {
    this.server = createServer((socket) => void this.forward(socket))
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    return `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private async forward(socket: Socket): Promise<void> {
    this.sockets.add(socket)
    socket.once('close', () => this.sockets.delete(socket))
    const agent = await adminApis(testBed().kubeconfigPath, 'member')
      .apps.readNamespacedDeployment({name: 'cluster-agent', namespace: NAMESPACE})
      .catch(() => undefined)
    if (!this.up || agent === undefined) {
      socket.destroy()
      return
    }
    const upstream = connect(Number(this.target.port), this.target.hostname)
    this.sockets.add(upstream)
    upstream.once('close', () => this.sockets.delete(upstream))
    socket.pipe(upstream).pipe(socket)
    const end = () => {
      socket.destroy()
      upstream.destroy()
    }
    socket.once('error', end)
    upstream.once('error', end)
  }
}

/** A kubeconfig for the member's API server at `server`, with the test bed's admin credentials. */
function memberKubeconfig(server: string): string {
  const config = new KubeConfig()
  config.loadFromFile(testBed().kubeconfigPath)
  const context = config.getContextObject('member')
  const cluster = config.getCluster(context?.cluster ?? '')
  const user = config.getUser(context?.user ?? '')
  return dump({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{name: 'member', cluster: {server, 'certificate-authority-data': cluster?.caData}}],
    users: [
      {name: 'admin', user: {'client-certificate-data': user?.certData, 'client-key-data': user?.keyData}},
    ],
    contexts: [{name: 'member', context: {cluster: 'member', user: 'admin'}}],
    'current-context': 'member',
  })
}

/**
 * Item 32 on real API servers, with KubeSphere 3.4's Cluster webhook served by this process: once a
 * Cluster has joined, the webhook refuses every update while the member cannot be reached through the
 * agent. The re-run `doctor` recommends must then write no Cluster; a needed update and a leave are refused
 * before any change, saying why; with the agent back both go through, and leave waits for KubeSphere to
 * finalize the Cluster before it removes the agent.
 */
describe("KubeSphere 3.4's Cluster webhook, real apiservers", function () {
  this.timeout(180_000)
  let path: AgentPath
  let webhook: ClusterWebhook | undefined
  let standIn: KubeSphereStandIn | undefined
  const join = [
    'member',
    'join',
    'member1',
    '--host-context',
    'host',
    '--member-context',
    'member',
    '--apply',
  ]
  const leave = [
    'member',
    'leave',
    'member1',
    '--host-context',
    'host',
    '--member-context',
    'member',
    '--yes',
  ]

  before(async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-host')
    await resetCluster(testBed().kubeconfigPath, 'member', 'ks34-none')
    path = new AgentPath(new URL(testBed().clusters.member.url))
    const kubeconfig = memberKubeconfig(await path.start())
    webhook = await serveClusterWebhook(testBed().kubeconfigPath, 'host')
    standIn = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', 'member', {
      clusterKubeconfig: kubeconfig,
      finalizer: true,
    })
  })

  after(async () => {
    await standIn?.stop()
    await webhook?.stop()
    await path.stop()
  })

  const cluster = () =>
    adminApis(testBed().kubeconfigPath, 'host')
      .custom.getClusterCustomObject({...clusterGvr, name: 'member1'})
      .then(
        (found) => found as {metadata: {resourceVersion: string; labels?: Record<string, string>}},
        () => undefined,
      )

  it('joins; the webhook admits the updates of a Cluster that has not joined yet', async () => {
    standIn?.start()
    const joined = await run([...join, '--wait', '--timeout', '60s'])
    assert.equal(joined.exitCode, 0, joined.stderr)
    await standIn?.stop()
    assert.ok(webhook?.calls.some((call) => call.name === 'member1' && call.allowed))
  })

  it('with the agent down, a re-run changes nothing and sends no update of the Cluster', async () => {
    path.up = false
    const before = await bothClusters()
    const calls = webhook?.calls.length ?? 0
    const rerun = await run(join)
    assert.equal(rerun.exitCode, 0, rerun.stderr)
    assert.deepEqual(
      webhook?.calls.slice(calls).filter((call) => call.name === 'member1'),
      [],
      'no update, not even a dry run, reached the webhook',
    )
    assert.deepEqual(await bothClusters(), before)
  })

  it('with the agent down, a needed update is refused before any change, saying why and what to do', async () => {
    const before = await bothClusters()
    const refused = await run([...join, '--label', 'team=platform'])
    assert.equal(refused.exitCode, 1, refused.stderr)
    assert.match(
      refused.stderr,
      /^error: the admission webhook "validating-cluster\.kubesphere\.io" of context "host" refuses the update of cluster "member1": .*; nothing was changed$/m,
    )
    assert.match(
      refused.stderr,
      /→ bring the agent back first: kubectl --context member -n kubesphere-system get deployment cluster-agent/,
    )
    assert.deepEqual(await bothClusters(), before)
  })

  it('with the agent down, leave is refused before any change: KubeSphere could not finalize the Cluster', async () => {
    const before = await bothClusters()
    const refused = await run(leave)
    assert.equal(refused.exitCode, 1, refused.stderr)
    assert.match(
      refused.stderr,
      /^error: the admission webhook "validating-cluster\.kubesphere\.io" of context "host" refuses the update that removes the finalizer of cluster "member1" \(finalizer\.cluster\.kubesphere\.io\): .*; KubeSphere's controller removes it/m,
    )
    assert.deepEqual(await bothClusters(), before)
  })

  it('with the agent back, the update goes through', async () => {
    path.up = true
    const updated = await run([...join, '--label', 'team=platform'])
    assert.equal(updated.exitCode, 0, updated.stderr)
    assert.equal((await cluster())?.metadata.labels?.team, 'platform')
  })

  it('leave deletes the Cluster first, and the agent only once KubeSphere has let the Cluster go', async () => {
    standIn?.start()
    const left = await run(leave)
    await standIn?.stop()
    assert.equal(left.exitCode, 0, left.stderr)
    assert.equal(await cluster(), undefined, 'KubeSphere finished deleting the Cluster')
    await assert.rejects(
      adminApis(testBed().kubeconfigPath, 'member').apps.readNamespacedDeployment({
        name: 'cluster-agent',
        namespace: NAMESPACE,
      }),
    )
  })
})
