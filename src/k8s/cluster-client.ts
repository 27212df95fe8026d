import {
  ApisApi,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  VersionApi,
  setHeaderOptions,
  type KubeConfig,
  type V1ConfigMap,
  type V1Deployment,
  type V1Namespace,
  type V1Node,
  type V1Preconditions,
  type V1Secret,
  type V1Service,
  type VersionInfo,
} from '@kubernetes/client-node'

import {formatDuration} from '../cli/duration.js'
import {KsctlError, type ObjectRef} from '../errors.js'
import {interruption} from '../interruption.js'
import {redactor} from '../redact.js'
import {isNotFound, toKsctlError, type Operation} from './api-errors.js'
import {withRequestLimits, type RequestLimits} from './request-limits.js'
import {resourceName, type CustomObject, type CustomResource} from './resources.js'
import {isWrite, WriteJournal} from './write-journal.js'

const DEFAULT_REQUEST_TIMEOUT_MS = 30_000

/** A JSON Patch (RFC 6902) operation, for changes that must fail rather than merge when the object moved. */
export interface JsonPatchOperation {
  op: 'add' | 'remove' | 'replace' | 'test'
  path: string
  value?: unknown
}

/** A Secret with its data decoded to text at this boundary; every value is registered for redaction. */
export interface DecodedSecret {
  metadata: V1Secret['metadata']
  type: string | undefined
  data: Record<string, string>
}

/**
 * Everything ksctl does against one cluster, bound to one kubeconfig context. Every call names its object,
 * so a failure becomes a KsctlError that says which object, in which context, and what to do next.
 */
export class ClusterClient {
  readonly server: string
  private readonly core: CoreV1Api
  private readonly apps: AppsV1Api
  private readonly custom: CustomObjectsApi
  private readonly versionApi: VersionApi
  private readonly apisApi: ApisApi

  constructor(
    readonly context: string,
    /** This context's own KubeConfig, for modules that need another API group's client. */
    readonly config: KubeConfig,
    private readonly requestTimeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
    /** The writes of this run, shared by the run's clients, for the report of an interruption. */
    readonly journal = new WriteJournal(),
  ) {
    this.server = config.getCurrentCluster()?.server ?? '(unknown server)'
    this.core = config.makeApiClient(CoreV1Api)
    this.apps = config.makeApiClient(AppsV1Api)
    this.custom = config.makeApiClient(CustomObjectsApi)
    this.versionApi = config.makeApiClient(VersionApi)
    this.apisApi = config.makeApiClient(ApisApi)
  }

  /**
   * Runs one API call with a deadline (`--timeout`, 0: none), mapping any failure to a KsctlError about
   * `operation`. A call that runs out of time is aborted, its connection closed. Once the run is interrupted no
   * call starts, and a read under way is abandoned; a write under way finishes, so the journal knows its outcome.
   */
  async call<T>(operation: Operation, request: () => Promise<T>): Promise<T> {
    interruption.throwIfInterrupted()
    const controller = new AbortController()
    const timer =
      this.requestTimeoutMs > 0
        ? setTimeout(() => controller.abort(this.timeoutError(operation)), this.requestTimeoutMs)
        : undefined
    const write = isWrite(operation)
    const abandon = (): void => controller.abort(interruption.error())
    if (!write) interruption.signal.addEventListener('abort', abandon, {once: true})
    const limits: RequestLimits = {timeoutMs: this.requestTimeoutMs, signal: controller.signal}
    const entry = write ? this.journal.begin(this.context, operation, limits) : undefined
    try {
      const answer = await withRequestLimits(limits, request)
      if (entry === undefined) this.journal.read(this.context, operation, answer)
      else this.journal.accept(entry, answer)
      return answer
    } catch (error) {
      // Whatever the client library made of the abort, the reason is ours: the deadline or the interruption.
      if (controller.signal.aborted) throw controller.signal.reason
      throw toKsctlError(error, operation, this.context, this.server)
    } finally {
      clearTimeout(timer)
      interruption.signal.removeEventListener('abort', abandon)
      if (entry !== undefined) this.journal.end(entry)
    }
  }

  private timeoutError(operation: Operation): KsctlError {
    return new KsctlError(
      `the API server of context "${this.context}" at ${this.server} did not answer within ` +
        `${formatDuration(this.requestTimeoutMs)} (${operation.verb} ${resourceLabel(operation.object)})`,
      {
        code: 'TIMEOUT',
        context: this.context,
        object: operation.object,
        suggestions: [
          `check that the API server answers: kubectl --context ${this.context} get --raw /readyz`,
          'or allow more time with --timeout (0: no time-out)',
        ],
      },
    )
  }

