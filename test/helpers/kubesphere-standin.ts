import {randomBytes} from 'node:crypto'

import {AppsV1Api, PatchStrategy, setHeaderOptions, type KubeConfig} from '@kubernetes/client-node'

import {ClusterClients} from '../../src/k8s/clients.js'
import type {ClusterClient} from '../../src/k8s/cluster-client.js'
import {ClusterResource} from '../../src/k8s/resources.js'
import {
  conditionOf,
  type ClusterCondition,
  type KubeSphereCluster,
} from '../../src/kubesphere/cluster-object.js'
import {ClusterControllerStandIn, issuedKubeconfig} from '../../src/kubesphere-standin/cluster-controller.js'
import {installerPass} from '../../src/kubesphere-standin/installer.js'
import {StandInLoop} from '../../src/kubesphere-standin/loop.js'

const NAMESPACE = 'kubesphere-system'
const POLL_MS = 50

/**
 * What KubeSphere's controllers would do, for tests (kubesphere.md §1.4, §4.2, §6):
 * - ks-installer on any cluster and the host's cluster controller: the playground's own roles
 *   (src/kubesphere-standin), the controller marking a member Ready once a request to it succeeded;
 * - the tower proxy on the host, for tests that run no proxy: fills an empty token, allocates ports, sets
 *   endpoints and Initialized; marks AgentAvailable once the member runs an agent whose --name and --token match,
 *   and then lets the controller reach the member: directly with the member's own context (the tunnel it stands
 *   for), or with `clusterKubeconfig`, which it also issues into `spec.connection.kubeconfig` as Tower does
 *   (through it KubeSphere's Cluster webhook reaches the member);
 * - the member's kubelet: the agent's Deployment becomes available once it connects.
 * With `finalizer`, the controller's finalizer: put on every proxy Cluster, removed (an UPDATE, like the
 * controller's) once the Cluster is deleted. `stop()` ends it; `pause()` freezes it to test timeouts.
 */
export class KubeSphereStandIn {
  private readonly loop: StandInLoop
  private readonly clients: ClusterClients
  private nextPort = 6000

  constructor(
    kubeconfigPath: string,
    private readonly host: string,
    private readonly member: string | undefined,
    private readonly behaviour: {
      proxy?: boolean
      agentConnects?: boolean
      installer?: boolean
      clusterKubeconfig?: string
      finalizer?: boolean
    } = {},
  ) {
    this.clients = ClusterClients.load({kubeconfig: kubeconfigPath})
    const hostClient = this.clients.forContext(host)
    const memberClient = member === undefined ? undefined : this.clients.forContext(member)
    const controller = new ClusterControllerStandIn(hostClient, {
      route: (cluster) => this.route(cluster, memberClient),
      finalizer: behaviour.finalizer === true,
      requestTimeoutMs: 5000,
    })
    const passes: (() => Promise<void>)[] = []
    if (behaviour.installer !== false) {
      passes.push(() => installerPass(hostClient))
      if (memberClient !== undefined) passes.push(() => installerPass(memberClient))
    }
    if (behaviour.proxy !== false) {
      passes.push(() => this.towerPass(hostClient, memberClient))
      passes.push(() => controller.pass())
    }
    this.loop = new StandInLoop(passes, POLL_MS)
  }

  start(): this {
    this.loop.start()
    return this
  }

  /** Stops reacting, after the pass under way (if any) has finished: nothing writes once this resolves. */
  async stop(): Promise<void> {
    await this.loop.stop()
  }

  pause(paused = true): void {
    this.loop.pause(paused)
  }

  /** How the controller reaches the member: only once the agent is connected, through the "tunnel" played here. */
  private route(cluster: KubeSphereCluster, member: ClusterClient | undefined): KubeConfig | undefined {
    if (member === undefined || conditionOf(cluster, 'AgentAvailable')?.status !== 'True') return undefined
    const issued = cluster.spec?.connection?.kubeconfig
    return issued === undefined || issued === '' ? member.config : issuedKubeconfig(issued)
  }

  private async towerPass(host: ClusterClient, member: ClusterClient | undefined): Promise<void> {
    for (const cluster of await host.listCustomObjects<KubeSphereCluster>(ClusterResource)) {
      if (cluster.spec?.joinFederation !== true || cluster.spec.connection?.type !== 'proxy') continue
      if ((cluster.metadata as {deletionTimestamp?: string}).deletionTimestamp !== undefined) continue
      await this.proxyPass(host, member, cluster)
    }
  }

  private async proxyPass(
    host: ClusterClient,
    member: ClusterClient | undefined,
    cluster: KubeSphereCluster,
  ): Promise<void> {
    const name = cluster.metadata?.name ?? ''
    const connection = cluster.spec?.connection ?? {}
    if (connection.token === undefined || connection.token === '') {
      const port = this.nextPort++
      await host.patchCustomObject(ClusterResource, name, {
        strategy: 'merge',
        body: {
          spec: {
            connection: {
              token: randomBytes(32).toString('hex'),
              kubernetesAPIServerPort: port,
              kubesphereAPIServerPort: port + 10000,
              kubernetesAPIEndpoint: 'https://10.0.0.50:6443',
              kubesphereAPIEndpoint: 'http://10.0.0.50:80',
              ...(this.behaviour.clusterKubeconfig === undefined
                ? {}
                : {kubeconfig: Buffer.from(this.behaviour.clusterKubeconfig).toString('base64')}),
            },
          },
          status: {conditions: withCondition(cluster, 'Initialized', 'True', 'Cluster has been initialized')},
        },
      })
      return
    }
    if (member === undefined || this.behaviour.agentConnects === false) return
    const agent = await member.findDeployment(NAMESPACE, 'cluster-agent')
    const command = agent?.spec?.template.spec?.containers[0]?.command ?? []
    const connected = command.includes(`--name=${name}`) && command.includes(`--token=${connection.token}`)
    const agentStatus = connected ? 'True' : 'False'
    if (conditionOf(cluster, 'AgentAvailable')?.status === agentStatus) return
    if (connected) await markAvailable(member)
    await host.patchCustomObject(ClusterResource, name, {
      strategy: 'merge',
      body: {
        status: {
          conditions: withCondition(
            cluster,
            'AgentAvailable',
            agentStatus,
            connected ? 'Agent has connected to proxy successfully.' : 'Agent has not connected to proxy.',
          ),
        },
      },
    })
  }
}

/** What the kubelet and the deployment controller would report once the agent's pod runs. */
async function markAvailable(member: ClusterClient): Promise<void> {
  const apps = member.config.makeApiClient(AppsV1Api)
  await apps.patchNamespacedDeploymentStatus(
    {
      name: 'cluster-agent',
      namespace: NAMESPACE,
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
}

function withCondition(
  cluster: KubeSphereCluster,
  type: string,
  status: 'True' | 'False',
  message: string,
): ClusterCondition[] {
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
  const others = (cluster.status?.conditions ?? []).filter((condition) => condition.type !== type)
  return [...others, {type, status, reason: type, message, lastUpdateTime: now, lastTransitionTime: now}]
}
