import {KubeConfig} from '@kubernetes/client-node'
import {load} from 'js-yaml'

import {ClusterClient} from '../k8s/cluster-client.js'
import {ClusterConfigurationResource, ClusterResource} from '../k8s/resources.js'
import {conditionOf, type ClusterCondition, type KubeSphereCluster} from '../kubesphere/cluster-object.js'
import {
  DEFAULT_HOST_CLUSTER_NAME,
  HOST_CLUSTER_LABEL,
  INSTALLER_CONFIGURATION_NAME,
  KUBESPHERE_CONFIG_KEY,
  KUBESPHERE_CONFIG_NAME,
  KUBESPHERE_NAMESPACE,
} from '../kubesphere/constants.js'
import {redactor} from '../redact.js'
import {hostCluster} from './fixtures.js'

/**
 * How the host reaches a member: the kubeconfig of its requests to the member of `cluster`, or `undefined` while
 * there is none. In KubeSphere it is the Cluster's `spec.connection.kubeconfig`, which the tower proxy issues, and
 * its server (Service mc-NAME's ClusterIP) is routed to the proxy by kube-proxy.
 */
export type MemberRoute = (cluster: KubeSphereCluster) => KubeConfig | undefined

export interface ClusterControllerOptions {
  route: MemberRoute
  /** Puts the controller's finalizer on every proxy Cluster and removes it once the Cluster is deleted. */
  finalizer?: boolean
  /** Each request to a member: the real controller's client has no limit; a stand-in must not hang. */
  requestTimeoutMs?: number
  now?: () => Date
}

/** Its finalizer (kubesphere.md §4.3). */
export const CONTROLLER_FINALIZER = 'finalizer.cluster.kubesphere.io'
/** How often a Ready member is looked at again, as the controller's resync period does. */
const RESYNC_MS = 60_000
/** After a failed request to a member, the wait before the next one, doubling up to {@link MAX_RETRY_MS}. */
const FIRST_RETRY_MS = 200
const MAX_RETRY_MS = 5_000

interface MemberSync {
  /** The Cluster as last seen (its resourceVersion): any update of it is a watch event that requeues it at once. */
  seen: string
  at: number
  failures: number
}

/**
 * The part of KubeSphere's cluster controller (ks-controller-manager on the host) the join flow waits on, after
 * `syncCluster` and `reconcileHostCluster` of kubesphere/kubesphere `pkg/controller/cluster/cluster_controller.go`
 * (3.4): it runs only on a host (3.x: `multicluster.enable` in kubesphere-config; 4.x: role host); creates the
 * host's own Cluster when none is labelled host; and for each member Cluster with `joinFederation` and a way to
 * reach it (see {@link MemberRoute}) asks the member for its version (`GET /version`) and its kube-system
 * namespace through that way, then sets `status.kubernetesVersion`, `status.uid` and condition Ready. Ready
 * comes only from those answers, never from what the agent was given.
 *
 * Left out, because nothing here runs them: joining kubefed (3.x's Federated condition), the member's ks-apiserver
 * (its configz and `status.kubeSphereVersion`, which the controller fetches through the member's service proxy;
 * the request fails and the controller goes on without them, as here), installing ks-core in a 4.x member, and
 * the users' cluster grants.
 */
export class ClusterControllerStandIn {
  private readonly synced = new Map<string, MemberSync>()
  private readonly now: () => Date

  constructor(
    private readonly host: ClusterClient,
    private readonly options: ClusterControllerOptions,
  ) {
    this.now = options.now ?? (() => new Date())
  }

  async pass(): Promise<void> {
    const host = await this.runsAsHost()
    if (host === undefined) return
    const clusters = await this.host.listCustomObjects<KubeSphereCluster>(ClusterResource)
    await this.reconcileHostCluster(host, clusters)
    for (const cluster of clusters) {
      if (cluster.metadata?.labels?.[HOST_CLUSTER_LABEL] !== undefined) continue
      if (cluster.spec?.joinFederation !== true || cluster.spec.connection?.type !== 'proxy') continue
      if (this.options.finalizer === true && (await this.finalizerPass(cluster))) continue
      await this.syncMember(cluster)
    }
  }

  /** The host's name when the controller runs here (see the class comment); `undefined` when it does not. */
  private async runsAsHost(): Promise<{name: string; edition: '3.x' | '4.x'} | undefined> {
    const configMap = await this.host.findConfigMap(KUBESPHERE_NAMESPACE, KUBESPHERE_CONFIG_NAME)
    const config = (load(configMap?.data?.[KUBESPHERE_CONFIG_KEY] ?? '') ?? {}) as {
      multicluster?: {clusterRole?: string; enable?: boolean; hostClusterName?: string}
    }
    const installer = await this.host.findCustomObject(
      ClusterConfigurationResource,
      INSTALLER_CONFIGURATION_NAME,
      KUBESPHERE_NAMESPACE,
    )
    const edition = installer === undefined ? '4.x' : '3.x'
    const runs =
      edition === '3.x'
        ? config.multicluster?.enable === true
        : (config.multicluster?.clusterRole ?? 'host') === 'host'
    if (!runs || configMap === undefined) return undefined
    return {name: config.multicluster?.hostClusterName ?? DEFAULT_HOST_CLUSTER_NAME, edition}
  }

