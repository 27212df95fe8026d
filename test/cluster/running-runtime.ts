import {ClusterClients} from '../../src/k8s/clients.js'
import type {FixtureName} from '../../src/kubesphere-standin/fixtures.js'
import type {StandInLoop} from '../../src/kubesphere-standin/loop.js'
import {startKubeSphereStandIn} from '../../src/kubesphere-standin/stand-in.js'
import {startKsctl, until, type RunningKsctl} from '../helpers/ksctl-running.js'
import type {RunningPod} from '../helpers/pod-runner.js'
import {testBed} from './hooks.js'
import {freeClusterPorts, freePort} from '../testbed/http.js'
import {resetCluster} from '../testbed/seed.js'
import {pointTowerServiceAt, removeKsctlAgentClusterObjects} from './ksctl-runtime-parts.js'

/**
 * ksctl's proxy in Kubernetes mode against the host, in the role of the host's ksctl-tower-proxy Deployment:
 * agents at `listen`, the front end at `frontEnd`, the Clusters' own ports from `clusterPorts` (a --cluster-ports
 * value). Resolves once it has started; if it does not, it is killed and the error carries its output.
 */
export async function startProxyOnHost(
  ports: {listen: number; frontEnd: number; clusterPorts: string},
  extraArgs: string[] = [],
): Promise<RunningKsctl> {
  const proxy = startKsctl([
    ...['tower', 'proxy', '--kubeconfig', testBed().kubeconfigPath, '--context', 'host', '--resync', '300ms'],
    ...[
      '--listen',
      `127.0.0.1:${String(ports.listen)}`,
      '--front-end',
      `127.0.0.1:${String(ports.frontEnd)}`,
    ],
    ...['--cluster-ports', ports.clusterPorts],
    ...extraArgs,
  ])
  try {
    await until(() => proxy.logged('tower proxy started').length === 1, 'the proxy', {output: proxy.output})
  } catch (error) {
    proxy.process.kill('SIGKILL')
    await proxy.process
    throw error
  }
  return proxy
}

/**
 * What a test of ksctl's runtime leaves running: the proxy, the agent's pod, a stand-in, and undo steps (routes).
 * `stop()`, after each test, ends them all, the agent first and the undo steps last added first, and removes the
 * cluster-scoped objects of ksctl's agent, which resetting the member leaves.
 */
export class RunningRuntime {
  proxy: RunningKsctl | undefined
  agent: RunningPod | undefined
  standIn: StandInLoop | undefined
  readonly cleanups: (() => Promise<unknown>)[] = []

  async stop(): Promise<void> {
    await this.agent?.stop(5)
    this.agent = undefined
    await this.standIn?.stop()
    this.standIn = undefined
    this.proxy?.process.kill('SIGKILL')
    await this.proxy?.process
    this.proxy = undefined
    for (const cleanup of this.cleanups.splice(0).reverse()) await cleanup().catch(() => undefined)
    await removeKsctlAgentClusterObjects()
  }
}

/**
 * A host and a member as `ksctl proxy install` leaves a host: both reset to their fixtures, the host's published
 * proxy address `SCHEME://127.0.0.1:PORT` where ksctl's proxy listens, the tower Service pointed at it, the proxy
 * started (into `running`), and the stand-in for KubeSphere's controllers, which reaches the member at the server
 * the issued kubeconfig names (routed by routeClusterService). Returns the proxy's agent port.
 */
export async function startKsctlRuntime(
  running: RunningRuntime,
  fixtures: {host: FixtureName; member: FixtureName; scheme: 'http' | 'https'},
): Promise<{listenPort: number; clients: ClusterClients}> {
  const kubeconfig = testBed().kubeconfigPath
  const [listenPort, frontEndPort] = [await freePort(), await freePort()]
  await resetCluster(kubeconfig, 'host', fixtures.host, {
    proxyPublishAddress: `${fixtures.scheme}://127.0.0.1:${String(listenPort)}`,
  })
  await resetCluster(kubeconfig, 'member', fixtures.member)
  await pointTowerServiceAt('ksctl')
  running.proxy = await startProxyOnHost({
    listen: listenPort,
    frontEnd: frontEndPort,
    clusterPorts: (await freeClusterPorts(2)).flag,
  })
  const clients = ClusterClients.load({kubeconfig})
  running.standIn = startKubeSphereStandIn({
    host: clients.forContext('host'),
    member: clients.forContext('member'),
    memberServer: () => undefined,
    intervalMs: 100,
  })
  return {listenPort, clients}
}
