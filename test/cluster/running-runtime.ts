import type {StandInLoop} from '../../src/kubesphere-standin/loop.js'
import {startKsctl, until, type RunningKsctl} from '../helpers/ksctl-running.js'
import type {RunningPod} from '../helpers/pod-runner.js'
import {testBed} from './hooks.js'
import {removeKsctlAgentClusterObjects} from './ksctl-runtime-parts.js'

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
