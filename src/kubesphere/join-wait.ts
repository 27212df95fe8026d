import {formatDuration} from '../cli/duration.js'
import {KsctlError} from '../errors.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {ClusterResource} from '../k8s/resources.js'
import {conditionOf, type KubeSphereCluster} from './cluster-object.js'
import {diagnose} from './doctor.js'
import {waitUntil} from './wait.js'

/** The phases a joining member goes through, as Cluster conditions, in order. */
const PHASES = ['Initialized', 'AgentAvailable', 'Ready'] as const

/**
 * How long a join may take from the agent's manifest to Ready without `--timeout`: the agent's image is
 * pulled, it connects, and the host's controller takes over; on 4.x the host then installs ks-core on the
 * member through the tunnel (Helm, images) before Ready (kubesphere.md §8.1).
 */
export const JOIN_WAIT_MS = 15 * 60_000

/**
 * Follows the Cluster's conditions until Ready, showing the phase reached. `timeoutMs` is the user's
 * `--timeout` (default {@link JOIN_WAIT_MS}). On timeout, runs the doctor's checks and puts what they found
 * into the error.
 */
export async function waitForJoin(
  host: ClusterClient,
  member: ClusterClient,
  name: string,
  timeoutMs: number | undefined,
): Promise<KubeSphereCluster> {
  let cluster: KubeSphereCluster | undefined
  try {
    await waitUntil({
      what: `cluster "${name}" to become Ready`,
      defaultTimeoutMs: JOIN_WAIT_MS,
      timeoutMs,
      poll: async () => {
        cluster = await host.findCustomObject<KubeSphereCluster>(ClusterResource, name)
        const reached = PHASES.filter((phase) => conditionOf(cluster, phase)?.status === 'True')
        const next = PHASES.find((phase) => conditionOf(cluster, phase)?.status !== 'True')
        const state =
          next === undefined
            ? `host: cluster "${name}" is Ready`
            : `host: cluster "${name}" ${reached.length === 0 ? 'registered' : reached.join(', ')}; waiting for ${next}`
        return {done: next === undefined, state}
      },
      onTimeout: (last, limitMs) =>
        new KsctlError(`cluster "${name}" did not become Ready within ${formatDuration(limitMs)} (${last})`, {
          code: 'TIMEOUT',
          context: host.context,
        }),
    })
  } catch (error) {
    if (!(error instanceof KsctlError) || error.code !== 'TIMEOUT') throw error
    const report = await diagnose(host, member, name)
    const problems = report.findings.filter((finding) => finding.status !== 'ok')
    throw new KsctlError(
      `${error.message}; doctor found: ${problems.map((p) => p.message).join('; ') || 'nothing wrong yet, it may need longer'}`,
      {
        code: 'TIMEOUT',
        context: host.context,
        object: {resource: 'clusters.cluster.kubesphere.io', name},
        suggestions: problems.flatMap((problem) => (problem.fix === undefined ? [] : [problem.fix])),
      },
    )
  }
  if (cluster === undefined) throw new Error('internal error: waited for a cluster that was not read')
  return cluster
}
