import type {Edition} from '../kubesphere/detect.js'
import type {JoinErrorCode} from './exchange-protocol.js'
import {parseJoinToken, tokenMatches} from './token.js'

/**
 * What the host keeps of one join token (never the token itself): JSON under the token's ID in the join-token
 * Secret. Times are RFC 3339. A record outlives its token by {@link RETENTION_AFTER_EXPIRY_MS}, so that a late
 * use is told "expired" (or "used", "revoked") rather than "unknown"; then the next write drops it.
 */
export interface JoinTokenRecord {
  id: string
  /** `sha256:<hex>` of `ID.SECRET` (token.ts). */
  hash: string
  /** The Cluster the token registers, by name and by UID: a Cluster deleted and created again is another. */
  cluster: string
  clusterUid: string
  edition: Edition
  hostClusterName?: string
  createdAt: string
  expiresAt: string
  /** Who ran `host invite`, as the kubeconfig names them (its context), for the list. */
  createdBy?: string
  usedAt?: string
  /** kube-system UID of the member that used it. */
  usedBy?: string
  revokedAt?: string
}

export type JoinTokenState = 'valid' | 'used' | 'expired' | 'revoked'

/** How long the record of a token is kept after the token expired. */
export const RETENTION_AFTER_EXPIRY_MS = 24 * 60 * 60 * 1000

export function stateOf(record: JoinTokenRecord, now: Date): JoinTokenState {
  if (record.revokedAt !== undefined) return 'revoked'
  if (record.usedAt !== undefined) return 'used'
  if (Date.parse(record.expiresAt) <= now.getTime()) return 'expired'
  return 'valid'
}

/** Records from the Secret's data; an entry that is not a record (edited by hand) is left out and named. */
export function parseRecords(data: Record<string, string>): {
  records: Map<string, JoinTokenRecord>
  unreadable: string[]
} {
  const records = new Map<string, JoinTokenRecord>()
  const unreadable: string[] = []
  for (const [id, text] of Object.entries(data)) {
    const record = parseRecord(id, text)
    if (record === undefined) unreadable.push(id)
    else records.set(id, record)
  }
  return {records, unreadable}
}

export function serializeRecords(records: Iterable<JoinTokenRecord>): Record<string, string> {
  return Object.fromEntries([...records].map((record) => [record.id, JSON.stringify(record)]))
}

/** The records still worth keeping: those whose token expired less than a retention period ago. */
export function withoutStale(records: Map<string, JoinTokenRecord>, now: Date): Map<string, JoinTokenRecord> {
  return new Map(
    [...records].filter(
      ([, record]) => Date.parse(record.expiresAt) + RETENTION_AFTER_EXPIRY_MS > now.getTime(),
    ),
  )
}

export interface Refusal {
  code: JoinErrorCode
  message: string
}

/**
 * The record a presented token may be used with for `cluster`, or why not. The secret is checked first, in
 * constant time, and only a token whose secret matched learns anything about its record (used, expired,
 * revoked, another cluster's): knowing an ID is not enough to learn a token's state.
 */
export function verifyPresented(
  records: Map<string, JoinTokenRecord>,
  presented: string,
  cluster: string,
  now: Date,
): {record: JoinTokenRecord} | {refusal: Refusal} {
  const token = parseJoinToken(presented)
  if (token === undefined) {
    return {refusal: {code: 'token_malformed', message: 'the join token is not of the form ID.SECRET'}}
  }
  const record = records.get(token.id)
  if (!tokenMatches(token, record?.hash) || record === undefined) {
    return {refusal: {code: 'token_invalid', message: `no join token ${token.id} with this secret`}}
  }
  if (record.cluster !== cluster) {
    return {
      refusal: {
        code: 'token_wrong_cluster',
        message: `join token ${record.id} was issued for cluster "${record.cluster}", not "${cluster}"`,
      },
    }
  }
  switch (stateOf(record, now)) {
    case 'revoked':
      return {
        refusal: {
          code: 'token_revoked',
          message: `join token ${record.id} was revoked at ${record.revokedAt ?? '?'}`,
        },
      }
    case 'used':
      return {
        refusal: {
          code: 'token_used',
          message: `join token ${record.id} was used at ${record.usedAt ?? '?'}; a join token is good for one join`,
        },
      }
    case 'expired':
      return {
        refusal: {code: 'token_expired', message: `join token ${record.id} expired at ${record.expiresAt}`},
      }
    case 'valid':
      return {record}
  }
}

function parseRecord(id: string, text: string): JoinTokenRecord | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null) return undefined
  const record = value as Partial<JoinTokenRecord>
  const strings = [record.hash, record.cluster, record.clusterUid, record.createdAt, record.expiresAt]
  if (record.id !== id || strings.some((field) => typeof field !== 'string')) return undefined
  if (record.edition !== '3.x' && record.edition !== '4.x') return undefined
  if (Number.isNaN(Date.parse(record.expiresAt ?? ''))) return undefined
  return record as JoinTokenRecord
}
