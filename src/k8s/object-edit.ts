import {isDeepStrictEqual} from 'node:util'

import {createTwoFilesPatch} from 'diff'
import {dump} from 'js-yaml'

import {describeObject, type ObjectRef} from '../errors.js'
import {redact, redactObject} from '../redact.js'
import type {ClusterClient} from './cluster-client.js'
import {retryOnConflict} from './conflict-retry.js'

/**
 * One change to one object, described so that it can be previewed (`--dry-run`), applied with optimistic
 * concurrency, and applied again without effect. `change` computes the desired object from the current one
 * and returns an equal object when there is nothing to do; it must touch only the fields it means to.
 */
export interface ObjectEdit<T extends object> {
  client: ClusterClient
  object: ObjectRef
  /** What the change does, in one line, for progress output and `--json`. */
  summary: string
  read(): Promise<T | undefined>
  change(current: T | undefined): T | undefined
  /**
   * Creates (current undefined) or replaces `desired`, which carries the resourceVersion of `current`, and
   * returns what the server stored; with `dryRun`, the request is a server dry run (nothing is stored).
   */
  write(desired: T, current: T | undefined, dryRun: boolean): Promise<T>
  /** Deletes the object (for a `change` that returns undefined); with `dryRun`, as a server dry run. */
  remove?(current: T, dryRun: boolean): Promise<void>
}

/** The outcome of previewing or applying an edit: part of the `--json` contract of every changing command. */
export interface EditOutcome {
  context: string
  object: ObjectRef
  summary: string
  changed: boolean
  /** What the change does to the object: `create`, `update` or `delete`; `none` when unchanged. */
  action: 'none' | 'create' | 'update' | 'delete'
  /**
   * Unified diff of the object as YAML, before and after, with every credential shown as its fingerprint
   * (`redactObject`). Empty when nothing changes.
   */
  diff: string
}

/** Reads the object and says what `edit` would change, without writing anything. */
export async function previewEdit<T extends object>(edit: ObjectEdit<T>): Promise<EditOutcome> {
  const current = await edit.read()
  const desired = edit.change(cloneOrUndefined(current))
  return outcome(edit, current, desired)
}

/**
 * Applies `edit`: read, change, write with the read resourceVersion; on a conflict, all of it again on the
 * fresh object. An object already in the desired state is not written. With `dryRun` every write is a
 * server dry run, and the outcome compares the object with what the server says it would store.
 */
export async function applyEdit<T extends object>(
  edit: ObjectEdit<T>,
  {dryRun = false}: {dryRun?: boolean} = {},
): Promise<EditOutcome> {
  return retryOnConflict(async () => {
    const current = await edit.read()
    const desired = edit.change(cloneOrUndefined(current))
    const result = outcome(edit, current, desired)
    if (!result.changed) return result
    if (desired !== undefined) {
      const stored = await edit.write(desired, current, dryRun)
      return dryRun ? outcome(edit, current, stored) : result
    }
    if (current !== undefined) {
      if (edit.remove === undefined)
        throw new Error(`internal error: ${edit.summary} wants a delete it cannot do`)
      await edit.remove(current, dryRun)
    }
    return result
  })
}

function outcome<T extends object>(
  edit: ObjectEdit<T>,
  current: T | undefined,
  desired: T | undefined,
): EditOutcome {
  return compareObjects(edit.client.context, edit.object, edit.summary, current, desired)
}

/** The outcome of changing `current` into `desired` (either may be absent), ignoring server bookkeeping. */
export function compareObjects(
  context: string,
  object: ObjectRef,
  summary: string,
  current: object | undefined,
  desired: object | undefined,
): EditOutcome {
  // Credentials become fingerprints before the objects are compared as text: a changed one shows as a
  // different fingerprint, an unchanged one as the same.
  const before = current === undefined ? '' : toDiffYaml(redactObject(current, object.resource))
  const after = desired === undefined ? '' : toDiffYaml(redactObject(desired, object.resource))
  const changed = !isDeepStrictEqual(stripVolatile(current), stripVolatile(desired))
  const name = `${context}: ${describeObject(object)}`
  return {
    context,
    object,
    summary,
    changed,
    action: !changed
      ? 'none'
      : current === undefined
        ? 'create'
        : desired === undefined
          ? 'delete'
          : 'update',
    diff: changed ? redact(createTwoFilesPatch(name, name, before, after, 'current', 'desired')) : '',
  }
}

const volatileMetadata = ['managedFields', 'resourceVersion', 'generation', 'creationTimestamp', 'uid']

/** The object as a person compares it: without server bookkeeping that changes on every write. */
function stripVolatile(object: unknown): unknown {
  if (object === undefined) return undefined
  const copy = JSON.parse(JSON.stringify(object)) as {metadata?: Record<string, unknown>}
  if (copy.metadata !== undefined) {
    copy.metadata = Object.fromEntries(
      Object.entries(copy.metadata).filter(([key]) => !volatileMetadata.includes(key)),
    )
  }
  return copy
}

function toDiffYaml(object: unknown): string {
  return dump(stripVolatile(object), {noRefs: true, lineWidth: -1, sortKeys: true})
}

function cloneOrUndefined<T extends object>(object: T | undefined): T | undefined {
  return object === undefined ? undefined : structuredClone(object)
}
