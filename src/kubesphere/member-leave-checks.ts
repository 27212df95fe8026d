import {KsctlError, preconditionFailed} from '../errors.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {log} from '../log.js'
import {allInOrder} from '../promises.js'
import {agentArgument, kubeSystemUid} from './cluster-identity.js'
import {memberUidOf, type KubeSphereCluster} from './cluster-object.js'
import {HOST_CLUSTER_LABEL} from './constants.js'
import {detectKubeSphere, type KubeSphereInfo} from './detect.js'
import {agentTokens, readMemberAgents, runningAgents, type MemberAgents} from './member-agents.js'

/** What the member looked like before any change. */
export interface MemberState {
  info: KubeSphereInfo
  uid: string
  /** Tower's agent, ksctl's, both (during a runtime migration), or none. */
  agents: MemberAgents
}

/** Reads the member; unreachable, it is an error, unless `--force` says to go on with the host side only. */
export async function readMemberOrForce(
  host: ClusterClient,
  member: ClusterClient,
  name: string,
  force: boolean,
): Promise<MemberState | undefined> {
  try {
    const [info, uid, agents] = await allInOrder([
      detectKubeSphere(member),
      kubeSystemUid(member),
      readMemberAgents(member),
    ] as const)
    return {info, uid, agents}
  } catch (error) {
    const unreachable =
      error instanceof KsctlError && (error.code === 'UNREACHABLE' || error.code === 'TIMEOUT')
    if (!unreachable) throw error
    if (force) {
      log.warn(`${error.message}; --force: removing the host side only`)
      return undefined
    }
    throw new KsctlError(`${error.message}: nothing was changed`, {
      code: error.code,
      context: member.context,
      ...(error.object === undefined ? {} : {object: error.object}),
      cause: error,
      suggestions: [
        ...error.suggestions,
        `if the member is gone for good, remove the host side only: ksctl member leave ${name} ` +
          `--host-context ${host.context} --member-context ${member.context} --force`,
      ],
    })
  }
}

/**
 * Refuses, before any change, to touch a member that is not the one the host's Cluster stands for: the
 * agents (Tower's, ksctl's, or both) must be this cluster's, and the Cluster's recorded member UID must be the
 * member's kube-system UID. A Cluster that recorded no UID (its agent never got through) is this member's if the
 * member's agent carries the Cluster's token: Tower's in its --token argument, ksctl's in its token Secret.
 */
export function verifyMember(
  host: ClusterClient,
  member: ClusterClient,
  name: string,
  cluster: KubeSphereCluster | undefined,
  state: MemberState,
): void {
  for (const {runtime, deployment} of runningAgents(state.agents)) {
    const agentName = agentArgument(deployment, 'name')
    if (agentName === name) continue
    throw preconditionFailed(
      `the member of context "${member.context}" runs ${runtime === 'ksctl' ? "ksctl's agent" : 'the agent'} of cluster "${agentName ?? '(no --name)'}", ` +
        `not "${name}": nothing was changed`,
      member.context,
      [
        `if that is the cluster to remove: ksctl member leave ${agentName ?? 'NAME'} --host-context ${host.context} ` +
          `--member-context ${member.context}`,
      ],
    )
  }
  if (cluster === undefined) return
  checkClusterIdentity(host, member, cluster, state.uid)
  if (memberUidOf(cluster) !== undefined) return
  const token = cluster.spec?.connection?.token
  if (token === undefined || token === '' || !agentTokens(state.agents).includes(token)) {
    throw preconditionFailed(
      `cluster "${name}" in context "${host.context}" records no member UID, and the member of context ` +
        `"${member.context}" runs no agent with its token, so ksctl cannot tell that they are the same cluster: ` +
        'nothing was changed',
      host.context,
      [
        `look at it: kubectl --context ${host.context} get cluster ${name} -o yaml`,
        `if it is a cluster you no longer have, delete it yourself: kubectl --context ${host.context} delete cluster ${name}`,
      ],
    )
  }
}

/** The checks that hold for the Cluster at every attempt to delete it, the last one included. */
export function checkClusterIdentity(
  host: ClusterClient,
  member: ClusterClient,
  cluster: KubeSphereCluster,
  memberUid: string | undefined,
): void {
  const name = cluster.metadata?.name ?? ''
  if (isHostCluster(cluster)) throw hostClusterRefused(host, name)
  const recorded = memberUidOf(cluster)
  if (memberUid !== undefined && recorded !== undefined && recorded !== memberUid) {
    throw preconditionFailed(
      `cluster "${name}" in context "${host.context}" stands for another cluster (kube-system UID ${recorded}), ` +
        `not for the member of context "${member.context}" (kube-system UID ${memberUid}): nothing was changed`,
      host.context,
      [
        `pass the context of cluster "${name}" as --member-context`,
        `look at it: kubectl --context ${host.context} get cluster ${name} -o yaml`,
      ],
    )
  }
}

export function isHostCluster(cluster: KubeSphereCluster): boolean {
  return cluster.metadata?.labels?.[HOST_CLUSTER_LABEL] !== undefined
}

export function hostClusterRefused(host: ClusterClient, name: string): KsctlError {
  return preconditionFailed(
    `cluster "${name}" is the host cluster itself in context "${host.context}" ` +
      `(label ${HOST_CLUSTER_LABEL}); member leave removes members only: nothing was changed`,
    host.context,
    [`list the members with: ksctl status --context ${host.context}`],
  )
}
