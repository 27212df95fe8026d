import type {ClusterClient} from '../k8s/cluster-client.js'
import {ClusterResource} from '../k8s/resources.js'
import {
  AGENT_TOKEN_SECRET_ANNOTATION,
  AGENT_TOKENS_SECRET,
  agentTokenState,
  readAgentTokenRecords,
  tokenExpiresAt,
  tokenRenewsAt,
} from '../kubesphere/agent-token-secret.js'
import type {KubeSphereCluster} from '../kubesphere/cluster-object.js'
import {isProxyCluster} from '../tower/proxy/kubernetes/cluster-reconcile.js'

/**
 * Where a cluster's agent token stands: `current` (no rotation), `requested` (a new token waits to be taken to the
 * member), `delivered` (it is on the member; its agents move to it), `failing` (the proxy said why it cannot go on).
 */
export type AgentTokenPhase = 'current' | 'requested' | 'delivered' | 'failing'

/** One proxy Cluster's agent token as `agent-token list` shows it, never the token. Part of the `--json` contract. */
export interface AgentTokenRow {
  cluster: string
  phase: AgentTokenPhase
  /** When the current token became current, if ksctl rotated it (Tower's first token has no known start). */
  issuedAt?: string
  lifetime?: string
  expiresAt?: string
  renewsAt?: string
  requestedAt?: string
  deliveredAt?: string
  error?: string
}

export interface AgentTokenList {
  context: string
  clusters: AgentTokenRow[]
}

export async function listAgentTokens(host: ClusterClient): Promise<AgentTokenList> {
  const [clusters, {records}] = await Promise.all([
    host.listCustomObjects<KubeSphereCluster>(ClusterResource),
    readAgentTokenRecords(host),
  ])
  const rows = clusters
    .filter(isProxyCluster)
    .map((cluster): AgentTokenRow => {
      const name = cluster.metadata?.name ?? ''
      const referenced =
        cluster.metadata?.annotations?.[AGENT_TOKEN_SECRET_ANNOTATION] === AGENT_TOKENS_SECRET
      const record = referenced ? records.get(name) : undefined
      if (record === undefined) return {cluster: name, phase: 'current'}
      const state = agentTokenState(name, record)
      const phase: AgentTokenPhase =
        state.next === undefined
          ? 'current'
          : state.error !== undefined
            ? 'failing'
            : state.deliveredAt === undefined
              ? 'requested'
              : 'delivered'
      const iso = (date: Date | undefined) => date?.toISOString()
      return {
        cluster: name,
        phase,
        ...optional('issuedAt', iso(state.issuedAt)),
        ...optional('lifetime', state.lifetime),
        ...optional('expiresAt', iso(tokenExpiresAt(state))),
        ...optional('renewsAt', iso(tokenRenewsAt(state))),
        ...optional('requestedAt', iso(state.requestedAt)),
        ...optional('deliveredAt', iso(state.deliveredAt)),
        ...optional('error', state.next === undefined ? undefined : state.error),
      }
    })
    .sort((a, b) => a.cluster.localeCompare(b.cluster))
  return {context: host.context, clusters: rows}
}

function optional<K extends string>(key: K, value: string | undefined): Partial<Record<K, string>> {
  return value === undefined ? {} : ({[key]: value} as Record<K, string>)
}
