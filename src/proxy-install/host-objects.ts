import {KubernetesObjectApi, PatchStrategy, type KubernetesObject} from '@kubernetes/client-node'

import {KsctlError, type ObjectRef} from '../errors.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {FIELD_MANAGER, type ManifestObject} from '../k8s/manifest-objects.js'

/** The kinds `ksctl proxy install` reads and writes on a host, and how RBAC and messages name them. */
const KINDS: Record<string, {resource: string; group?: string; namespaced: boolean}> = {
  ServiceAccount: {resource: 'serviceaccounts', namespaced: true},
  Secret: {resource: 'secrets', namespaced: true},
  ConfigMap: {resource: 'configmaps', namespaced: true},
  Service: {resource: 'services', namespaced: true},
  Deployment: {resource: 'deployments', group: 'apps', namespaced: true},
  Role: {resource: 'roles', group: 'rbac.authorization.k8s.io', namespaced: true},
  RoleBinding: {resource: 'rolebindings', group: 'rbac.authorization.k8s.io', namespaced: true},
  NetworkPolicy: {resource: 'networkpolicies', group: 'networking.k8s.io', namespaced: true},
  ClusterRole: {resource: 'clusterroles', group: 'rbac.authorization.k8s.io', namespaced: false},
  ClusterRoleBinding: {
    resource: 'clusterrolebindings',
    group: 'rbac.authorization.k8s.io',
    namespaced: false,
  },
}

/** What names an object: enough to read, delete or refer to it. */
export interface ObjectHeader {
  apiVersion: string
  kind: string
  metadata: {name: string; namespace?: string}
}

/** A host object as read: a Kubernetes object with the metadata the install compares and restores. */
export type HostObject = ManifestObject & {
  metadata: ManifestObject['metadata'] & {
    uid?: string
    resourceVersion?: string
    labels?: Record<string, string>
    annotations?: Record<string, string>
  }
}

/**
 * Reads and writes the host objects of the install through one generic client (KubernetesObjectApi), every call
 * through `ClusterClient.call`, so that each failure names its object and context and every write is journaled. Only
 * the kinds of the table above are accepted.
 */
export class HostObjects {
  private readonly api: KubernetesObjectApi

  constructor(readonly client: ClusterClient) {
    this.api = KubernetesObjectApi.makeApiClient(client.config)
  }

  static ref(object: ObjectHeader): ObjectRef {
    const kind = KINDS[object.kind]
    if (kind === undefined) {
      throw new KsctlError(
        `internal error: ksctl proxy install does not handle objects of kind ${object.kind}`,
        {
          code: 'INTERNAL',
        },
      )
    }
    return {
      resource: kind.resource,
      ...(kind.group === undefined ? {} : {group: kind.group}),
      name: object.metadata.name,
      ...(kind.namespaced && object.metadata.namespace !== undefined
        ? {namespace: object.metadata.namespace}
        : {}),
    }
  }

  find<T extends KubernetesObject = HostObject>(object: ObjectHeader): Promise<T | undefined> {
    return this.client.find({verb: 'get', object: HostObjects.ref(object)}, () =>
      this.api.read<KubernetesObject>(header(object)).then((read) => plain(read) as T),
    )
  }

  create<T extends KubernetesObject = HostObject>(object: ManifestObject, dryRun: boolean): Promise<T> {
    return this.client.call({verb: 'create', object: HostObjects.ref(object)}, () =>
      this.api
        .create<KubernetesObject>(object, undefined, dryRunValue(dryRun), FIELD_MANAGER)
        .then((created) => plain(created) as T),
    )
  }

  /** Server-side apply (ksctl's field manager, forced): creates the object or brings it to `object`. */
  apply<T extends KubernetesObject = HostObject>(object: ManifestObject, dryRun: boolean): Promise<T> {
    return this.client.call({verb: 'patch', object: HostObjects.ref(object)}, () =>
      this.api
        .patch<KubernetesObject>(
          object,
          undefined,
          dryRunValue(dryRun),
          FIELD_MANAGER,
          true,
          PatchStrategy.ServerSideApply,
        )
        .then((stored) => plain(stored) as T),
    )
  }

  /** Replaces the object; it must carry the resourceVersion it was read at (a conflict otherwise). */
  replace<T extends KubernetesObject = HostObject>(object: HostObject, dryRun: boolean): Promise<T> {
    if (object.metadata.resourceVersion === undefined) {
      throw new KsctlError(
        `internal error: a replace of ${object.kind} ${object.metadata.name} without resourceVersion`,
        {
          code: 'INTERNAL',
        },
      )
    }
    return this.client.call({verb: 'update', object: HostObjects.ref(object)}, () =>
      this.api
        .replace<KubernetesObject>(object, undefined, dryRunValue(dryRun), FIELD_MANAGER)
        .then((stored) => plain(stored) as T),
    )
  }

  /** Deletes the object, only if its uid is still `uid` when given; false when it was already gone. */
  async remove(object: ObjectHeader, uid: string | undefined, dryRun: boolean): Promise<boolean> {
    const deleted = await this.client.find({verb: 'delete', object: HostObjects.ref(object)}, () =>
      this.api.delete(header(object), undefined, dryRunValue(dryRun), undefined, undefined, undefined, {
        ...(uid === undefined ? {} : {preconditions: {uid}}),
      }),
    )
    return deleted !== undefined
  }
}

/**
 * An object as the API server sent it, as plain data: the client library hands out instances of its model classes
 * (and Dates), which a YAML dump refuses and a deep comparison tells apart from the same data read as JSON.
 */
export function plain<T extends object>(object: T): T {
  return JSON.parse(JSON.stringify(object)) as T
}

function header(object: ObjectHeader): KubernetesObject & {metadata: {name: string}} {
  return {
    apiVersion: object.apiVersion,
    kind: object.kind,
    metadata: {
      name: object.metadata.name,
      ...(object.metadata.namespace === undefined ? {} : {namespace: object.metadata.namespace}),
    },
  }
}

function dryRunValue(dryRun: boolean): string | undefined {
  return dryRun ? 'All' : undefined
}
