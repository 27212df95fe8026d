import {AuthorizationV1Api} from '@kubernetes/client-node'

import {KsctlError, type ObjectRef} from '../errors.js'
import {log} from '../log.js'
import type {ClusterClient} from './cluster-client.js'
import type {DryRun} from './dry-run.js'
import type {ManifestObjects, ManifestObject} from './manifest-objects.js'
import type {EditOutcome} from './object-edit.js'

export type WriteVerb = 'create' | 'update' | 'patch' | 'delete'

/**
 * One request of a command's plan, as the API server authorizes it: the verb, and the object's group,
 * resource, namespace and name. A create sent with POST carries no name (the server authorizes it without
 * one); a server-side apply that creates carries it.
 */
export interface PlannedWrite {
  client: ClusterClient
  verb: WriteVerb
  object: ObjectRef
}

/** A planned write the user may not make, with the authorizer's reason when it gave one. */
export interface MissingAccess {
  context: string
  verb: WriteVerb
  object: ObjectRef
  reason?: string
}

/** The write an edit's preview says it would make: an update, a create (POST) or a delete; none if unchanged. */
export function editWrites(client: ClusterClient, outcome: EditOutcome): PlannedWrite[] {
  if (!outcome.changed) return []
  const verb = outcome.action === 'create' ? 'create' : outcome.action === 'delete' ? 'delete' : 'update'
  return [{client, verb, object: verb === 'create' ? withoutName(outcome.object) : outcome.object}]
}

/** A create sent with POST names no object: the API server authorizes it without a name. */
export function withoutName(object: ObjectRef): ObjectRef {
  const unnamed = {...object}
  delete unnamed.name
  return unnamed
}

/** A server-side apply: a patch, and a create too when the object does not exist yet. */
export function applyWrites(
  client: ClusterClient,
  manifest: ManifestObjects,
  object: ManifestObject,
  exists: boolean,
): PlannedWrite[] {
  const ref = manifest.ref(object)
  const patch: PlannedWrite = {client, verb: 'patch', object: ref}
  return exists ? [patch] : [patch, {client, verb: 'create', object: ref}]
}

/**
 * Asks each cluster, with one SelfSubjectAccessReview per distinct write, whether the user may make every
 * write of the plan. SelfSubjectAccessReview answers exactly the question the API server will ask at the
 * write; SelfSubjectRulesReview is namespace-scoped, says nothing of cluster-scoped objects, and is
 * incomplete under webhook authorizers, so it is not used.
 */
export async function missingAccess(writes: PlannedWrite[]): Promise<MissingAccess[]> {
  const distinct = new Map<string, PlannedWrite>()
  for (const write of writes) distinct.set(writeKey(write), write)
  const answers = await Promise.all(
    [...distinct.values()].map(async (write): Promise<MissingAccess | undefined> => {
      const status = await review(write)
      if (status.allowed) return undefined
      const reason = status.reason ?? status.evaluationError
      return {
        context: write.client.context,
        verb: write.verb,
        object: write.object,
        ...(reason === undefined || reason === '' ? {} : {reason}),
      }
    }),
  )
  return answers.filter((answer) => answer !== undefined)
}

/**
 * Refuses, before the first write, a plan the user lacks the rights for: FORBIDDEN, listing what is
 * missing per context, and the RBAC rules that would grant it. A client-side dry run only warns: showing
 * what would change needs no write rights.
 */
export async function requireAccess(writes: PlannedWrite[], dryRun: DryRun): Promise<void> {
  const missing = await missingAccess(writes)
  if (missing.length === 0) return
  const byContext = groupBy(missing, (item) => item.context)
  const summary = [...byContext].map(
    ([context, items]) => `in context "${context}": ${describeMissing(items)}`,
  )
  if (dryRun === 'client') {
    log.warn(`the real run would be refused: missing permissions ${summary.join('; ')}`)
    return
  }
  const [first] = missing
  throw new KsctlError(`missing permissions, so nothing was changed: ${summary.join('; ')}`, {
    code: 'FORBIDDEN',
    ...(first === undefined ? {} : {context: first.context, object: first.object}),
    suggestions: [
      ...[...byContext].map(([context, items]) => `grant in context "${context}": ${rbacRules(items)}`),
      ...(first === undefined ? [] : [canICommand(first)]),
    ],
  })
}

