import type {ClusterClient} from '../k8s/cluster-client.js'
import {ClusterResource} from '../k8s/resources.js'
import {conditionOf, type ClusterCondition, type KubeSphereCluster} from './cluster-object.js'
import {HOST_CLUSTER_LABEL} from './constants.js'
import {detectKubeSphere, type ProxyAddress} from './detect.js'
import {requireKubeSphereHost} from './host-check.js'

export type ConditionStatus = ClusterCondition['status']
export type VersionField = 'kubernetesVersion' | 'kubesphereVersion'

/** One Cluster as its host sees it: a row of `ksctl status`. Part of the `--json` contract. */
export interface ClusterStatus {
  name: string
  /** The host's own Cluster (label cluster-role.kubesphere.io/host). */
  host: boolean
  /** `spec.connection.type`, `direct` or `proxy`; KubeSphere treats a Cluster without one as direct. */
  connectionType: string
  /**
   * Proxy clusters: whether the proxy reports an agent connected (condition AgentAvailable True); null if direct.
   * Not verified: the proxy clears the condition only when a connection closes, so a hung agent still counts.
   */
  agentConnected: boolean | null
  /** Condition Ready, the state the console shows; Unknown while the Cluster has none. */
  ready: ConditionStatus
  /** `status.kubernetesVersion`, written once the host reaches the cluster. */
  kubernetesVersion?: string
  /** `status.kubeSphereVersion`, likewise. */
  kubesphereVersion?: string
  /** Each of the fields above that the Cluster lacks, with why it is not known. */
  unknown: Partial<Record<VersionField, string>>
  /** RFC 3339: when the Cluster object was created (`metadata.creationTimestamp`), what AGE counts from. */
  createdAt?: string
  /** RFC 3339: the newest lastTransitionTime or lastUpdateTime among the conditions. */
  lastConditionChange?: string
  /** Condition type → status. */
  conditions: Record<string, ConditionStatus>
}

/** What `ksctl status` reports. Part of the `--json` contract: add fields, never rename. */
export interface HostStatus {
  context: string
  /** The name the host gives itself (and its own Cluster). */
  hostClusterName: string
  /** Where members' agents dial the proxy (as `ksctl info` reports it); absent when there is none. */
  proxyAddress?: ProxyAddress
  /** The host's own Cluster first, then the others by name. */
  clusters: ClusterStatus[]
}

/** Reads the Clusters of the host behind `client`; a context that is not a host is an error. */
export async function readHostStatus(client: ClusterClient): Promise<HostStatus> {
  const info = await detectKubeSphere(client)
  const {hostClusterName} = requireKubeSphereHost(client, info, [
    `make it the host first: ksctl host init --context ${client.context}`,
    "or pass the host cluster's context: ksctl status --context <host>",
  ])
  const clusters = await client.listCustomObjects<KubeSphereCluster>(ClusterResource)
  return {
    context: client.context,
    hostClusterName,
    ...(info.proxyAddress.effective === undefined ? {} : {proxyAddress: info.proxyAddress}),
    clusters: clusterStatuses(clusters),
  }
}

/** The rows of `ksctl status`: the host's own Cluster first, then the others by name. */
export function clusterStatuses(clusters: KubeSphereCluster[]): ClusterStatus[] {
  return clusters
    .map(clusterStatus)
    .sort((a, b) => Number(b.host) - Number(a.host) || compareText(a.name, b.name))
}

