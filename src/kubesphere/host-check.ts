import {KsctlError} from '../errors.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {DEFAULT_HOST_CLUSTER_NAME} from './constants.js'
import type {Edition, KubeSphereInfo} from './detect.js'

/** A context that runs a KubeSphere host: its edition and the name it gives itself. */
export interface KubeSphereHost {
  edition: Edition
  hostClusterName: string
}

/**
 * The host behind `client`, or an error that says what the context is instead. `suggestions` say what to
 * do about it in the words of the command that needs a host.
 */
export function requireKubeSphereHost(
  client: ClusterClient,
  info: KubeSphereInfo,
  suggestions: string[],
): KubeSphereHost {
  if (!info.installed || info.edition === undefined || info.role !== 'host') {
    throw new KsctlError(
      `context "${client.context}" is not a KubeSphere host ` +
        `(${info.installed ? `role: ${info.role}` : 'KubeSphere not installed'})`,
      {code: 'PRECONDITION_FAILED', context: client.context, suggestions},
    )
  }
  return {edition: info.edition, hostClusterName: info.hostClusterName ?? DEFAULT_HOST_CLUSTER_NAME}
}
