import {randomBytes} from 'node:crypto'

import {AppsV1Api, CoreV1Api, PatchStrategy, setHeaderOptions} from '@kubernetes/client-node'
import {dump, load} from 'js-yaml'

import {ClusterClients} from '../../src/k8s/clients.js'
import type {ClusterClient} from '../../src/k8s/cluster-client.js'
import {ClusterConfigurationResource, ClusterResource} from '../../src/k8s/resources.js'
import type {ClusterCondition, KubeSphereCluster} from '../../src/kubesphere/cluster-object.js'

const NAMESPACE = 'kubesphere-system'
const POLL_MS = 50

type Installer = {
  spec?: {
    authentication?: {jwtSecret?: string}
    multicluster?: {clusterRole?: string; proxyPublishAddress?: string}
  }
  status?: Record<string, unknown>
}

/**
 * What KubeSphere's controllers would do, for tests (kubesphere.md §1.4, §4.2, §6):
 * - the tower proxy on the host: fills an empty token, allocates ports, sets endpoints and Initialized;
 *   marks AgentAvailable (and the cluster controller Ready, with status.uid) once the member runs an agent
 *   whose --name and --token match;
 * - ks-installer on any cluster: on a spec change, re-renders kubesphere-config's jwtSecret and role and
 *   reports multicluster enabled for a host;
 * - with `clusterKubeconfig`, the proxy also issues `spec.connection.kubeconfig`, as Tower does (through it
 *   KubeSphere's Cluster webhook reaches the member); with `finalizer`, the cluster controller's finalizer:
 *   put on every proxy Cluster, removed (an UPDATE, like the controller's) once the Cluster is deleted.
 * `stop()` ends it; `pause()` freezes it to test timeouts.
 */
export class KubeSphereStandIn {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private paused = false
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
  }

  start(): this {
    const tick = async () => {
      if (!this.paused) {
        this.running = this.reconcile().catch(() => undefined)
        await this.running
      }
      if (this.timer !== undefined) this.timer = setTimeout(() => void tick(), POLL_MS)
    }
    this.timer = setTimeout(() => void tick(), POLL_MS)
    return this
  }

  /** Stops reacting, after the pass under way (if any) has finished: nothing writes once this resolves. */
  async stop(): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    await this.running
  }

  pause(paused = true): void {
    this.paused = paused
  }

  private async reconcile(): Promise<void> {
    const host = this.clients.forContext(this.host)
    if (this.behaviour.installer !== false) {
      await installerPass(host)
      if (this.member !== undefined) await installerPass(this.clients.forContext(this.member))
    }
    if (this.behaviour.proxy === false) return
    for (const cluster of await host.listCustomObjects<KubeSphereCluster>(ClusterResource)) {
      if (cluster.spec?.joinFederation !== true || cluster.spec.connection?.type !== 'proxy') continue
      if (this.behaviour.finalizer === true && (await controllerFinalizerPass(host, cluster))) continue
      await this.proxyPass(host, cluster)
    }
  }

  private async proxyPass(host: ClusterClient, cluster: KubeSphereCluster): Promise<void> {
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
    if (this.member === undefined || this.behaviour.agentConnects === false) return
    const member = this.clients.forContext(this.member)
    const agent = await member.findDeployment(NAMESPACE, 'cluster-agent')
    const command = agent?.spec?.template.spec?.containers[0]?.command ?? []
    const connected = command.includes(`--name=${name}`) && command.includes(`--token=${connection.token}`)
    const agentStatus = connected ? 'True' : 'False'
    if (cluster.status?.conditions?.find((c) => c.type === 'AgentAvailable')?.status === agentStatus) return
    if (connected) await markAvailable(member)
    const uid = (await member.findNamespace('kube-system'))?.metadata?.uid
    let conditions = withCondition(
      cluster,
      'AgentAvailable',
      agentStatus,
      connected ? 'Agent has connected to proxy successfully.' : 'Agent has not connected to proxy.',
    )
    conditions = withCondition(
      {status: {conditions}},
      'Ready',
      agentStatus,
      connected ? 'Cluster is available now' : 'Cluster is Not Ready now',
    )
    await host.patchCustomObject(ClusterResource, name, {
      strategy: 'merge',
      body: {
        status: {
          conditions,
          ...(connected && uid !== undefined
            ? {uid, kubernetesVersion: 'v1.35.4', kubeSphereVersion: await kubeSphereVersionOf(member)}
            : {}),
        },
      },
    })
  }
}

/**
 * The cluster controller's finalizer: added to a Cluster that lacks it, removed from one being deleted.
 * Returns true when the Cluster is being deleted (nothing else is done with it).
 */
