import {isDeepStrictEqual} from 'node:util'

import {KsctlError} from '../errors.js'
import {applyWrites, type PlannedWrite} from '../k8s/access-review.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import type {DryRun} from '../k8s/dry-run.js'
import {applyManifest, FIELD_MANAGER, ManifestObjects, type ManifestObject} from '../k8s/manifest-objects.js'
import {compareObjects, type EditOutcome} from '../k8s/object-edit.js'
import type {KubeSphereCluster} from './cluster-object.js'
import {KUBESPHERE_NAMESPACE} from './constants.js'

/**
 * The host's Cluster, server-side applied by `member join`, and KubeSphere's Cluster webhook.
 *
 * KubeSphere 3.4 registers a validating webhook for every UPDATE of a Cluster (ks-installer release-3.4,
 * roles/ks-core/ks-core/files/ks-core/templates/webhook.yaml: `validating-cluster.kubesphere.io`,
 * failurePolicy Fail, sideEffects None, so dry runs reach it too). Its handler (kubesphere release-3.4,
 * pkg/controller/cluster/cluster_webhook.go) admits any update of a Cluster whose old `status.uid` is empty;
 * otherwise it builds a client from the new `spec.connection.kubeconfig` (for a proxy Cluster: through the
 * tower proxy and the agent), GETs the member's kube-system namespace, and denies the update when that
 * fails or the UID differs. So while the agent is down every update is refused, even one that changes
 * nothing, since validation runs before the API server finds out that nothing changes. 4.1 has the same
 * handler (release-4.1, same path), but its ks-core chart registers no webhook configuration for Clusters.
 *
 * Hence: a Cluster already as ksctl would apply it is not written at all, and a needed write is first sent
 * as a server dry run, so that a refusal stops the command before anything changed, with what to do.
 */
export interface ClusterApply {
  /** The requests the apply makes: none when the Cluster is already as applied. */
  writes: PlannedWrite[]
  /** A server dry run of the apply, admission included: the preview, and any refusal before a write. */
  validate(): Promise<EditOutcome>
  /** Applies for real; on a dry run, the outcome of `validate`. */
  apply(dryRun: DryRun): Promise<EditOutcome>
}

export function planClusterApply(
  host: ClusterClient,
  desired: ManifestObject,
  current: KubeSphereCluster | undefined,
  memberContext: string,
): ClusterApply {
  const manifest = new ManifestObjects(host)
  if (current !== undefined && appliedAsDesired(current, desired)) {
    const unchanged = compareObjects(
      host.context,
      manifest.ref(desired),
      `update Cluster ${desired.metadata.name}`,
      current,
      current,
    )
    return {writes: [], validate: () => Promise.resolve(unchanged), apply: () => Promise.resolve(unchanged)}
  }
  const applyOnce = async (dryRun: boolean): Promise<EditOutcome> => {
    try {
      const [outcome] = await applyManifest(host, [desired], dryRun)
      if (outcome === undefined) throw new Error('internal error: an apply of one object returned no outcome')
      return outcome
    } catch (error) {
      throw explainWebhookRefusal(error, host, memberContext, desired.metadata.name, {
        refused: `the update of cluster "${desired.metadata.name}"`,
        why: dryRun
          ? 'nothing was changed'
          : 'the steps before it are done, and a re-run continues from here',
      })
    }
  }
  let validated: EditOutcome | undefined
  return {
    writes: applyWrites(host, manifest, desired, current !== undefined),
    async validate() {
      validated ??= await applyOnce(true)
      return validated
    },
    async apply(dryRun) {
      return dryRun === false ? applyOnce(false) : (validated ?? (await applyOnce(true)))
    },
  }
}

/**
 * Whether a server-side apply of `desired` would leave `current` as it is: every field ksctl applies has
 * the desired value, and ksctl's apply owns exactly these fields (an apply also removes fields it owned
 * and no longer sets, such as a dropped label).
 */
export function appliedAsDesired(current: KubeSphereCluster, desired: ManifestObject): boolean {
  const fields = Object.fromEntries(
    Object.entries(desired).filter(([key]) => key !== 'apiVersion' && key !== 'kind'),
  )
  if (!contains(current, fields)) return false
  const applied = (current.metadata?.managedFields ?? []).filter(
    (entry) => entry.manager === FIELD_MANAGER && entry.operation === 'Apply',
  )
  if (applied.length !== 1) return false
  const owned = new Set(fieldPaths(applied[0]?.fieldsV1))
  const wanted = new Set(valuePaths(fields).filter((path) => path !== 'metadata\0name'))
  return isDeepStrictEqual(owned, wanted)
}

/** Every key of `part`, at every depth, is in `whole` with an equal value. */
function contains(whole: unknown, part: unknown): boolean {
  if (!isMapping(part)) return isDeepStrictEqual(whole, part)
  if (!isMapping(whole)) return false
  return Object.entries(part).every(([key, value]) => contains(whole[key], value))
}

/** Paths of the leaves of a managedFields `fieldsV1` set (`f:` keys; `.` marks the map itself). */
function fieldPaths(set: unknown, prefix: string[] = []): string[] {
  if (!isMapping(set)) return []
  const children = Object.entries(set).filter(([key]) => key !== '.')
  if (children.length === 0) return [prefix.join('\0')]
  return children.flatMap(([key, child]) =>
    key.startsWith('f:') ? fieldPaths(child, [...prefix, key.slice(2)]) : [[...prefix, key].join('\0')],
  )
}

/** Paths of the leaves of an object's fields, as `fieldPaths` writes them. */
function valuePaths(value: unknown, prefix: string[] = []): string[] {
  if (!isMapping(value) || Object.keys(value).length === 0) return [prefix.join('\0')]
  return Object.entries(value).flatMap(([key, child]) => valuePaths(child, [...prefix, key]))
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

const WEBHOOK_DENIAL = /admission webhook "([^"]+)" denied the request:?\s*([\s\S]*)$/

/**
 * A Cluster write refused by a validating webhook, said in the user's words: KubeSphere's webhook refuses
 * updates of a joined Cluster whose member it cannot reach through the proxy. `wording` names what was
 * refused and what that leaves. Any other error is returned as it is.
 */
export function explainWebhookRefusal(
  error: unknown,
  host: ClusterClient,
  memberContext: string,
  name: string,
  wording: {refused: string; why: string},
): unknown {
  if (!(error instanceof KsctlError)) return error
  const match = WEBHOOK_DENIAL.exec(error.message)
  if (match === null) return error
  const [, webhook = '', reason = ''] = match
  return new KsctlError(
    `the admission webhook "${webhook}" of context "${host.context}" refuses ${wording.refused}: ${reason.trim()}; ` +
      wording.why,
    {
      code: 'PRECONDITION_FAILED',
      context: host.context,
      ...(error.object === undefined ? {} : {object: error.object}),
      cause: error,
      suggestions: [
        "KubeSphere's Cluster webhook admits an update of a joined Cluster only when it reaches the member through " +
          "the Cluster's kubeconfig, that is through the tower proxy and the agent: the agent is down or not connected",
        `bring the agent back first: kubectl --context ${memberContext} -n ${KUBESPHERE_NAMESPACE} get deployment cluster-agent, ` +
          `and ksctl doctor ${name} --host-context ${host.context} --member-context ${memberContext}`,
        'then run the same command again',
      ],
    },
  )
}
