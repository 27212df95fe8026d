import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  PolicyV1Api,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type KubernetesObject,
  type V1DeleteOptions,
  type V1Preconditions,
} from '@kubernetes/client-node'

import {KsctlError, type ObjectRef} from '../errors.js'
import type {ClusterClient} from './cluster-client.js'
import {compareObjects, type EditOutcome} from './object-edit.js'

/** One Kubernetes object of a manifest ksctl applies (the agent's, a Cluster), as plain data. */
export interface ManifestObject {
  apiVersion: string
  kind: string
  metadata: {name: string; namespace?: string; [key: string]: unknown}
  [key: string]: unknown
}

interface KindAccess {
  resource: string
  read: (name: string, namespace: string) => Promise<unknown>
  apply: (name: string, namespace: string, body: object, dryRun: string | undefined) => Promise<unknown>
  remove: (name: string, namespace: string, body: V1DeleteOptions | undefined) => Promise<unknown>
}

/** The field manager of every server-side apply ksctl makes. */
export const FIELD_MANAGER = 'ksctl'
const applyHeader = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply)

/**
 * Server-side apply of the few kinds ksctl puts into clusters, with typed clients rather than discovery:
 * an explicit table says which kinds ksctl may touch. Applying is idempotent (an unchanged object is not
 * rewritten) and a dry run returns what the server would store, for diffs.
 */
export class ManifestObjects {
  private readonly kinds: Record<string, KindAccess>

  constructor(private readonly client: ClusterClient) {
    const core = client.config.makeApiClient(CoreV1Api)
    const apps = client.config.makeApiClient(AppsV1Api)
    const rbac = client.config.makeApiClient(RbacAuthorizationV1Api)
    const policy = client.config.makeApiClient(PolicyV1Api)
    const custom = client.config.makeApiClient(CustomObjectsApi)
    const common = (dryRun: string | undefined) => ({
      fieldManager: FIELD_MANAGER,
      force: true,
      ...(dryRun === undefined ? {} : {dryRun}),
    })
    this.kinds = {
      Namespace: {
        resource: 'namespaces',
        read: (name) => core.readNamespace({name}),
        apply: (name, _ns, body, dryRun) => core.patchNamespace({name, body, ...common(dryRun)}, applyHeader),
        remove: (name, _ns, body) => core.deleteNamespace({name, body}),
      },
      ServiceAccount: {
        resource: 'serviceaccounts',
        read: (name, namespace) => core.readNamespacedServiceAccount({name, namespace}),
        apply: (name, namespace, body, dryRun) =>
          core.patchNamespacedServiceAccount({name, namespace, body, ...common(dryRun)}, applyHeader),
        remove: (name, namespace, body) => core.deleteNamespacedServiceAccount({name, namespace, body}),
      },
      Secret: {
        resource: 'secrets',
        read: (name, namespace) => core.readNamespacedSecret({name, namespace}),
        apply: (name, namespace, body, dryRun) =>
          core.patchNamespacedSecret({name, namespace, body, ...common(dryRun)}, applyHeader),
        remove: (name, namespace, body) => core.deleteNamespacedSecret({name, namespace, body}),
      },
      ConfigMap: {
        resource: 'configmaps',
        read: (name, namespace) => core.readNamespacedConfigMap({name, namespace}),
        apply: (name, namespace, body, dryRun) =>
          core.patchNamespacedConfigMap({name, namespace, body, ...common(dryRun)}, applyHeader),
        remove: (name, namespace, body) => core.deleteNamespacedConfigMap({name, namespace, body}),
      },
      Service: {
        resource: 'services',
        read: (name, namespace) => core.readNamespacedService({name, namespace}),
        apply: (name, namespace, body, dryRun) =>
          core.patchNamespacedService({name, namespace, body, ...common(dryRun)}, applyHeader),
        remove: (name, namespace, body) => core.deleteNamespacedService({name, namespace, body}),
      },
      ClusterRole: {
        resource: 'clusterroles',
        read: (name) => rbac.readClusterRole({name}),
        apply: (name, _ns, body, dryRun) =>
          rbac.patchClusterRole({name, body, ...common(dryRun)}, applyHeader),
        remove: (name, _ns, body) => rbac.deleteClusterRole({name, body}),
      },
      ClusterRoleBinding: {
        resource: 'clusterrolebindings',
        read: (name) => rbac.readClusterRoleBinding({name}),
        apply: (name, _ns, body, dryRun) =>
          rbac.patchClusterRoleBinding({name, body, ...common(dryRun)}, applyHeader),
        remove: (name, _ns, body) => rbac.deleteClusterRoleBinding({name, body}),
      },
      Role: {
        resource: 'roles',
        read: (name, namespace) => rbac.readNamespacedRole({name, namespace}),
        apply: (name, namespace, body, dryRun) =>
          rbac.patchNamespacedRole({name, namespace, body, ...common(dryRun)}, applyHeader),
        remove: (name, namespace, body) => rbac.deleteNamespacedRole({name, namespace, body}),
      },
      RoleBinding: {
        resource: 'rolebindings',
        read: (name, namespace) => rbac.readNamespacedRoleBinding({name, namespace}),
        apply: (name, namespace, body, dryRun) =>
          rbac.patchNamespacedRoleBinding({name, namespace, body, ...common(dryRun)}, applyHeader),
        remove: (name, namespace, body) => rbac.deleteNamespacedRoleBinding({name, namespace, body}),
      },
      Deployment: {
        resource: 'deployments',
        read: (name, namespace) => apps.readNamespacedDeployment({name, namespace}),
        apply: (name, namespace, body, dryRun) =>
          apps.patchNamespacedDeployment({name, namespace, body, ...common(dryRun)}, applyHeader),
        remove: (name, namespace, body) => apps.deleteNamespacedDeployment({name, namespace, body}),
      },
      PodDisruptionBudget: {
        resource: 'poddisruptionbudgets',
        read: (name, namespace) => policy.readNamespacedPodDisruptionBudget({name, namespace}),
        apply: (name, namespace, body, dryRun) =>
          policy.patchNamespacedPodDisruptionBudget({name, namespace, body, ...common(dryRun)}, applyHeader),
        remove: (name, namespace, body) =>
          policy.deleteNamespacedPodDisruptionBudget({name, namespace, body}),
      },
      Cluster: {
        resource: 'clusters.cluster.kubesphere.io',
        read: (name) => custom.getClusterCustomObject({...clusterGvr, name}),
        apply: (name, _ns, body, dryRun) =>
          custom.patchClusterCustomObject({...clusterGvr, name, body, ...common(dryRun)}, applyHeader),
        remove: (name, _ns, body) => custom.deleteClusterCustomObject({...clusterGvr, name, body}),
      },
    }
  }

