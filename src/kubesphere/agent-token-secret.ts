import {randomBytes} from 'node:crypto'

import {parseDuration} from '../cli/duration.js'
import type {ClusterClient, DecodedSecret} from '../k8s/cluster-client.js'
import {retryOnConflict} from '../k8s/conflict-retry.js'
import {redactor} from '../redact.js'
import {KUBESPHERE_NAMESPACE} from './constants.js'

/**
 * The agent token rotations of a host's proxy Clusters (docs/deployment.md, "Agent tokens"), in one Secret,
 * `kubesphere-system/ksctl-agent-tokens`, one data key per Cluster, referenced from each Cluster by
 * {@link AGENT_TOKEN_SECRET_ANNOTATION}. One Secret for all, as the join tokens' (src/join-token/store.ts): the
 * proxy must read and update it, and RBAC grants that on a Secret by name, not on Secrets named later.
 *
 * KubeSphere 3.4 and 4.1 read the agent token from `Cluster.spec.connection.token` alone (their Cluster CRD has no
 * reference to a Secret, and Tower, ks-apiserver's agent YAML on 3.x and the tower extension's on 4.x all read that
 * field), so the current token stays there; this Secret keeps what KubeSphere has no field for: the next token while
 * a rotation is under way, the tokens' lifetime, and the rotation's progress. `ksctl agent-token rotate` writes a
 * request; ksctl's proxy carries it out, and renews tokens that have a lifetime.
 */
export const AGENT_TOKENS_SECRET = 'ksctl-agent-tokens'
export const AGENT_TOKENS_SECRET_TYPE = 'ksctl.io/agent-tokens'
/**
 * On a Cluster: the name of the Secret that holds its rotation (under the key of the Cluster's name). A key that
 * ends in `-name`: ksctl's redactor hides the value of any key that ends in `secret` or `token`.
 */
export const AGENT_TOKEN_SECRET_ANNOTATION = 'ksctl.io/agent-token-secret-name'

/** A token is renewed once this share of its lifetime has passed, as certificates are (two thirds). */
export const RENEW_AT_SHARE = 2 / 3

/** One Cluster's entry, as stored (JSON). Times are RFC 3339. */
export interface AgentTokenRecord {
  /** The token that replaces the current one; present from the rotation's request until its end. */
  next?: string
  /** How long a token is accepted after it became current (`720h`); absent: for ever. */
  lifetime?: string
  /** When the current token became current, as far as ksctl knows (its last rotation). */
  issuedAt?: string
  requestedAt?: string
  /** When the proxy wrote the next token into the member's agent Secret. */
  deliveredAt?: string
  /** Why the rotation does not progress, as the proxy last found it; never holds a token. */
  error?: string
}

/** A record read for use: times as dates, the lifetime in milliseconds (undefined when it is not one). */
export interface AgentTokenState {
  cluster: string
  next: string | undefined
  lifetime: string | undefined
  lifetimeMs: number | undefined
  issuedAt: Date | undefined
  requestedAt: Date | undefined
  deliveredAt: Date | undefined
  error: string | undefined
}

/** The records of the Secret's data (decoded), by Cluster; keys that hold no record (edited by hand) are left out. */
export function parseAgentTokenRecords(data: Record<string, string>): Map<string, AgentTokenRecord> {
  const records = new Map<string, AgentTokenRecord>()
  for (const [cluster, text] of Object.entries(data)) {
    try {
      const record = JSON.parse(text) as unknown
      if (typeof record === 'object' && record !== null && !Array.isArray(record)) {
        const read = record as AgentTokenRecord
        redactor.register(read.next)
        records.set(cluster, read)
      }
    } catch {
      // Not a record of ours: kept as it is by every write, and ignored.
    }
  }
  return records
}

export function agentTokenState(cluster: string, record: AgentTokenRecord): AgentTokenState {
  return {
    cluster,
    next: typeof record.next === 'string' && record.next !== '' ? record.next : undefined,
    lifetime: record.lifetime,
    lifetimeMs: record.lifetime === undefined ? undefined : readableLifetimeMs(record.lifetime),
    issuedAt: date(record.issuedAt),
    requestedAt: date(record.requestedAt),
    deliveredAt: date(record.deliveredAt),
    error: record.error,
  }
}

