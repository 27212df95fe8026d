import {renderFields, renderTable} from '../cli/output.js'
import type {ProxyAddress} from './detect.js'
import {formatAge, type ClusterStatus, type HostStatus, type VersionField} from './status.js'

const COLUMNS = ['NAME', 'CONNECTION', 'AGENTAVAILABLE', 'READY', 'KUBERNETES', 'KUBESPHERE', 'AGE']
const versionColumns: Record<VersionField, string> = {
  kubernetesVersion: 'KUBERNETES',
  kubesphereVersion: 'KUBESPHERE',
}

/**
 * What `ksctl status` prints: the host and its proxy address, a row per Cluster (ages against `now`), then what
 * the table cannot show: why a version is unknown, and that the agent column is the proxy's word.
 */
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
    cluster.kubernetesVersion ?? 'unknown',
    cluster.kubesphereVersion ?? 'unknown',
    formatAge(cluster.createdAt, now),
  ])
  const notes = [
    ...status.clusters.flatMap((cluster) =>
      Object.entries(cluster.unknown).map(
        ([field, why]) => `${cluster.name}: ${versionColumns[field as VersionField]} unknown: ${why}`,
      ),
    ),
    ...(status.clusters.some((cluster) => cluster.agentConnected !== null)
      ? [
          "AGENTAVAILABLE is what the proxy reports, not verified: it clears the condition only when an agent's " +
            `connection closes, so a hung agent still shows True; ksctl doctor NAME --host-context ${status.context} ` +
            'sends a request through the tunnel',
        ]
      : []),
  ]
  return `${header}\n${renderTable(COLUMNS, rows)}${notes.length === 0 ? '' : `\n${notes.join('\n')}\n`}`
}

function describeAgent(cluster: ClusterStatus): string {
  if (cluster.agentConnected === null) return '-'
  return cluster.conditions.AgentAvailable ?? 'Unknown'
}

function describeProxyAddress(address: ProxyAddress | undefined): string {
  if (address?.effective === undefined) return 'not set (members cannot be given an agent manifest yet)'
  if (address.source === 'configured')
    return `${address.effective} (proxyPublishAddress in ${address.configuredIn ?? '?'})`
  return `${address.effective} (tower LoadBalancer)`
}