  ref(object: ManifestObject): ObjectRef {
    const {resource} = this.access(object)
    const group = object.apiVersion.includes('/')
      ? object.apiVersion.slice(0, object.apiVersion.indexOf('/'))
      : ''
    return {
      resource,
      ...(group === '' ? {} : {group}),
      name: object.metadata.name,
      ...(object.metadata.namespace === undefined ? {} : {namespace: object.metadata.namespace}),
    }
  }

  async find<T extends KubernetesObject>(object: ManifestObject): Promise<T | undefined> {
    const access = this.access(object)
    return (await this.client.find({verb: 'get', object: this.ref(object)}, () =>
      access.read(object.metadata.name, object.metadata.namespace ?? ''),
    )) as T | undefined
  }

  /** Applies `object`; with `dryRun`, returns what the server would store and changes nothing. */
  async apply<T extends KubernetesObject>(object: ManifestObject, dryRun = false): Promise<T> {
    const access = this.access(object)
    return (await this.client.call({verb: 'patch', object: this.ref(object)}, () =>
      access.apply(object.metadata.name, object.metadata.namespace ?? '', object, dryRun ? 'All' : undefined),
    )) as T
  }

  /**
   * Deletes `object`; `false` when it was already gone. With `preconditions` (the uid and resourceVersion
   * it was read at) the server refuses, with a conflict, to delete an object that changed. With `dryRun`,
   * a server dry run.
   */
  async remove(object: ManifestObject, preconditions?: V1Preconditions, dryRun = false): Promise<boolean> {
    const access = this.access(object)
    const body =
      preconditions === undefined && !dryRun
        ? undefined
        : {...(preconditions === undefined ? {} : {preconditions}), ...(dryRun ? {dryRun: ['All']} : {})}
    const result = await this.client.find({verb: 'delete', object: this.ref(object)}, () =>
      access.remove(object.metadata.name, object.metadata.namespace ?? '', body),
    )
    return result !== undefined
  }

  private access(object: ManifestObject): KindAccess {
    const access = this.kinds[object.kind]
    if (access === undefined) {
      throw new KsctlError(`internal error: ksctl does not apply objects of kind ${object.kind}`, {
        code: 'INTERNAL',
      })
    }
    return access
  }
}

const clusterGvr = {group: 'cluster.kubesphere.io', version: 'v1alpha1', plural: 'clusters'}

/**
 * Applies a manifest object by object (or previews it with a server-side dry run), reporting each
 * object's change the way edits are reported.
 */
export async function applyManifest(
  client: ClusterClient,
  objects: ManifestObject[],
  dryRun: boolean,
): Promise<EditOutcome[]> {
  const manifest = new ManifestObjects(client)
  const outcomes: EditOutcome[] = []
  for (const object of objects) {
    const current = await manifest.find(object)
    const result = await manifest.apply(object, dryRun)
    const verb = current === undefined ? 'create' : 'update'
    outcomes.push(
      compareObjects(
        client.context,
        manifest.ref(object),
        `${verb} ${object.kind} ${object.metadata.name}`,
        current,
        result,
      ),
    )
  }
  return outcomes
}
