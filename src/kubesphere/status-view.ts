import {renderFields, renderTable} from '../cli/output.js'
import type {ProxyAddress} from './detect.js'
import {formatAge, type ClusterStatus, type HostStatus} from './status.js'

const COLUMNS = ['NAME', 'CONNECTION', 'AGENT', 'READY', 'KUBERNETES', 'KUBESPHERE', 'AGE']

/** What `ksctl status` prints: the host and its proxy address, then a row per Cluster, ages against `now`. */
export function renderHostStatus(status: HostStatus, now: Date): string {
  const header = renderFields([
    ['Host', `${status.hostClusterName} (context ${status.context})`],
    ['Proxy address', describeProxyAddress(status.proxyAddress)],
  ])
  const rows = status.clusters.map((cluster) => [
    cluster.host ? `${cluster.name} (host)` : cluster.name,
    cluster.connectionType,
    describeAgent(cluster),
    cluster.ready,
    cluster.kubernetesVersion ?? '-',
    cluster.kubesphereVersion ?? '-',
    formatAge(cluster.lastConditionChange, now),
  ])
  return `${header}\n${renderTable(COLUMNS, rows)}`
}

function describeAgent(cluster: ClusterStatus): string {
  if (cluster.agentConnected === null) return '-'
  return cluster.agentConnected ? 'connected' : 'not connected'
}

function describeProxyAddress(address: ProxyAddress | undefined): string {
  if (address?.effective === undefined) return 'not set (members cannot be given an agent manifest yet)'
  if (address.source === 'configured')
    return `${address.effective} (proxyPublishAddress in ${address.configuredIn ?? '?'})`
  return `${address.effective} (tower LoadBalancer)`
}