/** When the current token stops being accepted, or undefined when it has no lifetime (or no known start). */
export function tokenExpiresAt(state: AgentTokenState): Date | undefined {
  if (state.lifetimeMs === undefined || state.issuedAt === undefined) return undefined
  return new Date(state.issuedAt.getTime() + state.lifetimeMs)
}

/** When the proxy starts renewing the current token: two thirds into its lifetime. */
export function tokenRenewsAt(state: AgentTokenState): Date | undefined {
  if (state.lifetimeMs === undefined || state.issuedAt === undefined) return undefined
  return new Date(state.issuedAt.getTime() + state.lifetimeMs * RENEW_AT_SHARE)
}

/** A new agent token as Tower makes one (the hex of 32 random bytes, kubesphere.md §4.1). */
export function newAgentToken(): string {
  return randomBytes(32).toString('hex')
}

/** Parses a lifetime (`720h`, `90m`); at least ten minutes, so that a rotation can complete well within it. */
export function lifetimeMs(text: string, flag = '--lifetime'): number {
  const ms = parseDuration(text, flag)
  if (ms < 600_000) throw new RangeError(`${flag} must be at least 10m: a rotation must fit well within it`)
  return ms
}

/** A lifetime someone wrote by hand that is not one: no lifetime, rather than a proxy that fails its pass. */
function readableLifetimeMs(text: string): number | undefined {
  try {
    return lifetimeMs(text)
  } catch {
    return undefined
  }
}

/** Reads the records; an absent Secret has none. */
export async function readAgentTokenRecords(
  client: ClusterClient,
  namespace = KUBESPHERE_NAMESPACE,
): Promise<{secret: DecodedSecret | undefined; records: Map<string, AgentTokenRecord>}> {
  const secret = await client.findSecret(namespace, AGENT_TOKENS_SECRET)
  return {secret, records: parseAgentTokenRecords(secret?.data ?? {})}
}

/** The Secret's data with `cluster`'s record replaced (or removed: undefined), every other key as it was. */
export function withAgentTokenRecord(
  data: Record<string, string>,
  cluster: string,
  record: AgentTokenRecord | undefined,
): Record<string, string> {
  const rest = Object.fromEntries(Object.entries(data).filter(([key]) => key !== cluster))
  return record === undefined ? rest : {...rest, [cluster]: JSON.stringify(record)}
}

/** The Secret as ksctl makes it when there is none yet. */
export function newAgentTokensSecret(namespace: string, data: Record<string, string>): DecodedSecret {
  return {
    metadata: {name: AGENT_TOKENS_SECRET, namespace, labels: {'app.kubernetes.io/managed-by': 'ksctl'}},
    type: AGENT_TOKENS_SECRET_TYPE,
    data,
  }
}

/**
 * Changes one Cluster's record of an existing Secret, guarded by the resourceVersion it read (a conflict reads
 * again): `change` returns the new record, or undefined to leave it. The proxy's steps of a rotation go this way;
 * `ksctl agent-token rotate`, which may create the Secret, goes through an ObjectEdit instead.
 */
export async function updateAgentTokenRecord(
  client: ClusterClient,
  namespace: string,
  cluster: string,
  change: (record: AgentTokenRecord) => AgentTokenRecord | undefined,
): Promise<boolean> {
  return retryOnConflict(async () => {
    const secret = await client.findSecret(namespace, AGENT_TOKENS_SECRET)
    const record = parseAgentTokenRecords(secret?.data ?? {}).get(cluster)
    const changed = secret === undefined || record === undefined ? undefined : change(record)
    if (secret === undefined || changed === undefined) return false
    await client.replaceSecret({...secret, data: withAgentTokenRecord(secret.data, cluster, changed)})
    return true
  })
}

function date(text: string | undefined): Date | undefined {
  if (text === undefined) return undefined
  const parsed = new Date(text)
  return Number.isNaN(parsed.getTime()) ? undefined : parsed
}