  /** Like `call`, but a 404 is an answer (`undefined`), not an error. */
  async find<T>(operation: Operation, request: () => Promise<T>): Promise<T | undefined> {
    try {
      return await this.call(operation, request)
    } catch (error) {
      if (isNotFound(error)) return undefined
      throw error
    }
  }

  version(): Promise<VersionInfo> {
    return this.call({verb: 'get', object: {resource: '/version'}}, () => this.versionApi.getCode())
  }

  /** Discovery: every `group/version` the server serves outside the core group (CRDs included). */
  async servedGroupVersions(): Promise<Set<string>> {
    const list = await this.call({verb: 'get', object: {resource: '/apis'}}, () =>
      this.apisApi.getAPIVersions(),
    )
    return new Set(list.groups.flatMap((group) => group.versions.map((version) => version.groupVersion)))
  }

  findNamespace(name: string): Promise<V1Namespace | undefined> {
    return this.find({verb: 'get', object: {resource: 'namespaces', name}}, () =>
      this.core.readNamespace({name}),
    )
  }

  /** Replaces a Namespace; the body must carry the resourceVersion it was read at. */
  replaceNamespace(body: V1Namespace, dryRun = false): Promise<V1Namespace> {
    const {name} = requireName(body, 'namespaces')
    requireResourceVersion(body, {resource: 'namespaces', name})
    return this.call(op('update', 'namespaces', name), () =>
      this.core.replaceNamespace({name, body, ...dryRunParam(dryRun)}),
    )
  }

  listNodes(): Promise<V1Node[]> {
    return this.call(
      {verb: 'list', object: {resource: 'nodes'}},
      async () => (await this.core.listNode()).items,
    )
  }

  findConfigMap(namespace: string, name: string): Promise<V1ConfigMap | undefined> {
    return this.find(op('get', 'configmaps', name, namespace), () =>
      this.core.readNamespacedConfigMap({name, namespace}),
    )
  }

  /** Replaces a ConfigMap; the body must carry the resourceVersion it was read at (optimistic concurrency). */
  replaceConfigMap(body: V1ConfigMap, dryRun = false): Promise<V1ConfigMap> {
    const {name, namespace} = requireIdentity(body, 'configmaps')
    requireResourceVersion(body, {resource: 'configmaps', name, namespace})
    return this.call(op('update', 'configmaps', name, namespace), () =>
      this.core.replaceNamespacedConfigMap({name, namespace, body, ...dryRunParam(dryRun)}),
    )
  }

  async findSecret(namespace: string, name: string): Promise<DecodedSecret | undefined> {
    const secret = await this.find(op('get', 'secrets', name, namespace), () =>
      this.core.readNamespacedSecret({name, namespace}),
    )
    return secret === undefined ? undefined : decodeSecret(secret)
  }

  /** Replaces a Secret from decoded text values; base64 encoding happens here and nowhere else. */
  replaceSecret(secret: DecodedSecret, dryRun = false): Promise<V1Secret> {
    const {name, namespace} = requireIdentity(secret, 'secrets')
    requireResourceVersion(secret, {resource: 'secrets', name, namespace})
    const body = encodeSecret(secret)
    return this.call(op('update', 'secrets', name, namespace), () =>
      this.core.replaceNamespacedSecret({name, namespace, body, ...dryRunParam(dryRun)}),
    )
  }

  /** Creates a Secret from decoded text values (base64 is done here). */
  createSecret(secret: DecodedSecret): Promise<V1Secret> {
    const {name, namespace} = requireIdentity(secret, 'secrets')
    const body = encodeSecret(secret)
    return this.call(op('create', 'secrets', name, namespace), () =>
      this.core.createNamespacedSecret({namespace, body}),
    )
  }

  listServices(namespace: string, labelSelector: string): Promise<V1Service[]> {
    return this.call(
      {verb: 'list', object: {resource: 'services', namespace}},
      async () => (await this.core.listNamespacedService({namespace, labelSelector})).items,
    )
  }

  findService(namespace: string, name: string): Promise<V1Service | undefined> {
    return this.find(op('get', 'services', name, namespace), () =>
      this.core.readNamespacedService({name, namespace}),
    )
  }

