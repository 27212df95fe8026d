import {CoreV1Api} from '@kubernetes/client-node'

import {formatDuration} from '../cli/duration.js'
import {KsctlError} from '../errors.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {kubectl} from '../k8s/kubectl.js'
import {waitUntil} from '../kubesphere/wait.js'
import {NAMESPACE} from './names.js'

/** How long a proxy's pods may take to stop once their Deployment is scaled down or deleted, without `--timeout`. */
export const PODS_GONE_WAIT_MS = 2 * 60_000

/**
 * Waits until no pod with `labels` is left in kubesphere-system: one proxy's pods must be gone before the other's
 * start, so that two proxies never reconcile the Clusters at once. `whose` names them: "Tower's proxy".
 */
export async function waitForPodsGone(
  client: ClusterClient,
  labels: Record<string, string>,
  whose: string,
  timeoutMs: number | undefined,
): Promise<void> {
  const core = client.config.makeApiClient(CoreV1Api)
  const selector = Object.entries(labels)
    .map(([key, value]) => `${key}=${value}`)
    .join(',')
  if (selector === '') return
  await waitUntil({
    what: `${whose} pods to stop`,
    defaultTimeoutMs: PODS_GONE_WAIT_MS,
    timeoutMs,
    poll: async () => {
      const pods = await client.call({verb: 'list', object: {resource: 'pods', namespace: NAMESPACE}}, () =>
        core.listNamespacedPod({namespace: NAMESPACE, labelSelector: selector}),
      )
      const left = pods.items.length
      return {
        done: left === 0,
        state: left === 0 ? `${whose} stopped` : `${String(left)} pod(s) of ${whose} still running`,
      }
    },
    onTimeout: (_last, limitMs) =>
      new KsctlError(
        `${whose} pods did not stop within ${formatDuration(limitMs)} in context "${client.context}"`,
        {
          code: 'TIMEOUT',
          context: client.context,
          object: {resource: 'pods', namespace: NAMESPACE},
          suggestions: [
            `see why: ${kubectl(client.context, `-n ${NAMESPACE} get pods -l ${selector}`)}`,
            'then run the same command again (with a longer --timeout if they only stop slowly)',
          ],
        },
      ),
  })
}
