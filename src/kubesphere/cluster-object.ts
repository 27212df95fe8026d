import type {CustomObject} from '../k8s/resources.js'

/** A condition of a KubeSphere `Cluster`, as the proxy and the cluster controller write them. */
export interface ClusterCondition {
  type: string
  status: 'True' | 'False' | 'Unknown'
  reason?: string
  message?: string
  lastUpdateTime?: string
  lastTransitionTime?: string
}

/** The fields of `cluster.kubesphere.io/v1alpha1` Cluster that ksctl reads (see kubesphere.md §4). */
export type KubeSphereCluster = CustomObject & {
  metadata?: {
    name?: string
    labels?: Record<string, string>
    annotations?: Record<string, string>
    creationTimestamp?: string | Date
  }
  spec?: {
    joinFederation?: boolean
    provider?: string
    connection?: {
      type?: string
      token?: string
      kubernetesAPIEndpoint?: string
      kubesphereAPIEndpoint?: string
      kubeconfig?: string
    }
  }
  status?: {
    conditions?: ClusterCondition[]
    kubernetesVersion?: string
    kubeSphereVersion?: string
    uid?: string
  }
}

/** Annotation ksctl puts on a Cluster it created: the member's kube-system namespace UID, its identity. */
export const MEMBER_UID_ANNOTATION = 'ksctl.io/member-uid'
export const DESCRIPTION_ANNOTATION = 'kubesphere.io/description'
export const CREATOR_ANNOTATION = 'kubesphere.io/creator'

export function conditionOf(
  cluster: KubeSphereCluster | undefined,
  type: string,
): ClusterCondition | undefined {
  return cluster?.status?.conditions?.find((condition) => condition.type === type)
}

export function isConditionTrue(cluster: KubeSphereCluster | undefined, type: string): boolean {
  return conditionOf(cluster, type)?.status === 'True'
}

/** The member this Cluster stands for, by kube-system UID: from the controller's status, or ksctl's mark. */
export function memberUidOf(cluster: KubeSphereCluster): string | undefined {
  return cluster.status?.uid ?? cluster.metadata?.annotations?.[MEMBER_UID_ANNOTATION]
}
