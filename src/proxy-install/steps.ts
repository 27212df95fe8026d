import {KsctlError, describeObject} from '../errors.js'
import {withoutName, type PlannedWrite} from '../k8s/access-review.js'
import type {ManifestObject} from '../k8s/manifest-objects.js'
import {compareObjects, type EditOutcome} from '../k8s/object-edit.js'
import {log} from '../log.js'
import {HostObjects, type HostObject} from './host-objects.js'

/**
 * One write of an install or uninstall, planned from what was read: what it would change (`preview`, for a client
 * dry run), the requests it makes (for the access review), and `run`, which writes (or server-dry-runs) it and
 * returns its outcome and how to take it back.
 */
export interface Step {
  summary: string
  writes: PlannedWrite[]
  preview(): Promise<EditOutcome>
  run(dryRun: boolean): Promise<{outcome: EditOutcome; undo?: Undo}>
}

export type Undo = () => Promise<void>

/** Creates `object`, which does not exist; undone by deleting exactly what was created. */
export function createStep(objects: HostObjects, object: ManifestObject, summary: string): Step {
  const ref = HostObjects.ref(object)
  return {
    summary,
    writes: [
      {client: objects.client, verb: 'create', object: withoutName(ref)},
      {client: objects.client, verb: 'delete', object: ref},
    ],
    preview: () => Promise.resolve(compareObjects(objects.client.context, ref, summary, undefined, object)),
    async run(dryRun) {
      const created = await objects.create(object, dryRun)
      const outcome = compareObjects(
        objects.client.context,
        ref,
        summary,
        undefined,
        dryRun ? created : object,
      )
      return dryRun ? {outcome} : {outcome, undo: () => removeCreated(objects, created)}
    },
  }
}

/**
 * Server-side applies `object` over `current` (what was read; undefined when it does not exist): undone by deleting
 * what it created, or by putting `current` back.
 */
export function applyStep(
  objects: HostObjects,
  object: ManifestObject,
  current: HostObject | undefined,
  summary: string,
): Step {
  const ref = HostObjects.ref(object)
  const client = objects.client
  return {
    summary,
    writes: [
      {client, verb: 'patch', object: ref},
      ...(current === undefined
        ? [
            {client, verb: 'create' as const, object: ref},
            {client, verb: 'delete' as const, object: ref},
          ]
        : [{client, verb: 'update' as const, object: ref}]),
    ],
    // What the server would store, so that its defaults do not show as changes.
    preview: async () =>
      compareObjects(client.context, ref, summary, current, await objects.apply(object, true)),
    async run(dryRun) {
      const stored = await objects.apply(object, dryRun)
      const outcome = compareObjects(client.context, ref, summary, current, stored)
      if (dryRun || !outcome.changed) return {outcome}
      return {
        outcome,
        undo: () => (current === undefined ? removeCreated(objects, stored) : putBack(objects, current)),
      }
    },
  }
}

/** Replaces `current` with `desired` (read at the same resourceVersion); undone by putting `current` back. */
export function replaceStep(
  objects: HostObjects,
  current: HostObject,
  desired: HostObject,
  summary: string,
): Step {
  const ref = HostObjects.ref(current)
  const client = objects.client
  return {
    summary,
    writes: [{client, verb: 'update', object: ref}],
    preview: () => Promise.resolve(compareObjects(client.context, ref, summary, current, desired)),
    async run(dryRun) {
      const outcome = compareObjects(client.context, ref, summary, current, desired)
      if (!outcome.changed) return {outcome}
      await objects.replace(desired, dryRun)
      return dryRun ? {outcome} : {outcome, undo: () => putBack(objects, current)}
    },
  }
}

/** Deletes `current`, if it is still that object (its uid). Not undone: only uninstall deletes. */
export function removeStep(objects: HostObjects, current: HostObject, summary: string): Step {
  const ref = HostObjects.ref(current)
  const client = objects.client
  return {
    summary,
    writes: [{client, verb: 'delete', object: ref}],
    preview: () => Promise.resolve(compareObjects(client.context, ref, summary, current, undefined)),
    async run(dryRun) {
      await objects.remove(current, current.metadata.uid, dryRun)
      return {outcome: compareObjects(client.context, ref, summary, current, undefined)}
    },
  }
}

async function removeCreated(objects: HostObjects, created: HostObject): Promise<void> {
  await objects.remove(created, created.metadata.uid, false)
}

/** Puts an object back as it was read: the same body over the current resourceVersion. */
async function putBack(objects: HostObjects, previous: HostObject): Promise<void> {
  const now = await objects.find(previous)
  if (now === undefined) {
    const body = structuredClone(previous) as HostObject & {status?: unknown}
    delete body.metadata.resourceVersion
    delete body.metadata.uid
    delete (body.metadata as {managedFields?: unknown}).managedFields
    delete (body.metadata as {creationTimestamp?: unknown}).creationTimestamp
    delete body.status
    await objects.create(body, false)
    return
  }
  const body = structuredClone(previous)
  delete (body.metadata as {managedFields?: unknown}).managedFields
  body.metadata.resourceVersion = now.metadata.resourceVersion
  await objects.replace(body, false)
}

/** Runs an undo stack after `error` at `failedStep` (what it did, as a verb: "scale Tower's proxy…"); returns the error to throw. */
export async function rolledBack(
  error: unknown,
  failedStep: string,
  undos: {summary: string; undo: Undo}[],
  undoHint: string,
): Promise<KsctlError> {
  const failure = error instanceof KsctlError ? error : undefined
  const reason = error instanceof Error ? error.message : String(error)
  const left: string[] = []
  for (const {summary, undo} of [...undos].reverse()) {
    try {
      await undo()
      log.info(`undone: ${summary}`)
    } catch (undoError) {
      left.push(`${summary} (${undoError instanceof Error ? undoError.message : String(undoError)})`)
    }
  }
  const message =
    left.length === 0
      ? `could not ${failedStep}: ${reason}; every change before it was undone, so nothing was changed`
      : `could not ${failedStep}: ${reason}; and ${String(left.length)} change(s) before it could not be undone: ${left.join('; ')}`
  return new KsctlError(message, {
    code: failure?.code ?? 'API_ERROR',
    ...(failure?.exitCode === undefined ? {} : {exitCode: failure.exitCode}),
    ...(failure?.context === undefined ? {} : {context: failure.context}),
    ...(failure?.object === undefined ? {} : {object: failure.object}),
    suggestions: [...(failure?.suggestions ?? []), ...(left.length === 0 ? [] : [undoHint])],
    cause: error,
  })
}

/** `deployment kubesphere-system/tower` and the like, for summaries. */
export function named(object: HostObject | ManifestObject): string {
  return describeObject(HostObjects.ref(object))
}