  findDeployment(namespace: string, name: string): Promise<V1Deployment | undefined> {
    return this.find(op('get', 'deployments', name, namespace), () =>
      this.apps.readNamespacedDeployment({name, namespace}),
    )
  }

  /**
   * What `kubectl rollout restart` does: stamp the pod template so the Deployment rolls its pods.
   * Paused Deployments are refused with kubectl's reason.
   */
  async restartDeployment(namespace: string, name: string, now: Date, dryRun = false): Promise<V1Deployment> {
    const operation = op('patch', 'deployments', name, namespace)
    const current = await this.call(op('get', 'deployments', name, namespace), () =>
      this.apps.readNamespacedDeployment({name, namespace}),
    )
    if (current.spec?.paused === true) {
      throw new KsctlError(`deployment ${namespace}/${name} is paused and cannot be restarted`, {
        code: 'PRECONDITION_FAILED',
        context: this.context,
        object: operation.object,
        suggestions: [
          `resume it first: kubectl --context ${this.context} -n ${namespace} rollout resume deploy/${name}`,
        ],
      })
    }
    const body = {
      spec: {template: {metadata: {annotations: {'kubectl.kubernetes.io/restartedAt': rfc3339Local(now)}}}},
    }
    return this.call(operation, () =>
      this.apps.patchNamespacedDeployment(
        {name, namespace, body, fieldManager: 'ksctl', ...dryRunParam(dryRun)},
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      ),
    )
  }

  findCustomObject<T extends CustomObject>(
    resource: CustomResource,
    name: string,
    namespace?: string,
  ): Promise<T | undefined> {
    return this.find(
      customOp('get', resource, name, namespace),
      async () =>
        (namespace === undefined
          ? await this.custom.getClusterCustomObject({...gvr(resource), name})
          : await this.custom.getNamespacedCustomObject({...gvr(resource), namespace, name})) as T,
    )
  }

  async listCustomObjects<T extends CustomObject>(
    resource: CustomResource,
    options: {labelSelector?: string} = {},
  ): Promise<T[]> {
    const list: unknown = await this.call(customOp('list', resource), () =>
      this.custom.listClusterCustomObject({...gvr(resource), ...options}),
    )
    return (list as {items: T[]}).items
  }

  createCustomObject<T extends CustomObject>(resource: CustomResource, body: T, dryRun = false): Promise<T> {
    const namespace = body.metadata?.namespace
    const name = body.metadata?.name
    return this.call(
      customOp('create', resource, name, namespace),
      async () =>
        (namespace === undefined
          ? await this.custom.createClusterCustomObject({...gvr(resource), body, ...dryRunParam(dryRun)})
          : await this.custom.createNamespacedCustomObject({
              ...gvr(resource),
              namespace,
              body,
              ...dryRunParam(dryRun),
            })) as T,
    )
  }

  /**
   * Patches a custom object. Merge patch for "set these fields, keep the rest"; JSON patch (with `test`
   * operations) where the change must not apply to an object that moved underneath.
   */
  patchCustomObject<T extends CustomObject>(
    resource: CustomResource,
    name: string,
    patch: {strategy: 'merge'; body: object} | {strategy: 'json'; body: JsonPatchOperation[]},
    options: {namespace?: string | undefined; dryRun?: boolean} = {},
  ): Promise<T> {
    const {namespace, dryRun = false} = options
    const contentType = patch.strategy === 'merge' ? PatchStrategy.MergePatch : PatchStrategy.JsonPatch
    const header = setHeaderOptions('Content-Type', contentType)
    const common = {...gvr(resource), name, body: patch.body, fieldManager: 'ksctl', ...dryRunParam(dryRun)}
    return this.call(
      customOp('patch', resource, name, namespace),
      async () =>
        (namespace === undefined
          ? await this.custom.patchClusterCustomObject(common, header)
          : await this.custom.patchNamespacedCustomObject({...common, namespace}, header)) as T,
    )
  }

  /** Replaces a custom object; the body must carry the resourceVersion it was read at. */
  replaceCustomObject<T extends CustomObject>(resource: CustomResource, body: T, dryRun = false): Promise<T> {
    const {name, namespace} = requireName(body, resourceName(resource))
    requireResourceVersion(body, {resource: resourceName(resource), name, namespace})
    return this.call(
      customOp('update', resource, name, namespace),
      async () =>
        (namespace === undefined
          ? await this.custom.replaceClusterCustomObject({
              ...gvr(resource),
              name,
              body,
              ...dryRunParam(dryRun),
            })
          : await this.custom.replaceNamespacedCustomObject({
              ...gvr(resource),
              namespace,
              name,
              body,
              ...dryRunParam(dryRun),
            })) as T,
    )
  }