  /** 3.x creates a host Cluster when none carries the host label; 4.x when none has the host's name. */
  private async reconcileHostCluster(
    host: {name: string; edition: '3.x' | '4.x'},
    clusters: KubeSphereCluster[],
  ): Promise<void> {
    const exists =
      host.edition === '3.x'
        ? clusters.some((cluster) => cluster.metadata?.labels?.[HOST_CLUSTER_LABEL] !== undefined)
        : clusters.some((cluster) => cluster.metadata?.name === host.name)
    if (!exists) await this.host.createCustomObject(ClusterResource, hostCluster(host.edition, host.name))
  }

  /** Adds the finalizer to a Cluster that lacks it; removes it from one being deleted (and returns true). */
  private async finalizerPass(cluster: KubeSphereCluster): Promise<boolean> {
    const name = cluster.metadata?.name ?? ''
    const metadata = cluster.metadata as {
      finalizers?: string[]
      deletionTimestamp?: string
      resourceVersion?: string
    }
    const finalizers = metadata.finalizers ?? []
    const deleting = metadata.deletionTimestamp !== undefined
    if (deleting === finalizers.includes(CONTROLLER_FINALIZER)) {
      // An UPDATE, as the controller's: KubeSphere's Cluster webhook sees it.
      await this.host.patchCustomObject(ClusterResource, name, {
        strategy: 'json',
        body: [
          {op: 'test', path: '/metadata/resourceVersion', value: metadata.resourceVersion},
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
    if (deleting) this.synced.delete(name)
    return deleting
  }

  private async syncMember(cluster: KubeSphereCluster): Promise<void> {
    const name = cluster.metadata?.name ?? ''
    const config = this.options.route(cluster)
    if (config === undefined) return
    // The controller's informer requeues a Cluster on every update (the tower proxy's AgentAvailable among them):
    // only a Cluster unchanged since the last try waits out the backoff or the resync period.
    const seen = cluster.metadata?.resourceVersion ?? JSON.stringify(cluster)
    const last = this.synced.get(name)
    const ready = conditionOf(cluster, 'Ready')?.status === 'True'
    const now = Date.now()
    if (last !== undefined && last.seen === seen) {
      const wait =
        last.failures === 0 ? RESYNC_MS : Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (last.failures - 1))
      if ((ready || last.failures > 0) && now - last.at < wait) return
    }
    const member = new ClusterClient(
      `cluster ${name} (through its route)`,
      config,
      this.options.requestTimeoutMs,
    )
    let facts: {kubernetesVersion: string; uid: string}
    try {
      const [version, kubeSystem] = await Promise.all([member.version(), member.findNamespace('kube-system')])
      const uid = kubeSystem?.metadata?.uid
      if (uid === undefined) throw new Error('the member has no kube-system namespace')
      facts = {kubernetesVersion: version.gitVersion, uid}
    } catch {
      // The controller logs the error and tries again (its work queue's rate limiter); Ready stays as it was.
      this.synced.set(name, {seen, at: now, failures: (last?.seen === seen ? last.failures : 0) + 1})
      return
    }
    this.synced.set(name, {seen, at: now, failures: 0})
    const conditions = withCondition(cluster, 'Ready', 'True', 'Cluster is available now', this.now())
    if (
      ready &&
      cluster.status?.kubernetesVersion === facts.kubernetesVersion &&
      cluster.status.uid === facts.uid
    ) {
      return
    }
    await this.host.patchCustomObject(ClusterResource, name, {
      strategy: 'merge',
      body: {status: {conditions, ...facts}},
    })
  }
}

/**
 * The route of the real controller: the kubeconfig the tower proxy issued into the Cluster, its server replaced
 * by `server(cluster)` when given (where this machine reaches what Service mc-NAME's ClusterIP would: the proxy's
 * port for the cluster). Its client key is registered for redaction.
 */
export function issuedKubeconfigRoute(
  server?: (cluster: KubeSphereCluster) => string | undefined,
): MemberRoute {
  return (cluster) => {
    const issued = cluster.spec?.connection?.kubeconfig
    if (issued === undefined || issued === '') return undefined
    return issuedKubeconfig(issued, server?.(cluster))
  }
}

/** A Cluster's issued kubeconfig (base64, as `spec.connection.kubeconfig` holds it), at `server` when given. */
export function issuedKubeconfig(base64: string, server?: string): KubeConfig | undefined {
  const config = new KubeConfig()
  try {
    config.loadFromString(Buffer.from(base64, 'base64').toString('utf8'))
  } catch {
    return undefined
  }
  for (const user of config.users) redactor.register(user.keyData)
  if (server === undefined) return config
  const routed = new KubeConfig()
  routed.loadFromOptions({
    clusters: config.clusters.map((cluster) => ({...cluster, server})),
    users: config.users,
    contexts: config.contexts,
    currentContext: config.currentContext,
  })
  return routed
}

function withCondition(
  cluster: KubeSphereCluster,
  type: string,
  status: 'True' | 'False',
  message: string,
  at: Date,
): ClusterCondition[] {
  const now = at.toISOString().replace(/\.\d+Z$/, 'Z')
  const previous = conditionOf(cluster, type)
  const others = (cluster.status?.conditions ?? []).filter((condition) => condition.type !== type)
  return [
    ...others,
    {
      type,
      status,
      reason: type,
      message,
      lastUpdateTime: now,
      lastTransitionTime: previous?.status === status ? (previous.lastTransitionTime ?? now) : now,
    },
  ]
}