function clusterStatus(cluster: KubeSphereCluster): ClusterStatus {
  const connectionType = nonEmpty(cluster.spec?.connection?.type) ?? 'direct'
  const kubernetesVersion = nonEmpty(cluster.status?.kubernetesVersion)
  const kubesphereVersion = nonEmpty(cluster.status?.kubeSphereVersion)
  const lastConditionChange = newestConditionChange(cluster.status?.conditions ?? [])
  const created = cluster.metadata?.creationTimestamp
  const createdAt = created instanceof Date ? created.toISOString() : created
  const ready = conditionOf(cluster, 'Ready')?.status ?? 'Unknown'
  const unknown: ClusterStatus['unknown'] = {}
  if (kubernetesVersion === undefined)
    unknown.kubernetesVersion = whyNotReported('kubernetesVersion', connectionType, ready)
  if (kubesphereVersion === undefined)
    unknown.kubesphereVersion = whyNotReported('kubesphereVersion', connectionType, ready)
  return {
    name: cluster.metadata?.name ?? '',
    host: cluster.metadata?.labels?.[HOST_CLUSTER_LABEL] !== undefined,
    connectionType,
    agentConnected:
      connectionType === 'proxy' ? conditionOf(cluster, 'AgentAvailable')?.status === 'True' : null,
    ready,
    ...(kubernetesVersion === undefined ? {} : {kubernetesVersion}),
    ...(kubesphereVersion === undefined ? {} : {kubesphereVersion}),
    unknown,
    ...(createdAt === undefined ? {} : {createdAt}),
    ...(lastConditionChange === undefined ? {} : {lastConditionChange}),
    conditions: Object.fromEntries(
      (cluster.status?.conditions ?? []).map((condition) => [condition.type, condition.status]),
    ),
  }
}

/**
 * Why a version field is missing. KubeSphere's cluster controller writes both, with Ready, each time it reaches
 * the cluster (KS34 pkg/controller/cluster/cluster_controller.go syncCluster, on spec changes and every resync
 * period). Tower v0.2.1 updates the Cluster through a type without kubeSphereVersion, uid and configz
 * (TOWER v0.2.1 pkg/apis/cluster/v1alpha1/cluster_types.go), so each agent connect and disconnect drops them
 * until the controller's next resync.
 */
function whyNotReported(field: VersionField, connectionType: string, ready: ConditionStatus): string {
  if (ready !== 'True') {
    return "not reported yet: the host's cluster controller writes it once it reaches the cluster"
  }
  if (field === 'kubesphereVersion' && connectionType === 'proxy') {
    return (
      'not reported since the proxy last rewrote the Cluster: Tower v0.2.1 drops it when an agent connects or ' +
      "disconnects, and the host's cluster controller writes it again at its next resync"
    )
  }
  return "not reported: the host's cluster controller reached the cluster but could not read it (see its log)"
}

/** The newest of the conditions' timestamps, as the API server wrote it; undefined when there is none. */
function newestConditionChange(conditions: ClusterCondition[]): string | undefined {
  let newest: {text: string; time: number} | undefined
  for (const condition of conditions) {
    for (const text of [condition.lastTransitionTime, condition.lastUpdateTime]) {
      const time = text === undefined ? Number.NaN : Date.parse(text)
      if (text !== undefined && !Number.isNaN(time) && (newest === undefined || time > newest.time)) {
        newest = {text, time}
      }
    }
  }
  return newest?.text
}

/**
 * How long before `now` a timestamp was, the way kubectl prints ages: `45s`, `5m`, `3h`, `12d`, `2y`.
 * `-` when there is no (valid) timestamp; a timestamp ahead of this machine's clock counts as now.
 */
export function formatAge(since: string | undefined, now: Date): string {
  const time = since === undefined ? Number.NaN : Date.parse(since)
  if (Number.isNaN(time)) return '-'
  const seconds = Math.max(0, Math.floor((now.getTime() - time) / 1000))
  const minutes = Math.floor(seconds / 60)
  const hours = Math.floor(minutes / 60)
  const days = Math.floor(hours / 24)
  if (seconds < 60) return `${seconds}s`
  if (minutes < 60) return `${minutes}m`
  if (hours < 24) return `${hours}h`
  if (days < 365) return `${days}d`
  return `${Math.floor(days / 365)}y`
}

function compareText(a: string, b: string): number {
  if (a === b) return 0
  return a < b ? -1 : 1
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}