async function review(
  write: PlannedWrite,
): Promise<{allowed: boolean; reason?: string; evaluationError?: string}> {
  const api = write.client.config.makeApiClient(AuthorizationV1Api)
  const {object} = write
  const answer = await write.client.call(
    {verb: 'create', object: {resource: 'selfsubjectaccessreviews', group: 'authorization.k8s.io'}},
    () =>
      api.createSelfSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SelfSubjectAccessReview',
          spec: {
            resourceAttributes: {
              verb: write.verb,
              group: object.group ?? '',
              resource: pluralOf(object),
              ...(object.namespace === undefined ? {} : {namespace: object.namespace}),
              ...(object.name === undefined ? {} : {name: object.name}),
            },
          },
        },
      }),
  )
  return {
    allowed: answer.status?.allowed === true,
    ...(answer.status?.reason === undefined ? {} : {reason: answer.status.reason}),
    ...(answer.status?.evaluationError === undefined ? {} : {evaluationError: answer.status.evaluationError}),
  }
}

/** `clusters` of `clusters.cluster.kubesphere.io`: refs name resources as kubectl does, RBAC by plural. */
function pluralOf(object: ObjectRef): string {
  const suffix = object.group === undefined ? '' : `.${object.group}`
  return suffix !== '' && object.resource.endsWith(suffix)
    ? object.resource.slice(0, -suffix.length)
    : object.resource
}

/** `clusters.cluster.kubesphere.io` or `deployments.apps`: the resource as kubectl and RBAC rules spell it. */
function qualifiedResource(object: ObjectRef): string {
  const plural = pluralOf(object)
  return object.group === undefined ? plural : `${plural}.${object.group}`
}

function writeKey(write: PlannedWrite): string {
  const {object} = write
  return [
    write.client.context,
    write.verb,
    object.group,
    pluralOf(object),
    object.namespace,
    object.name,
  ].join('\0')
}

/** `create, patch clusters.cluster.kubesphere.io member1; delete deployments.apps kubesphere-system/cluster-agent` */
function describeMissing(items: MissingAccess[]): string {
  const byObject = groupBy(items, (item) =>
    [qualifiedResource(item.object), item.object.namespace ?? '', item.object.name ?? ''].join('\0'),
  )
  return [...byObject.values()]
    .map((group) => {
      const [{object}] = group as [MissingAccess]
      const target =
        object.name === undefined
          ? `${qualifiedResource(object)}${object.namespace === undefined ? '' : ` in namespace ${object.namespace}`}`
          : `${qualifiedResource(object)} ${object.namespace === undefined ? '' : `${object.namespace}/`}${object.name}`
      return `${group.map((item) => item.verb).join(', ')} ${target}`
    })
    .join('; ')
}

/** The RBAC rules that grant what is missing: one per group, resource and scope (cluster or namespace). */
function rbacRules(items: MissingAccess[]): string {
  const byRule = groupBy(items, (item) =>
    [item.object.group ?? '', pluralOf(item.object), item.object.namespace ?? ''].join('\0'),
  )
  return [...byRule.values()]
    .map((group) => {
      const [{object}] = group as [MissingAccess]
      const verbs = [...new Set(group.map((item) => item.verb))].join(', ')
      const scope = object.namespace === undefined ? 'ClusterRole' : `Role in namespace ${object.namespace}`
      return `${scope} rule {apiGroups: ["${object.group ?? ''}"], resources: ["${pluralOf(object)}"], verbs: [${verbs}]}`
    })
    .join('; ')
}

function canICommand(item: MissingAccess): string {
  const {object} = item
  const target = `${qualifiedResource(object)}${object.name === undefined ? '' : `/${object.name}`}`
  const namespace = object.namespace === undefined ? '' : ` -n ${object.namespace}`
  return `check with: kubectl --context ${item.context} auth can-i ${item.verb} ${target}${namespace}`
}

function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>()
  for (const item of items) groups.set(key(item), [...(groups.get(key(item)) ?? []), item])
  return groups
}
