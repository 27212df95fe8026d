import type {ClusterClient, DecodedSecret} from '../k8s/cluster-client.js'
import {retryOnConflict} from '../k8s/conflict-retry.js'
import type {ObjectEdit} from '../k8s/object-edit.js'
import {KUBESPHERE_NAMESPACE} from '../kubesphere/constants.js'
import {
  parseRecords,
  RETENTION_AFTER_EXPIRY_MS,
  stateOf,
  verifyPresented,
  type JoinTokenRecord,
  type Refusal,
} from './records.js'

/**
 * Every join token of a host, as records (never the tokens), in one Secret: `kubesphere-system/ksctl-join-tokens`,
 * one data key per token ID. One Secret rather than one per token, because the proxy must read and update it:
 * RBAC can grant `get` and `update` on one Secret by name, but not on Secrets whose names are made later, and
 * a Role that lets the proxy read every Secret of kubesphere-system would give it KubeSphere's own credentials.
 * Uses of different tokens then conflict on the one resourceVersion, and are retried (a join is rare).
 */
export const JOIN_TOKENS_SECRET = 'ksctl-join-tokens'
export const JOIN_TOKENS_SECRET_TYPE = 'ksctl.io/join-tokens'

const secretRef = (namespace: string) => ({resource: 'secrets', name: JOIN_TOKENS_SECRET, namespace})

export interface StoredJoinTokens {
  records: Map<string, JoinTokenRecord>
  /** Keys of the Secret that hold no readable record (edited by hand): kept as they are. */
  unreadable: string[]
}

export async function readJoinTokens(
  client: ClusterClient,
  namespace = KUBESPHERE_NAMESPACE,
): Promise<StoredJoinTokens> {
  const secret = await client.findSecret(namespace, JOIN_TOKENS_SECRET)
  return parseRecords(secret?.data ?? {})
}

/**
 * The Secret's data after `update` changed the records it was given; records whose token expired more than a
 * retention period ago are dropped on the way, and keys that hold no record are kept.
 */
function rewrite(
  data: Record<string, string>,
  now: Date,
  update: (records: Map<string, JoinTokenRecord>) => void,
): Record<string, string> {
  const {records} = parseRecords(data)
  const kept = Object.fromEntries(
    Object.entries(data).filter(([id]) => {
      const record = records.get(id)
      return record === undefined || Date.parse(record.expiresAt) + RETENTION_AFTER_EXPIRY_MS > now.getTime()
    }),
  )
  for (const id of Object.keys(data)) if (!(id in kept)) records.delete(id)
  update(records)
  for (const [id, record] of records) kept[id] = JSON.stringify(record)
  return kept
}

/** A change of the join-token Secret, made (created) when it does not exist yet. */
function joinTokensEdit(
  client: ClusterClient,
  summary: string,
  namespace: string,
  now: Date,
  update: (records: Map<string, JoinTokenRecord>) => void,
): ObjectEdit<DecodedSecret> {
  return {
    client,
    object: secretRef(namespace),
    summary,
    read: () => client.findSecret(namespace, JOIN_TOKENS_SECRET),
    change(current) {
      const data = rewrite(current?.data ?? {}, now, update)
      // Nothing to keep and no Secret yet: nothing to write.
      if (current === undefined && Object.keys(data).length === 0) return undefined
      return {
        metadata: current?.metadata ?? {
          name: JOIN_TOKENS_SECRET,
          namespace,
          labels: {'app.kubernetes.io/managed-by': 'ksctl'},
        },
        type: current?.type ?? JOIN_TOKENS_SECRET_TYPE,
        data,
      }
    },
    async write(desired, current, dryRun) {
      if (current !== undefined) return decodeStored(await client.replaceSecret(desired, dryRun), desired)
      if (dryRun) return desired
      return decodeStored(await client.createSecret(desired), desired)
    },
  }
}

/** Adds the record of a new token. */
export function addJoinTokenEdit(
  client: ClusterClient,
  record: JoinTokenRecord,
  now: Date,
  namespace = KUBESPHERE_NAMESPACE,
): ObjectEdit<DecodedSecret> {
  return joinTokensEdit(
    client,
    `add join token ${record.id} for cluster ${record.cluster}`,
    namespace,
    now,
    (records) => {
      if (records.has(record.id)) {
        // 30 random bits: a collision is a one-in-a-billion event; the next run draws another ID.
        throw new Error(
          `internal error: a join token with ID ${record.id} exists already; run the command again`,
        )
      }
      records.set(record.id, record)
    },
  )
}

/** Marks every valid token `select` picks as revoked (used, expired and revoked ones are left as they are). */
export function revokeJoinTokensEdit(
  client: ClusterClient,
  summary: string,
  select: (record: JoinTokenRecord) => boolean,
  now: Date,
  namespace = KUBESPHERE_NAMESPACE,
): ObjectEdit<DecodedSecret> {
  return joinTokensEdit(client, summary, namespace, now, (records) => {
    for (const [id, record] of records) {
      if (select(record) && stateOf(record, now) === 'valid') {
        records.set(id, {...record, revokedAt: now.toISOString()})
      }
    }
  })
}

/** What must hold, besides the token itself, for a use to go ahead (the Cluster exists, is this member's…). */
export type UsePrecheck = (record: JoinTokenRecord) => Promise<Refusal | undefined>

/**
 * Verifies a presented token for `cluster`, then (with `use`) marks it used by `memberUid`, atomically: the
 * update carries the resourceVersion the verification read, so of two uses at once only one is stored; the other
 * reads again and finds the token used. Returns the record it verified, or why the token is refused.
 */
export async function verifyJoinToken(
  client: ClusterClient,
  request: {cluster: string; token: string; memberUid: string},
  options: {use: boolean; now: () => Date; precheck: UsePrecheck; namespace?: string},
): Promise<{record: JoinTokenRecord} | {refusal: Refusal}> {
  const namespace = options.namespace ?? KUBESPHERE_NAMESPACE
  return retryOnConflict(async () => {
    const secret = await client.findSecret(namespace, JOIN_TOKENS_SECRET)
    const now = options.now()
    const verified = verifyPresented(
      parseRecords(secret?.data ?? {}).records,
      request.token,
      request.cluster,
      now,
    )
    if ('refusal' in verified) return verified
    const refusal = await options.precheck(verified.record)
    if (refusal !== undefined) return {refusal}
    if (!options.use || secret === undefined) return verified
    const used = {...verified.record, usedAt: now.toISOString(), usedBy: request.memberUid}
    const data = rewrite(secret.data, now, (records) => records.set(used.id, used))
    await client.replaceSecret({...secret, data})
    return {record: used}
  })
}

function decodeStored(stored: {metadata?: DecodedSecret['metadata']}, desired: DecodedSecret): DecodedSecret {
  return {...desired, metadata: stored.metadata}
}
