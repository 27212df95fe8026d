import {randomBytes} from 'node:crypto'

import type {ClusterCondition, KubeSphereCluster} from '../kubesphere/cluster-object.js'

/** Tower's range for the per-cluster kubernetes port; the kubesphere port is this plus KUBESPHERE_PORT_OFFSET. */
export const KUBERNETES_PORT_RANGE = {first: 6000, last: 6999}
export const KUBESPHERE_PORT_OFFSET = 10000

/** What the proxy decides for one Cluster: its credential and its front-end ports. */
export interface ClusterAssignment {
  name: string
  token: string
  kubernetesPort: number
  kubespherePort: number
}

/** A Cluster the proxy serves: the way Tower chooses them (kubesphere.md §6). */
export function isProxyCluster(cluster: KubeSphereCluster): boolean {
  const deleting =
    (cluster.metadata as {deletionTimestamp?: unknown} | undefined)?.deletionTimestamp !== undefined
  return !deleting && cluster.spec?.joinFederation === true && cluster.spec.connection?.type === 'proxy'
}

/** 32 random bytes as 64 hex characters, like Tower's tokens, but from a cryptographic source. */
export function newToken(): string {
  return randomBytes(32).toString('hex')
}

/**
 * Tokens and ports for every proxy Cluster. A Cluster keeps the token and ports it has when they are valid
 * and not taken by a Cluster earlier in name order; the others get the lowest free port, so that ports
 * never collide (Tower's random choice could give two clusters the same port).
 */
export function assignClusters(
  clusters: KubeSphereCluster[],
  generateToken: () => string = newToken,
): ClusterAssignment[] {
  const sorted = [...clusters]
    .filter(isProxyCluster)
    .sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''))
  const used = new Set<number>()
  const keeps = new Map<string, number>()
  for (const cluster of sorted) {
    const port = (cluster.spec?.connection as {kubernetesAPIServerPort?: number} | undefined)
      ?.kubernetesAPIServerPort
    if (
      port !== undefined &&
      port >= KUBERNETES_PORT_RANGE.first &&
      port <= KUBERNETES_PORT_RANGE.last &&
      !used.has(port)
    ) {
      used.add(port)
      keeps.set(cluster.metadata?.name ?? '', port)
    }
  }
  let next = KUBERNETES_PORT_RANGE.first
  const assignments: ClusterAssignment[] = []
  for (const cluster of sorted) {
    const name = cluster.metadata?.name ?? ''
    let port = keeps.get(name)
    if (port === undefined) {
      while (used.has(next)) next++
      if (next > KUBERNETES_PORT_RANGE.last)
        throw new Error(`no free port left in ${KUBERNETES_PORT_RANGE.first}-${KUBERNETES_PORT_RANGE.last}`)
      port = next
      used.add(port)
    }
    const token = cluster.spec?.connection?.token
    assignments.push({
      name,
      token: token === undefined || token === '' ? generateToken() : token,
      kubernetesPort: port,
      kubespherePort: port + KUBESPHERE_PORT_OFFSET,
    })
  }
  return assignments
}

/**
 * The conditions with `type` set as Tower and the cluster controller set them: lastTransitionTime moves
 * only when the status changes; lastUpdateTime on every change of status, reason or message.
 */
export function withCondition(
  conditions: ClusterCondition[],
  update: {type: string; status: 'True' | 'False'; reason: string; message: string},
  now: Date,
): ClusterCondition[] {
  const time = now.toISOString().replace(/\.\d+Z$/, 'Z')
  const current = conditions.find((condition) => condition.type === update.type)
  if (
    current?.status === update.status &&
    current.reason === update.reason &&
    current.message === update.message
  ) {
    return conditions
  }
  const next: ClusterCondition = {
    ...update,
    lastUpdateTime: time,
    lastTransitionTime: current?.status === update.status ? (current.lastTransitionTime ?? time) : time,
  }
  return current === undefined
    ? [...conditions, next]
    : conditions.map((condition) => (condition.type === update.type ? next : condition))
}
