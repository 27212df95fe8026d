/** An object as the proxy install's tests list it: `Kind namespace/name` (an empty namespace: cluster-scoped). */
export function objectIdentity(object: {
  kind: string
  metadata: {name?: string; namespace?: string}
}): string {
  return `${object.kind} ${object.metadata.namespace ?? ''}/${object.metadata.name ?? ''}`
}

/**
 * What `ksctl proxy install` renders for ksctl's proxy, in the order it applies them: the one list the render's
 * unit test and the install's `-o yaml` (these, then the switched tower Service and Tower's stopped Deployment) check.
 */
export const RENDERED_PROXY_OBJECTS = [
  'ServiceAccount kubesphere-system/ksctl-tower-proxy',
  'ClusterRole /ksctl-tower-proxy',
  'ClusterRoleBinding /ksctl-tower-proxy',
  'Role kubesphere-system/ksctl-tower-proxy',
  'RoleBinding kubesphere-system/ksctl-tower-proxy',
  'Role default/ksctl-tower-proxy-events',
  'RoleBinding default/ksctl-tower-proxy-events',
  'NetworkPolicy kubesphere-system/ksctl-tower-proxy-kubesphere-ports',
  'Deployment kubesphere-system/ksctl-tower-proxy',
]
