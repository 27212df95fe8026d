import type {ClusterClient} from '../k8s/cluster-client.js'
import {KUBESPHERE_NAMESPACE, TOWER_SERVICE_NAME} from './constants.js'

/** The pods of ksctl's tower proxy on a host (OWNERS.md's agreed names; `ksctl proxy install` sets it up). */
export const KSCTL_PROXY_POD_LABEL = {'app.kubernetes.io/name': 'ksctl-tower-proxy'} as const

/**
 * Which proxy a host's `tower` Service sends agents to: ksctl's exactly when its selector is ksctl's proxy pods'
 * label (what `ksctl proxy install` sets), else Tower's; undefined when the host has no tower Service.
 */
export async function hostRuntime(client: ClusterClient): Promise<'ksctl' | 'tower' | undefined> {
  const service = await client.findService(KUBESPHERE_NAMESPACE, TOWER_SERVICE_NAME)
  if (service === undefined) return undefined
  const selector = service.spec?.selector ?? {}
  const ksctl =
    Object.keys(selector).length === Object.keys(KSCTL_PROXY_POD_LABEL).length &&
    Object.entries(KSCTL_PROXY_POD_LABEL).every(([key, value]) => selector[key] === value)
  return ksctl ? 'ksctl' : 'tower'
}