async function controllerFinalizerPass(host: ClusterClient, cluster: KubeSphereCluster): Promise<boolean> {
  const name = cluster.metadata?.name ?? ''
  const finalizers = cluster.metadata?.finalizers ?? []
  const deleting = cluster.metadata?.deletionTimestamp !== undefined
  if (deleting === finalizers.includes(CONTROLLER_FINALIZER)) {
    await host.patchCustomObject(ClusterResource, name, {
      strategy: 'json',
      body: [
        {op: 'test', path: '/metadata/resourceVersion', value: cluster.metadata?.resourceVersion},
        {
          op: finalizers.length === 0 ? 'add' : 'replace',
          path: '/metadata/finalizers',
          value: deleting
            ? finalizers.filter((finalizer) => finalizer !== CONTROLLER_FINALIZER)
            : [...finalizers, CONTROLLER_FINALIZER],
        },
      ],
    })
  }
  return deleting
}

const CONTROLLER_FINALIZER = 'finalizer.cluster.kubesphere.io'

/** What the cluster controller reads from a member: 3.x from its installer, else the ks-core the host installs. */
async function kubeSphereVersionOf(member: ClusterClient): Promise<string> {
  const installer = await member.findCustomObject(ClusterConfigurationResource, 'ks-installer', NAMESPACE)
  return installer === undefined ? 'v4.1.3' : 'v3.4.1'
}

async function installerPass(client: ClusterClient): Promise<void> {
  const installer = await client.findCustomObject<Installer & {metadata?: {name?: string}}>(
    ClusterConfigurationResource,
    'ks-installer',
    NAMESPACE,
  )
  if (installer === undefined) return
  const role = installer.spec?.multicluster?.clusterRole ?? 'none'
  const configMap = await client.findConfigMap(NAMESPACE, 'kubesphere-config')
  if (configMap !== undefined) {
    const config = (load(configMap.data?.['kubesphere.yaml'] ?? '') ?? {}) as {
      authentication?: Record<string, unknown>
      multicluster?: Record<string, unknown>
    }
    const before = JSON.stringify(config)
    const jwtSecret = installer.spec?.authentication?.jwtSecret
    if (jwtSecret !== undefined && jwtSecret !== '')
      config.authentication = {...config.authentication, jwtSecret}
    const proxyPublishAddress = installer.spec?.multicluster?.proxyPublishAddress
    config.multicluster =
      role === 'host'
        ? {
            ...config.multicluster,
            clusterRole: role,
            enable: true,
            agentImage: 'kubesphere/tower:v0.2.1',
            proxyPublishService: 'tower.kubesphere-system.svc',
            ...(proxyPublishAddress === undefined ? {} : {proxyPublishAddress}),
          }
        : {...config.multicluster, clusterRole: role}
    if (JSON.stringify(config) !== before) {
      configMap.data = {...configMap.data, 'kubesphere.yaml': dump(config)}
      await client.replaceConfigMap(configMap)
    }
  }
  const multicluster = (installer.status?.multicluster as {status?: string} | undefined)?.status
  if (role === 'host' && multicluster !== 'enabled') {
    await installTowerProxy(client)
    await client.patchCustomObject(
      ClusterConfigurationResource,
      'ks-installer',
      {
        strategy: 'merge',
        body: {status: {multicluster: {status: 'enabled', enabledTime: '2026-11-21T10:00:00UTC'}}},
      },
      {namespace: NAMESPACE},
    )
  }
}

/** ks-installer's ks-multicluster role: the tower proxy's Service (a LoadBalancer, pending here) and Deployment. */
async function installTowerProxy(client: ClusterClient): Promise<void> {
  if ((await client.findService(NAMESPACE, 'tower')) !== undefined) return
  const core = client.config.makeApiClient(CoreV1Api)
  const apps = client.config.makeApiClient(AppsV1Api)
  const labels = {app: 'tower', 'app.kubernetes.io/name': 'tower'}
  await core.createNamespacedService({
    namespace: NAMESPACE,
    body: {
      metadata: {name: 'tower', namespace: NAMESPACE, labels: {app: 'tower'}},
      spec: {
        type: 'LoadBalancer',
        selector: {app: 'tower'},
        ports: [{port: 8080, protocol: 'TCP', targetPort: 8080}],
      },
    },
  })
  await apps.createNamespacedDeployment({
    namespace: NAMESPACE,
    body: {
      metadata: {name: 'tower', namespace: NAMESPACE, labels},
      spec: {
        selector: {matchLabels: labels},
        template: {
          metadata: {labels},
          spec: {containers: [{name: 'tower', image: 'kubesphere/tower:v0.2.1', command: ['/proxy']}]},
        },
      },
    },
  })
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
