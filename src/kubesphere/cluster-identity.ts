import type {V1Deployment} from '@kubernetes/client-node'

import {preconditionFailed} from '../errors.js'
import type {ClusterClient} from '../k8s/cluster-client.js'

/** kube-system namespace UID: the identity KubeSphere uses to tell clusters apart. */
export async function kubeSystemUid(client: ClusterClient): Promise<string> {
  const uid = (await client.findNamespace('kube-system'))?.metadata?.uid
  if (uid === undefined) {
    throw preconditionFailed(
      `namespace kube-system not found in context "${client.context}"`,
      client.context,
      [`is this a Kubernetes cluster? check with: kubectl --context ${client.context} get ns kube-system`],
    )
  }
  return uid
}

/** `--flag=value` of the agent container's command or args: how the agent says who it is and where it dials. */
export function agentArgument(agent: V1Deployment | undefined, flag: string): string | undefined {
  const container = agent?.spec?.template.spec?.containers[0]
  const prefix = `--${flag}=`
  return [...(container?.command ?? []), ...(container?.args ?? [])]
    .find((argument) => argument.startsWith(prefix))
    ?.slice(prefix.length)
}
