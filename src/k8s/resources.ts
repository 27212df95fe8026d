import type {KubernetesObject} from '@kubernetes/client-node'

/** A custom resource type ksctl reads or writes, as the API server serves it. */
export interface CustomResource {
  group: string
  version: string
  plural: string
  kind: string
  namespaced: boolean
}

export type CustomObject = KubernetesObject & Record<string, unknown>

/** ks-installer's configuration (KubeSphere 3.x): namespaced, spec and status preserve unknown fields. */
export const ClusterConfigurationResource: CustomResource = {
  group: 'installer.kubesphere.io',
  version: 'v1alpha1',
  plural: 'clusterconfigurations',
  kind: 'ClusterConfiguration',
  namespaced: true,
}

/** KubeSphere's member-cluster registry (3.x and 4.x): cluster-scoped, structural (unknown fields pruned). */
export const ClusterResource: CustomResource = {
  group: 'cluster.kubesphere.io',
  version: 'v1alpha1',
  plural: 'clusters',
  kind: 'Cluster',
  namespaced: false,
}

/** `clusters.cluster.kubesphere.io`: the name kubectl accepts and messages use. */
export function resourceName(resource: CustomResource): string {
  return `${resource.plural}.${resource.group}`
}

export function apiVersionOf(resource: CustomResource): string {
  return `${resource.group}/${resource.version}`
}
