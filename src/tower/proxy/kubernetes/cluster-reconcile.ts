import {randomBytes} from 'node:crypto'

import {invalidInput} from '../../../errors.js'
import type {ClusterCondition, KubeSphereCluster} from '../../../kubesphere/cluster-object.js'

/** A range of per-cluster kubernetes ports; each cluster's kubesphere port is its port plus KUBESPHERE_PORT_OFFSET. */
export interface PortRange {
  first: number
  last: number
}

/** Tower's range for the per-cluster kubernetes port (kubesphere.md §6). */
export const KUBERNETES_PORT_RANGE: PortRange = {first: 6000, last: 6999}
export const KUBESPHERE_PORT_OFFSET = 10000

/** What the proxy decides for one Cluster: its credential and its front-end ports. */
export interface ClusterAssignment {
  name: string
  token: string
  kubernetesPort: number
  kubespherePort: number
  /** Service mc-NAME's ClusterIP and DNS names, once it has them (see RegisteredCluster.serverNames). */
  serverNames?: string[]
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

/** What one pass decides: the Clusters that get a port, and those for which none was left. */
export interface Assignments {
  assignments: ClusterAssignment[]
  /** Proxy Clusters left without a port: the range is full. */
  unassigned: string[]
}

/**
 * Tokens and ports for every proxy Cluster. A Cluster keeps the token and ports it has when they are valid
 * and not taken by a Cluster earlier in name order; the others get the lowest free port, so that ports
 * never collide (Tower's random choice could give two clusters the same port). When the range is full, the
 * Clusters left over get none, and the others are served all the same.
 */
export function assignClusters(
  clusters: KubeSphereCluster[],
  range: PortRange = KUBERNETES_PORT_RANGE,
  generateToken: () => string = newToken,
): Assignments {
  const sorted = [...clusters]
    .filter(isProxyCluster)
    .sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''))
  const used = new Set<number>()
  const keeps = new Map<string, number>()
  for (const cluster of sorted) {
    const port = (cluster.spec?.connection as {kubernetesAPIServerPort?: number} | undefined)
      ?.kubernetesAPIServerPort
    if (port !== undefined && port >= range.first && port <= range.last && !used.has(port)) {
      used.add(port)
      keeps.set(cluster.metadata?.name ?? '', port)
    }
  }
  let next = range.first
  const assignments: ClusterAssignment[] = []
  const unassigned: string[] = []
  for (const cluster of sorted) {
    const name = cluster.metadata?.name ?? ''
    let port = keeps.get(name)
    if (port === undefined) {
      while (used.has(next)) next++
      if (next > range.last) {
        unassigned.push(name)
        continue
      }
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
  return {assignments, unassigned}
}

/** `FIRST-LAST`, both in 1–55535 so that each kubesphere port (+10000) is a port too. */
export function parsePortRange(text: string, flag: string): PortRange {
  const match = /^(\d{1,5})-(\d{1,5})$/.exec(text.trim())
  const first = Number(match?.[1])
  const last = Number(match?.[2])
  const highest = 65535 - KUBESPHERE_PORT_OFFSET
  if (match === null || first < 1 || first > last || last > highest) {
    throw invalidInput(`${flag} "${text}" is not a port range`, [
      `use FIRST-LAST with ports from 1 to ${highest}, e.g. ${flag}=${KUBERNETES_PORT_RANGE.first}-${KUBERNETES_PORT_RANGE.last}`,
    ])
  }
  return {first, last}
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
