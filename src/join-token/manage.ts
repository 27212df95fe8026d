import {KsctlError} from '../errors.js'
import {editWrites, requireAccess} from '../k8s/access-review.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {runEdit, type DryRun} from '../k8s/dry-run.js'
import {previewEdit, type EditOutcome} from '../k8s/object-edit.js'
import {KUBESPHERE_NAMESPACE} from '../kubesphere/constants.js'
import {stateOf, type JoinTokenState} from './records.js'
import {JOIN_TOKENS_SECRET, readJoinTokens, revokeJoinTokensEdit} from './store.js'

/** One join token as `join-token list` shows it: its record, never the token. Part of the `--json` contract. */
export interface JoinTokenRow {
  id: string
  cluster: string
  state: JoinTokenState
  createdAt: string
  expiresAt: string
  createdBy?: string
  usedAt?: string
  /** kube-system UID of the member that used it. */
  usedBy?: string
  revokedAt?: string
}

export interface JoinTokenList {
  context: string
  tokens: JoinTokenRow[]
  /** Keys of the Secret that hold no readable record (edited by hand). */
  unreadable: string[]
}

export async function listJoinTokens(
  host: ClusterClient,
  options: {cluster?: string | undefined; now?: Date},
): Promise<JoinTokenList> {
  const now = options.now ?? new Date()
  const {records, unreadable} = await readJoinTokens(host)
  const tokens = [...records.values()]
    .filter((record) => options.cluster === undefined || record.cluster === options.cluster)
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
    .map((record): JoinTokenRow => ({
      id: record.id,
      cluster: record.cluster,
      state: stateOf(record, now),
      createdAt: record.createdAt,
      expiresAt: record.expiresAt,
      ...(record.createdBy !== undefined && {createdBy: record.createdBy}),
      ...(record.usedAt !== undefined && {usedAt: record.usedAt}),
      ...(record.usedBy !== undefined && {usedBy: record.usedBy}),
      ...(record.revokedAt !== undefined && {revokedAt: record.revokedAt}),
    }))
  return {context: host.context, tokens, unreadable}
}

/** What `join-token revoke` did or would do. Part of the `--json` contract. */
export interface JoinTokenRevokeResult {
  context: string
  /** The tokens revoked by this run (valid ones only). */
  revoked: string[]
  /** Tokens asked for that could not be used anyway, with their state. */
  unchanged: {id: string; state: JoinTokenState}[]
  dryRun: boolean
  changes: EditOutcome[]
}

/**
 * Revokes join tokens by ID, or every valid one of a cluster. An ID that names no token is an error, and then
 * nothing is revoked. A revoked token's record stays until a day after its expiry, so that its use is refused
 * as revoked rather than unknown.
 */
export async function revokeJoinTokens(
  host: ClusterClient,
  options: {ids: string[]; cluster?: string | undefined; dryRun: DryRun; now?: Date},
): Promise<JoinTokenRevokeResult> {
  const now = options.now ?? new Date()
  const {records} = await readJoinTokens(host)
  const unknown = options.ids.filter((id) => !records.has(id))
  if (unknown.length > 0) {
    throw new KsctlError(
      `no join token ${unknown.join(', ')} in secret ${KUBESPHERE_NAMESPACE}/${JOIN_TOKENS_SECRET} of context "${host.context}": nothing was revoked`,
      {
        code: 'NOT_FOUND',
        context: host.context,
        object: {resource: 'secrets', name: JOIN_TOKENS_SECRET, namespace: KUBESPHERE_NAMESPACE},
        suggestions: [`the tokens there: ksctl join-token list --context ${host.context}`],
      },
    )
  }
  const chosen = [...records.values()].filter(
    (record) =>
      options.ids.includes(record.id) ||
      (options.cluster !== undefined && record.cluster === options.cluster),
  )
  const revoked = chosen.filter((record) => stateOf(record, now) === 'valid').map((record) => record.id)
  const unchanged = chosen
    .filter((record) => !revoked.includes(record.id))
    .map((record) => ({id: record.id, state: stateOf(record, now)}))
  if (revoked.length === 0)
    return {context: host.context, revoked, unchanged, dryRun: options.dryRun !== false, changes: []}
  const edit = () =>
    revokeJoinTokensEdit(
      host,
      `revoke join token${revoked.length > 1 ? 's' : ''} ${revoked.join(', ')}`,
      (record) => revoked.includes(record.id),
      now,
    )
  await requireAccess(editWrites(host, await previewEdit(edit())), options.dryRun)
  return {
    context: host.context,
    revoked,
    unchanged,
    dryRun: options.dryRun !== false,
    changes: [await runEdit(edit(), options.dryRun)],
  }
}
