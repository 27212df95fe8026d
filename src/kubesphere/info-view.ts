import {renderFields} from '../cli/output.js'
import type {KubeSphereInfo} from './detect.js'

/** The human summary `ksctl info` prints. */
export function renderInfo(info: KubeSphereInfo): string {
  const kubesphere = info.installed
    ? `${info.version ?? 'unknown version'} (${info.edition === '3.x' ? '3.x, ks-installer' : '4.x, ks-core'})`
    : 'not installed'
  return renderFields([
    ['Context', `${info.context} (${info.server})`],
    ['Kubernetes', info.kubernetesVersion],
    ['KubeSphere', kubesphere],
    ['Role', info.installed ? describeRole(info) : undefined],
    ['Host name', info.hostClusterName],
    ['Multicluster', info.multiclusterStatus],
    ['Tower service', info.installed ? describeTower(info) : undefined],
    ['Proxy address', info.installed && info.role === 'host' ? describeProxyAddress(info) : undefined],
    ['jwtSecret', info.jwtSecretFingerprint],
    ['Incomplete', info.incomplete?.message],
    ['To fix', info.incomplete?.suggestions.join('; ')],
  ])
}

function describeRole(info: KubeSphereInfo): string {
  if (info.role !== 'member') return info.role
  const name = info.memberClusterName === undefined ? '' : ` "${info.memberClusterName}"`
  const host = info.managedByHost === undefined ? '' : ` of host "${info.managedByHost}"`
  return `member${name}${host}`
}

function describeTower(info: KubeSphereInfo): string {
  const tower = info.tower
  if (!tower.exists) return 'none'
  const parts = [`kubesphere-system/tower ${tower.type ?? 'ClusterIP'}`]
  if (tower.port !== undefined) parts.push(`port ${tower.port}`)
  if (tower.nodePort !== undefined) parts.push(`nodePort ${tower.nodePort}`)
  if (tower.type === 'LoadBalancer')
    parts.push(
      tower.loadBalancerIngress === undefined
        ? 'no ingress (pending)'
        : `ingress ${tower.loadBalancerIngress}`,
    )
  return parts.join(', ')
}

function describeProxyAddress(info: KubeSphereInfo): string {
  const address = info.proxyAddress
  if (address.effective === undefined) return 'not set (members cannot be given an agent manifest yet)'
  if (address.source === 'configured')
    return `${address.effective} (proxyPublishAddress in ${address.configuredIn ?? '?'})`
  return `${address.effective} (tower LoadBalancer)`
}
