import type {IncomingMessage, ServerResponse} from 'node:http'
import {createServer, type Server} from 'node:https'
import type {AddressInfo} from 'node:net'

import {loopbackPki} from './test-pki.js'

/** One request the fake received, for assertions about which cluster and which credentials were used. */
export interface RecordedRequest {
  method: string
  path: string
  authorization: string | undefined
  contentType: string | undefined
  body: unknown
  /** Sent as a dry run (`dryRun=All` in the query, or in a delete's options). */
  dryRun: boolean
}

interface StoredObject {
  apiVersion?: string
  kind?: string
  metadata: {name: string; namespace?: string; resourceVersion?: string; uid?: string; [key: string]: unknown}
  [key: string]: unknown
}

interface InjectedFailure {
  method: string
  path: RegExp
  status: number
  message: string
  remaining: number
}

/**
 * An HTTP-level stand-in for one kube-apiserver, over TLS as the real one: objects in memory, the REST paths client-node uses,
 * resourceVersion conflicts, merge and JSON patches, Status errors, and a bearer token it insists on.
 * Unit tests run two of them (host and member) so that a request sent to the wrong cluster, or with the
 * wrong cluster's credentials, fails loudly.
 */
export class FakeApiServer {
  readonly requests: RecordedRequest[] = []
  private readonly objects = new Map<string, StoredObject>()
  private readonly failures: InjectedFailure[] = []
  /** Writes the user may not make, as SelfSubjectAccessReview answers them: `verb group/resource`. */
  private readonly deniedAccess = new Set<string>()
  private server: Server | undefined
  private revision = 100
  url = ''

  constructor(
    readonly name: string,
    readonly token: string,
    readonly gitVersion = 'v1.35.4',
  ) {}

  /** The CA the server's certificate is signed by, for the kubeconfig. */
  caPem = ''

