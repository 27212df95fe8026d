import type {V1ConfigMap} from '@kubernetes/client-node'
import {dump, load} from 'js-yaml'

import {KsctlError} from '../errors.js'
import type {ManifestObject} from '../k8s/manifest-objects.js'
import type {HostObject, ObjectHeader} from './host-objects.js'
import {INSTALL_LABELS, INSTALL_RECORD_KEY, INSTALL_RECORD_NAME, NAMESPACE} from './names.js'

/** An object as it was before the install changed it: what uninstall puts back (its labels, annotations, spec). */
export interface RecordedObject {
  apiVersion: string
  kind: string
  metadata: {
    name: string
    namespace?: string
    uid?: string
    labels?: Record<string, string>
    annotations?: Record<string, string>
  }
  spec: unknown
}

/**
 * What `ksctl proxy install` changed and made on a host, kept in ConfigMap kubesphere-system/ksctl-tower-install:
 * written before the first change, so that an install stopped at any point can still be undone, and never rewritten
 * by a later install (which only repairs drift), so that it always says what was there before the first.
 */
export interface InstallRecord {
  version: 1
  installedAt: string
  ksctlVersion: string
  /** Objects the install changes (Tower's Deployment, the tower Service, the mc-NAME Services), as they were. */
  replaced: RecordedObject[]
  /** Objects the install makes; uninstall deletes them. Secrets that were there before are not listed: they stay. */
  created: ObjectHeader[]
}

/** The part of an object the record keeps. */
export function recordObject(object: HostObject): RecordedObject {
  const {name, namespace, uid, labels, annotations} = object.metadata
  return {
    apiVersion: object.apiVersion,
    kind: object.kind,
    metadata: {
      name,
      ...(namespace === undefined ? {} : {namespace}),
      ...(uid === undefined ? {} : {uid}),
      ...(labels === undefined ? {} : {labels}),
      ...(annotations === undefined ? {} : {annotations}),
    },
    spec: object.spec,
  }
}

export function headerOf(object: ObjectHeader): ObjectHeader {
  return {
    apiVersion: object.apiVersion,
    kind: object.kind,
    metadata: {
      name: object.metadata.name,
      ...(object.metadata.namespace === undefined ? {} : {namespace: object.metadata.namespace}),
    },
  }
}

export function recordConfigMap(record: InstallRecord): ManifestObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: INSTALL_RECORD_NAME,
      namespace: NAMESPACE,
      labels: {...INSTALL_LABELS},
      annotations: {
        'ksctl.io/description':
          'What ksctl proxy install changed and made, for ksctl proxy uninstall to restore. Do not edit.',
      },
    },
    data: {[INSTALL_RECORD_KEY]: dump(record, {noRefs: true, lineWidth: -1, sortKeys: true})},
  }
}

/** The record in the ConfigMap, checked; a record that cannot be read is an error naming it. */
export function readRecord(configMap: V1ConfigMap, context: string): InstallRecord {
  const text = configMap.data?.[INSTALL_RECORD_KEY]
  let record: unknown
  try {
    record = text === undefined ? undefined : load(text)
  } catch {
    record = undefined
  }
  if (!isRecord(record)) {
    throw new KsctlError(
      `configmap ${NAMESPACE}/${INSTALL_RECORD_NAME} in context "${context}" holds no readable install record (key ${INSTALL_RECORD_KEY})`,
      {
        code: 'PRECONDITION_FAILED',
        context,
        object: {resource: 'configmaps', name: INSTALL_RECORD_NAME, namespace: NAMESPACE},
        suggestions: [
          `inspect it: kubectl --context ${context} -n ${NAMESPACE} get configmap ${INSTALL_RECORD_NAME} -o yaml`,
          'it is written by ksctl proxy install and read by ksctl proxy uninstall; without it the install cannot be undone automatically',
        ],
      },
    )
  }
  return record
}

function isRecord(value: unknown): value is InstallRecord {
  if (typeof value !== 'object' || value === null) return false
  const record = value as Partial<InstallRecord>
  const named = (object: unknown) =>
    typeof object === 'object' &&
    object !== null &&
    typeof (object as ObjectHeader).kind === 'string' &&
    typeof (object as ObjectHeader).apiVersion === 'string' &&
    typeof (object as Partial<ObjectHeader>).metadata?.name === 'string'
  return (
    record.version === 1 &&
    Array.isArray(record.replaced) &&
    record.replaced.every(named) &&
    Array.isArray(record.created) &&
    record.created.every(named)
  )
}

/** Whether two objects' restorable parts (labels, annotations, spec) are the same. */
export function sameRecordedParts(a: RecordedObject, b: RecordedObject): boolean {
  const parts = (object: RecordedObject) =>
    JSON.stringify(
      sorted({
        labels: object.metadata.labels ?? {},
        annotations: object.metadata.annotations ?? {},
        spec: object.spec,
      }),
    )
  return parts(a) === parts(b)
}

function sorted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted)
  if (typeof value !== 'object' || value === null) return value
  return Object.fromEntries(
    Object.entries(value)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, item]) => [key, sorted(item)]),
  )
}

/**
 * `current` with the recorded labels, annotations and spec put back: the body of the replace that restores it
 * (the current resourceVersion, so that a change made meanwhile is a conflict, not lost silently).
 */
export function restoredObject(current: HostObject, recorded: RecordedObject): HostObject {
  const metadata = {...current.metadata}
  delete metadata.labels
  delete metadata.annotations
  delete (metadata as {managedFields?: unknown}).managedFields
  return {
    ...current,
    metadata: {
      ...metadata,
      ...(recorded.metadata.labels === undefined ? {} : {labels: recorded.metadata.labels}),
      ...(recorded.metadata.annotations === undefined ? {} : {annotations: recorded.metadata.annotations}),
    },
    spec: recorded.spec,
  }
}
