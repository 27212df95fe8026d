import {describeObject, type ObjectRef} from '../errors.js'
import type {Operation} from './api-errors.js'
import type {RequestLimits} from './request-limits.js'

/** One write a command sent, for the report of an interrupted run. */
export interface JournalEntry {
  context: string
  operation: Operation
  /** The request's limits, which record the URL it was sent to (a dry run says so in its query). */
  limits: RequestLimits
}

const WRITE_VERBS: ReadonlySet<Operation['verb']> = new Set(['create', 'update', 'patch', 'delete'])

const PAST_TENSE: Partial<Record<Operation['verb'], string>> = {
  create: 'created',
  update: 'updated',
  patch: 'patched',
  delete: 'deleted',
}

/** Reviews are created to be answered, and store nothing: an access review is not a write. */
const REVIEW_RESOURCES: ReadonlySet<string> = new Set(['selfsubjectaccessreviews'])

export function isWrite(operation: Operation): boolean {
  return WRITE_VERBS.has(operation.verb) && !REVIEW_RESOURCES.has(operation.object.resource)
}

/**
 * The writes of one command run, kept by `ClusterClient.call` for every cluster: those the API server accepted,
 * and those still under way. A write whose answer carries the resourceVersion the object was read at in this
 * run changed nothing (a server-side apply of an unchanged object) and is not counted. Dry runs never are.
 */
export class WriteJournal {
  private readonly accepted: JournalEntry[] = []
  private readonly underWay = new Set<JournalEntry>()
  private readonly versionsRead = new Map<string, string>()

  /** A read answered: remembers the object's resourceVersion. */
  read(context: string, operation: Operation, answer: unknown): void {
    const version = resourceVersionOf(answer)
    if (version !== undefined) this.versionsRead.set(objectKey(context, operation.object), version)
  }

  begin(context: string, operation: Operation, limits: RequestLimits): JournalEntry {
    const entry = {context, operation, limits}
    this.underWay.add(entry)
    return entry
  }

  /** The API server accepted the write (`answer` is what it returned). */
  accept(entry: JournalEntry, answer: unknown): void {
    if (isDryRun(entry)) return
    const version = resourceVersionOf(answer)
    const key = objectKey(entry.context, entry.operation.object)
    if (version !== undefined && version === this.versionsRead.get(key)) return
    if (version !== undefined) this.versionsRead.set(key, version)
    this.accepted.push(entry)
  }

  end(entry: JournalEntry): void {
    this.underWay.delete(entry)
  }

  /** The writes the API servers accepted, in order: "created clusters.cluster.kubesphere.io member1 in context host". */
  changes(): string[] {
    return this.accepted.map(describe)
  }

  /** The writes sent but not answered, whose outcome is unknown. */
  pending(): string[] {
    return [...this.underWay].filter((entry) => !isDryRun(entry)).map(describe)
  }
}

function describe(entry: JournalEntry): string {
  const {verb, object} = entry.operation
  return `${PAST_TENSE[verb] ?? verb} ${describeObject(object)} in context "${entry.context}"`
}

function isDryRun(entry: JournalEntry): boolean {
  const url = entry.limits.sent?.url
  return url !== undefined && new URL(url).searchParams.has('dryRun')
}

function objectKey(context: string, object: ObjectRef): string {
  return JSON.stringify([context, object.resource, object.namespace ?? '', object.name ?? ''])
}

function resourceVersionOf(answer: unknown): string | undefined {
  if (typeof answer !== 'object' || answer === null || !('metadata' in answer)) return undefined
  const metadata = (answer as {metadata?: {resourceVersion?: unknown}}).metadata
  return typeof metadata?.resourceVersion === 'string' ? metadata.resourceVersion : undefined
}
