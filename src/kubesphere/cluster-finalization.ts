import {formatDuration} from '../cli/duration.js'
import {KsctlError} from '../errors.js'
import type {PlannedWrite} from '../k8s/access-review.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {ClusterResource, resourceName} from '../k8s/resources.js'
import {explainWebhookRefusal} from './cluster-apply.js'
import type {KubeSphereCluster} from './cluster-object.js'
import {KUBESPHERE_NAMESPACE} from './constants.js'
import {waitUntil} from './wait.js'

/**
 * Leaving, and KubeSphere's finalizer on the Cluster. The cluster controller (3.4 and 4.1,
 * pkg/controller/cluster/cluster_controller.go) puts `finalizer.cluster.kubesphere.io` on every Cluster, and
 * when the Cluster is deleted cleans up, then removes the finalizer with an UPDATE. On 3.4 that update goes
 * through the Cluster webhook (see cluster-apply.ts), which reaches the member through the proxy and the
 * agent; with the agent gone first, the update is refused and the Cluster stays Terminating. So `member
 * leave` deletes the Cluster first, waits until KubeSphere has let it go, and removes the agent after; and
 * before any change it asks the API server, with a dry run of that very update, whether it would be admitted.
 */

/**
 * How long KubeSphere's controller may take to finish deleting a Cluster without `--timeout`: it does so on
 * its next reconcile, so this covers a controller that is restarting or backing off after errors.
 */
export const FINALIZE_WAIT_MS = 5 * 60_000

/** A Cluster a controller must still finalize once deleted: it has finalizers and is not being deleted yet. */
export function needsFinalization(cluster: KubeSphereCluster | undefined): cluster is KubeSphereCluster {
  return (
    (cluster?.metadata?.finalizers ?? []).length > 0 && cluster?.metadata?.deletionTimestamp === undefined
  )
}

/** The request the finalization probe makes: a dry-run patch, which RBAC authorizes as a patch. */
export function finalizationProbeWrites(host: ClusterClient, name: string): PlannedWrite[] {
  return [
    {
      client: host,
      verb: 'patch',
      object: {resource: resourceName(ClusterResource), group: ClusterResource.group, name},
    },
  ]
}

/**
 * Refuses to delete a Cluster that KubeSphere could not finish deleting: the removal of its finalizers,
 * sent as a server dry run, must be admitted now.
 */
export async function probeFinalization(
  host: ClusterClient,
  cluster: KubeSphereCluster,
  memberContext: string,
): Promise<void> {
  const name = cluster.metadata?.name ?? ''
  const finalizers = cluster.metadata?.finalizers ?? []
  if (!needsFinalization(cluster)) return
  try {
    await host.patchCustomObject(
      ClusterResource,
      name,
      {
        strategy: 'json',
        body: [
          {op: 'test', path: '/metadata/finalizers', value: finalizers},
          {op: 'remove', path: '/metadata/finalizers'},
        ],
      },
      {dryRun: true},
    )
  } catch (error) {
    const explained = explainWebhookRefusal(error, host, memberContext, name, {
      refused: `the update that removes the finalizer of cluster "${name}" (${finalizers.join(', ')})`,
      why:
        "KubeSphere's controller removes it with such an update once the Cluster is deleted, so deleted now the " +
        'Cluster would stay Terminating; nothing was changed',
    })
    throw explained
  }
}

/**
 * After the Cluster's deletion: waits until it is gone, which takes KubeSphere's controller a moment when
 * the Cluster carries its finalizer. The agent stays meanwhile, since the controller reaches the member
 * through it.
 */
export async function waitUntilClusterGone(
  host: ClusterClient,
  name: string,
  timeoutMs: number | undefined,
): Promise<void> {
  const find = () => host.findCustomObject<KubeSphereCluster>(ClusterResource, name)
  if ((await find()) === undefined) return
  await waitUntil({
    what: `KubeSphere to finish deleting cluster "${name}"`,
    defaultTimeoutMs: FINALIZE_WAIT_MS,
    timeoutMs,
    poll: async () => {
      const cluster = await find()
      return {
        done: cluster === undefined,
        state:
          cluster === undefined
            ? `host: KubeSphere has finished deleting cluster "${name}"`
            : `host: waiting for KubeSphere to finish deleting cluster "${name}" ` +
              `(finalizers: ${(cluster.metadata?.finalizers ?? []).join(', ') || 'none'})`,
      }
    },
    onTimeout: (_last, limitMs) =>
      new KsctlError(
        `cluster "${name}" is still being deleted in context "${host.context}" after ${formatDuration(limitMs)}: ` +
          "KubeSphere's controller has not removed its finalizer, so the agent is kept, which the controller " +
          'reaches the member through',
        {
          code: 'TIMEOUT',
          context: host.context,
          object: {resource: resourceName(ClusterResource), group: ClusterResource.group, name},
          suggestions: [
            `see why: kubectl --context ${host.context} -n ${KUBESPHERE_NAMESPACE} logs deployment/ks-controller-manager`,
            'then run the same command again: it continues from here',
          ],
        },
      ),
  })
}
