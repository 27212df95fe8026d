import type {V1Service} from '@kubernetes/client-node'

/** What the `tower` Service says about how members can reach the proxy. */
export interface TowerService {
  exists: boolean
  type?: string
  /** The Service's first port: what KubeSphere puts in a LoadBalancer-derived address. */
  port?: number
  nodePort?: number
  /** The LoadBalancer ingress KubeSphere would use (last entry wins, an IP beats a hostname). */
  loadBalancerIngress?: string
  /** `http://<ingress>:<port>`, exactly as KubeSphere derives it, when there is an ingress. */
  loadBalancerAddress?: string
}

export function describeTowerService(service: V1Service | undefined): TowerService {
  if (service === undefined) return {exists: false}
  const firstPort = service.spec?.ports?.[0]
  let ingress: string | undefined
  for (const entry of service.status?.loadBalancer?.ingress ?? []) {
    if (entry.hostname !== undefined && entry.hostname !== '') ingress = entry.hostname
    if (entry.ip !== undefined && entry.ip !== '') ingress = entry.ip
  }
  return {
    exists: true,
    ...(service.spec?.type === undefined ? {} : {type: service.spec.type}),
    ...(firstPort === undefined ? {} : {port: firstPort.port}),
    ...(firstPort?.nodePort === undefined ? {} : {nodePort: firstPort.nodePort}),
    ...(ingress === undefined ? {} : {loadBalancerIngress: ingress}),
    ...(ingress === undefined || firstPort === undefined
      ? {}
      : {loadBalancerAddress: `http://${ingress}:${firstPort.port}`}),
  }
}