  /**
   * Deletes a custom object; `false` when it was already gone. With `preconditions` (the uid and
   * resourceVersion it was read at) the server refuses, with a conflict, to delete an object that changed.
   * With `dryRun`, a server dry run.
   */
  async deleteCustomObject(
    resource: CustomResource,
    name: string,
    namespace?: string,
    preconditions?: V1Preconditions,
    dryRun = false,
  ): Promise<boolean> {
    const body = {...(preconditions === undefined ? {} : {body: {preconditions}}), ...dryRunParam(dryRun)}
    const deleted: unknown = await this.find(customOp('delete', resource, name, namespace), () =>
      namespace === undefined
        ? this.custom.deleteClusterCustomObject({...gvr(resource), name, ...body})
        : this.custom.deleteNamespacedCustomObject({...gvr(resource), namespace, name, ...body}),
    )
    return deleted !== undefined
  }
}

export function decodeSecret(secret: V1Secret): DecodedSecret {
  const data: Record<string, string> = {}
  for (const [key, value] of Object.entries(secret.data ?? {})) {
    data[key] = Buffer.from(value, 'base64').toString('utf8')
    redactor.register(data[key])
  }
  for (const [key, value] of Object.entries(secret.stringData ?? {})) {
    data[key] = value
    redactor.register(value)
  }
  return {metadata: secret.metadata, type: secret.type, data}
}

/** A Secret for the API from decoded values: base64 is done here and nowhere else. */
function encodeSecret(secret: DecodedSecret): V1Secret {
  const data = Object.entries(secret.data).map(([key, value]) => [key, Buffer.from(value).toString('base64')])
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: secret.metadata,
    ...(secret.type === undefined ? {} : {type: secret.type}),
    data: Object.fromEntries(data) as Record<string, string>,
  }
}

function op(verb: Operation['verb'], resource: string, name?: string, namespace?: string): Operation {
  return {
    verb,
    object: {
      resource,
      ...(name === undefined ? {} : {name}),
      ...(namespace === undefined ? {} : {namespace}),
    },
  }
}

function customOp(
  verb: Operation['verb'],
  resource: CustomResource,
  name?: string,
  namespace?: string,
): Operation {
  return op(verb, resourceName(resource), name, namespace)
}

function gvr(resource: CustomResource): {group: string; version: string; plural: string} {
  return {group: resource.group, version: resource.version, plural: resource.plural}
}

function dryRunParam(dryRun: boolean): {dryRun?: string} {
  return dryRun ? {dryRun: 'All'} : {}
}

function requireIdentity(
  body: {metadata?: {name?: string; namespace?: string} | undefined},
  resource: string,
): {name: string; namespace: string} {
  const {name, namespace} = requireName(body, resource)
  if (namespace === undefined) {
    throw new KsctlError(`internal error: a ${resource} object without namespace`, {code: 'INTERNAL'})
  }
  return {name, namespace}
}

function requireName(
  body: {metadata?: {name?: string; namespace?: string} | undefined},
  resource: string,
): {name: string; namespace: string | undefined} {
  const name = body.metadata?.name
  if (name === undefined) {
    throw new KsctlError(`internal error: a ${resource} object without name`, {code: 'INTERNAL'})
  }
  return {name, namespace: body.metadata?.namespace}
}

function requireResourceVersion(
  body: {metadata?: {resourceVersion?: string} | undefined},
  object: ObjectRef,
): void {
  if (body.metadata?.resourceVersion === undefined) {
    throw new KsctlError(`internal error: an update of ${resourceLabel(object)} without resourceVersion`, {
      code: 'INTERNAL',
      object,
    })
  }
}

function resourceLabel(object: ObjectRef): string {
  return object.name === undefined ? object.resource : `${object.resource}/${object.name}`
}

/** RFC 3339 in local time with its offset, which is what kubectl writes into restartedAt. */
export function rfc3339Local(date: Date): string {
  const pad = (value: number): string => String(Math.trunc(Math.abs(value))).padStart(2, '0')
  const offset = -date.getTimezoneOffset()
  const zone = offset === 0 ? 'Z' : `${offset > 0 ? '+' : '-'}${pad(offset / 60)}:${pad(offset % 60)}`
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}${zone}`
  )
}