  async start(): Promise<this> {
    const pki = await loopbackPki()
    this.caPem = pki.ca.certPem
    this.server = createServer({cert: pki.server.certPem, key: pki.server.keyPem}, (request, response) => {
      void this.handle(request, response)
    })
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve))
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`
    return this
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections()
    await new Promise<void>((resolve) => this.server?.close(() => resolve()))
  }

  /** Stores an object as the API server would have it; `path` is its REST path. */
  put(path: string, object: Omit<StoredObject, 'metadata'> & {metadata: StoredObject['metadata']}): void {
    this.revision++
    const spec = object.spec as {type?: string; clusterIP?: string} | undefined
    if (
      object.kind === 'Service' &&
      spec !== undefined &&
      spec.clusterIP === undefined &&
      spec.type !== 'ExternalName'
    ) {
      object = {
        ...object,
        spec: {
          ...spec,
          clusterIP: `10.0.${String(Math.floor(this.revision / 250) % 250)}.${String(this.revision % 250)}`,
        },
      }
    }
    this.objects.set(path, {
      ...structuredClone(object),
      metadata: {uid: `${this.name}-${path}`, ...object.metadata, resourceVersion: String(this.revision)},
    })
  }

  delete(path: string): void {
    this.objects.delete(path)
  }

  get(path: string): StoredObject | undefined {
    const object = this.objects.get(path)
    return object === undefined ? undefined : structuredClone(object)
  }

  /** The next `times` requests matching method and path fail with this status and message. */
  failNext(method: string, path: RegExp, status: number, message: string, times = 1): void {
    this.failures.push({method, path, status, message, remaining: times})
  }

  /** Requests that changed something, for "nothing was written" assertions (access reviews change nothing). */
  writes(): RecordedRequest[] {
    return this.requests.filter((request) => request.method !== 'GET' && request.path !== ACCESS_REVIEW_PATH)
  }

  /** SelfSubjectAccessReviews answer `verb` on `resource` (`deployments.apps`, `configmaps`) as not allowed. */
  denyAccess(verb: string, resource: string): void {
    this.deniedAccess.add(`${verb} ${resource}`)
  }

  /** The writes access reviews were asked about, as `verb resource namespace/name`. */
  accessReviews(): string[] {
    return this.requests
      .filter((request) => request.path === ACCESS_REVIEW_PATH)
      .map((request) => {
        const attributes = reviewAttributes(request.body)
        const resource =
          attributes.group === '' ? attributes.resource : `${attributes.resource}.${attributes.group}`
        const target = [attributes.namespace, attributes.name].filter((part) => part !== '').join('/')
        return `${attributes.verb} ${resource}${target === '' ? '' : ` ${target}`}`
      })
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', this.url)
    const text = await readBody(request)
    const recorded: RecordedRequest = {
      method: request.method ?? 'GET',
      path: url.pathname,
      authorization: request.headers.authorization,
      contentType: request.headers['content-type'],
      body: text === '' ? undefined : (JSON.parse(text) as unknown),
      dryRun: false,
    }
    recorded.dryRun = url.searchParams.get('dryRun') === 'All' || isDryRunDelete(recorded.body)
    this.requests.push(recorded)
    if (recorded.authorization !== `Bearer ${this.token}`) {
      return send(response, 401, status(401, 'Unauthorized', 'Unauthorized'))
    }
    const failure = this.failures.find((f) => f.method === recorded.method && f.path.test(url.pathname))
    if (failure !== undefined) {
      failure.remaining--
      if (failure.remaining === 0) this.failures.splice(this.failures.indexOf(failure), 1)
      return send(response, failure.status, status(failure.status, reasonOf(failure.status), failure.message))
    }
    if (url.pathname === '/apis') return send(response, 200, this.discovery())
    if (url.pathname === ACCESS_REVIEW_PATH && recorded.method === 'POST') {
      const attributes = reviewAttributes(recorded.body)
      const resource =
        attributes.group === '' ? attributes.resource : `${attributes.resource}.${attributes.group}`
      const allowed = !this.deniedAccess.has(`${attributes.verb} ${resource}`)
      return send(response, 201, {...(recorded.body as object), status: {allowed}})
    }
    if (url.pathname === '/version') {
      return send(response, 200, {
        major: '1',
        minor: this.gitVersion.split('.')[1],
        gitVersion: this.gitVersion,
      })
    }
    // The status subresource is the object itself here: this fake does not keep spec and status apart.
    if (url.pathname.endsWith('/status') && this.objects.has(url.pathname.slice(0, -'/status'.length))) {
      url.pathname = url.pathname.slice(0, -'/status'.length)
    }
    const {dryRun} = recorded
    switch (recorded.method) {
      case 'GET':
        return this.read(url, response)
      case 'POST':
        return this.create(url.pathname, recorded.body as StoredObject, dryRun, response)
      case 'PUT':
        return this.replace(url.pathname, recorded.body as StoredObject, dryRun, response)
      case 'PATCH':
        return this.patch(url.pathname, recorded, dryRun, response)
      case 'DELETE':
        return this.remove(url.pathname, dryRun, response)
      default:
        return send(response, 405, status(405, 'MethodNotAllowed', 'method not allowed'))
    }
  }

  /** The groups a cluster serves: the built-in ones ksctl uses, and one per stored CRD version. */
  private discovery(): object {
    const builtIn = ['apps/v1', 'rbac.authorization.k8s.io/v1', 'policy/v1', 'apiextensions.k8s.io/v1']
    const crds = [...this.objects.values()]
      .filter((object) => object.kind === 'CustomResourceDefinition')
      .flatMap((crd) => {
        const spec = crd.spec as {group: string; versions: {name: string}[]}
        return spec.versions.map((version) => `${spec.group}/${version.name}`)
      })
    const groups = [...builtIn, ...crds].map((groupVersion) => {
      const [name = '', version = ''] = groupVersion.split('/')
      return {name, versions: [{groupVersion, version}], preferredVersion: {groupVersion, version}}
    })
    return {kind: 'APIGroupList', apiVersion: 'v1', groups}
  }

  private read(url: URL, response: ServerResponse): void {
    const object = this.objects.get(url.pathname)
    if (object !== undefined) return send(response, 200, object)
    const prefix = url.pathname + '/'
    const items = [...this.objects.entries()]
      .filter(([path]) => path.startsWith(prefix) && !path.slice(prefix.length).includes('/'))
      .map(([, item]) => item)
      .filter((item) => matchesLabels(item, url.searchParams.get('labelSelector')))
    if (items.length > 0 || isCollectionPath(url.pathname)) {
      return send(response, 200, {
        kind: 'List',
        apiVersion: 'v1',
        metadata: {resourceVersion: String(this.revision)},
        items,
      })
    }
    return send(response, 404, notFound(url.pathname))
  }

  private create(collection: string, body: StoredObject, dryRun: boolean, response: ServerResponse): void {
    const path = `${collection}/${body.metadata.name}`
    if (this.objects.has(path)) {
      return send(response, 409, status(409, 'AlreadyExists', `${body.metadata.name} already exists`))
    }
    if (!dryRun) this.put(path, body)
    send(response, 201, dryRun ? body : this.objects.get(path))
  }

  private replace(path: string, body: StoredObject, dryRun: boolean, response: ServerResponse): void {
    const current = this.objects.get(path)
    if (current === undefined) return send(response, 404, notFound(path))
    if (body.metadata.resourceVersion !== current.metadata.resourceVersion) {
      return send(
        response,
        409,
        status(409, 'Conflict', `Operation cannot be fulfilled on ${path}: the object has been modified`),
      )
    }
    if (!dryRun) this.put(path, {...body, metadata: {...body.metadata, uid: current.metadata.uid}})
    send(response, 200, dryRun ? body : this.objects.get(path))
  }

  private patch(path: string, request: RecordedRequest, dryRun: boolean, response: ServerResponse): void {
    const current = this.objects.get(path)
    if (current === undefined && request.contentType === 'application/apply-patch+yaml') {
      const created = request.body as StoredObject
      if (!dryRun) this.put(path, created)
      return send(response, 201, dryRun ? created : this.objects.get(path))
    }
    if (current === undefined) return send(response, 404, notFound(path))
    let patched: StoredObject
    try {
      patched =
        request.contentType === 'application/json-patch+json'
          ? applyJsonPatch(current, request.body as JsonPatchOperation[])
          : (mergePatch(
              current,
              request.body,
              request.contentType !== 'application/apply-patch+yaml',
            ) as StoredObject)
    } catch (error) {
      return send(response, 422, status(422, 'Invalid', (error as Error).message))
    }
    if (!dryRun) this.put(path, {...patched, metadata: {...patched.metadata, uid: current.metadata.uid}})
    send(response, 200, dryRun ? patched : this.objects.get(path))
  }

  private remove(path: string, dryRun: boolean, response: ServerResponse): void {
    const current = this.objects.get(path)
    if (current === undefined) return send(response, 404, notFound(path))
    if (!dryRun) this.objects.delete(path)
    send(response, 200, status(200, 'Success', 'deleted'))
  }
}

const ACCESS_REVIEW_PATH = '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews'

function reviewAttributes(
  body: unknown,
): Record<'verb' | 'group' | 'resource' | 'namespace' | 'name', string> {
  const attributes =
    (body as {spec?: {resourceAttributes?: Record<string, string>}} | undefined)?.spec?.resourceAttributes ??
    {}
  return {
    verb: attributes.verb ?? '',
    group: attributes.group ?? '',
    resource: attributes.resource ?? '',
    namespace: attributes.namespace ?? '',
    name: attributes.name ?? '',
  }
}

/** DeleteOptions with `dryRun: ["All"]` in the body, which the API server honours like the query parameter. */
function isDryRunDelete(body: unknown): boolean {
  return (body as {dryRun?: string[]} | undefined)?.dryRun?.includes('All') === true
}

interface JsonPatchOperation {
  op: string
  path: string
  value?: unknown
}

/**
 * RFC 7386: objects merge, null deletes, anything else replaces. Server-side apply is approximated by the
 * same merge with nulls meaning "not set by this applier" (`nullDeletes` false).
 */
export function mergePatch(target: unknown, patch: unknown, nullDeletes = true): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return structuredClone(patch)
  const result: Record<string, unknown> =
    typeof target === 'object' && target !== null && !Array.isArray(target)
      ? {...(target as Record<string, unknown>)}
      : {}
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      if (nullDeletes) delete result[key]
      else if (!(key in result)) result[key] = null
    } else result[key] = mergePatch(result[key], value, nullDeletes)
  }
  return result
}

function applyJsonPatch(target: StoredObject, operations: JsonPatchOperation[]): StoredObject {
  const document = structuredClone(target) as unknown as Record<string, unknown>
  for (const operation of operations) {
    const keys = operation.path
      .split('/')
      .slice(1)
      .map((key) => key.replaceAll('~1', '/').replaceAll('~0', '~'))
    const last = keys.pop()
    if (last === undefined) throw new Error('empty JSON patch path')
    let parent: Record<string, unknown> = document
    for (const key of keys) {
      const next = parent[key]
      if (typeof next !== 'object' || next === null) throw new Error(`path ${operation.path} does not exist`)
      parent = next as Record<string, unknown>
    }
    if (operation.op === 'test') {
      if (JSON.stringify(parent[last]) !== JSON.stringify(operation.value)) {
        throw new Error(`test operation failed at ${operation.path}`)
      }
    } else if (operation.op === 'remove') {
      if (!(last in parent)) throw new Error(`path ${operation.path} does not exist`)
      delete parent[last]
    } else {
      if (operation.op === 'replace' && !(last in parent))
        throw new Error(`path ${operation.path} does not exist`)
      parent[last] = structuredClone(operation.value)
    }
  }
  return document as unknown as StoredObject
}

function matchesLabels(item: StoredObject, selector: string | null): boolean {
  if (selector === null || selector === '') return true
  const labels = (item.metadata.labels ?? {}) as Record<string, string>
  return selector.split(',').every((term) => {
    const [key, value] = term.split('=')
    return key !== undefined && (value === undefined ? key in labels : labels[key] === value)
  })
}

function isCollectionPath(path: string): boolean {
  const segments = path.split('/').filter((segment) => segment !== '')
  return segments.length % 2 === (segments[0] === 'api' ? 1 : 0)
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    request.on('error', reject)
  })
}

function send(response: ServerResponse, code: number, body: unknown): void {
  response.writeHead(code, {'content-type': 'application/json'})
  response.end(JSON.stringify(body))
}

function status(code: number, reason: string, message: string): object {
  return {kind: 'Status', apiVersion: 'v1', status: code < 400 ? 'Success' : 'Failure', message, reason, code}
}

function notFound(path: string): object {
  const segments = path.split('/')
  return status(404, 'NotFound', `${segments.at(-2) ?? 'object'} "${segments.at(-1) ?? ''}" not found`)
}

function reasonOf(code: number): string {
  return (
    {401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 409: 'Conflict', 500: 'InternalError'}[code] ??
    'Unknown'
  )
}
