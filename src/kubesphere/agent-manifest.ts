import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {dump, loadAll, type DumpOptions} from 'js-yaml'

import {invalidInput, KsctlError} from '../errors.js'
import {packageRoot, templatePath} from '../package-root.js'
import {quantityValue} from '../quantity.js'
import {fingerprint} from '../redact.js'
import {
  agentImpersonationRbac,
  agentTokenRotationRbac,
  kubesphereIdentityRbac,
} from '../tower/shared/identity.js'
import {KUBESPHERE_NAMESPACE} from './constants.js'
import type {Edition} from './detect.js'

/** One Kubernetes object of a manifest, as plain data: what YAML and JSON carry. */
export interface ManifestObject {
  apiVersion: string
  kind: string
  metadata: {name: string; namespace?: string; [key: string]: unknown}
  [key: string]: unknown
}

/** Requests and limits of the agent container, as Kubernetes quantities (`200m`, `256Mi`). */
export interface AgentResources {
  cpuRequest?: string | undefined
  cpuLimit?: string | undefined
  memoryRequest?: string | undefined
  memoryLimit?: string | undefined
}

/** What the agent manifest is made of. Every optional field, left out, keeps KubeSphere's exact output. */
export interface AgentManifestOptions {
  edition: Edition
  clusterName: string
  /** `spec.connection.token` of the Cluster: the agent's only credential with the proxy. */
  token: string
  /** Where the agent dials the tower proxy, `http(s)://host:port`. */
  proxyAddress: string
  /** Default: the edition's default image (DEFAULT_AGENT_IMAGES). */
  image?: string | undefined
  /** Agent pods. Above 1, the pods prefer distinct nodes and a PodDisruptionBudget keeps one running. */
  replicas?: number | undefined
  /** An egress proxy the agent must dial the host through (`HTTP_PROXY`/`HTTPS_PROXY`). */
  httpProxy?: string | undefined
  resources?: AgentResources | undefined
}

export const AGENT_DEPLOYMENT_NAME = 'cluster-agent'

/**
 * The agent image when nothing configures one. 3.x: what ks-installer 3.4 writes into kubesphere-config
 * (ks-apiserver's own fallback, `kubesphere/tower:v1.0`, only applies to a hand-edited config and was never
 * a published tower release). 4.x: the tower extension's default.
 */
export const DEFAULT_AGENT_IMAGES: Record<Edition, string> = {
  '3.x': 'kubesphere/tower:v0.2.1',
  '4.x': 'kubesphere/tower:v0.2.1',
}

const templateFiles: Record<Edition, string> = {'3.x': 'agent-v3.yaml', '4.x': 'agent-v4.yaml'}
const KSCTL_TEMPLATE_FILE = 'agent-ksctl.yaml'

/**
 * Hosts the agent must reach directly even with an egress proxy: it forwards the tunnelled requests to the
 * kubernetes and ks-apiserver Services, and Go's proxy support would send those to the egress proxy too.
 * The kubelet expands `$(KUBERNETES_SERVICE_HOST)` to the kubernetes Service IP, which in-cluster clients use.
 */
export const AGENT_NO_PROXY = [
  '$(KUBERNETES_SERVICE_HOST)',
  'kubernetes.default.svc',
  'ks-apiserver.kubesphere-system.svc',
  '.svc',
  '.cluster.local',
  'localhost',
  '127.0.0.1',
].join(',')

/**
 * Options that make js-yaml write what KubeSphere's YAML printer (Go, sigs.k8s.io/yaml) writes: sequences
 * not indented under their key, double quotes where a string needs quoting, no line folding. Go also sorts
 * keys; agentManifestYaml does that before dumping.
 */
const goYamlStyle: DumpOptions = {seqNoIndent: true, quoteStyle: 'double', lineWidth: -1, noRefs: true}

/** The agent manifest KubeSphere serves for one proxy cluster, rendered from the edition's template. */
export function renderAgentManifest(options: AgentManifestOptions): ManifestObject[] {
  const file = templatePath(templateFiles[options.edition])
  const objects = loadTemplate(file)
  const deployment = agentDeployment(objects, AGENT_DEPLOYMENT_NAME, 'command', file)
  const container = deployment.spec.template.spec.containers[0]
  const command = container.command ?? []
  setArgument(command, '--name', options.clusterName, file)
  setArgument(command, '--token', options.token, file)
  setArgument(command, '--proxy-server', options.proxyAddress, file)
  container.image = options.image ?? DEFAULT_AGENT_IMAGES[options.edition]
  customize(objects, deployment, options)
  return objects
}

/** How ksctl's agent trusts ksctl's proxy: the proxy CA's certificate (PEM), or the pin of its serving key. */
export type ProxyTrust = {caPem: string} | {pin: string}

/** What ksctl's agent manifest is made of. */
export interface KsctlAgentManifestOptions {
  clusterName: string
  /** `spec.connection.token` of the Cluster: goes into Secret ksctl-tower-agent-token, never into arguments. */
  token: string
  /** Where the agent dials ksctl's proxy, `wss://host:port`. */
  proxyAddress: string
  trust: ProxyTrust
  /** Default: {@link defaultKsctlAgentImage}. */
  image?: string | undefined
  /** Agent pods. Above 1, the pods prefer distinct nodes and a PodDisruptionBudget keeps one running. */
  replicas?: number | undefined
  /** An egress proxy the agent must dial the host through (`HTTPS_PROXY` for wss://). */
  httpProxy?: string | undefined
  resources?: AgentResources | undefined
}

/** ksctl's agent on a member (OWNERS.md): its Deployment, ServiceAccount, ClusterRole and pod label. */
export const KSCTL_AGENT_NAME = 'ksctl-tower-agent'
/** Holds the agent's tunnel token (key `token`), mounted as a file and passed with `--token-file`. */
export const KSCTL_AGENT_TOKEN_SECRET = 'ksctl-tower-agent-token'
/** The labels every object of ksctl's agent carries, as in its template: how ksctl tells its own objects. */
export const KSCTL_AGENT_LABELS: Readonly<Record<string, string>> = {
  'app.kubernetes.io/name': KSCTL_AGENT_NAME,
  'app.kubernetes.io/managed-by': 'ksctl',
}
/** Holds the proxy CA's certificate (key `ca.crt`) when the agent trusts the proxy by its CA. */
export const KSCTL_AGENT_PROXY_CA_CONFIGMAP = 'ksctl-tower-agent-proxy-ca'
/** On the pod template: the fingerprint of the proxy CA (or pin) the pods trust. */
export const PROXY_TRUST_ANNOTATION = 'ksctl.io/proxy-trust'
/** Where the Deployment mounts the token and the CA. */
const KSCTL_AGENT_FILES = '/etc/ksctl-tower-agent'

/** The image rendered manifests name unless told another: `ksctl:<version>`, the tag `npm run image` gives. */
export function defaultKsctlAgentImage(): string {
  const manifest = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as {version: string}
  return `ksctl:${manifest.version}`
}

/**
 * ksctl's agent manifest for one proxy cluster (templates/agent-ksctl.yaml): the same for both editions. The token
 * is in a Secret mounted as a file; the proxy is trusted by its CA (a ConfigMap mounted beside the token) or by
 * the pin of its serving key.
 */
export function renderKsctlAgentManifest(options: KsctlAgentManifestOptions): ManifestObject[] {
  const file = templatePath(KSCTL_TEMPLATE_FILE)
  let objects = loadTemplate(file)
  const deployment = agentDeployment(objects, KSCTL_AGENT_NAME, 'args', file)
  const container = deployment.spec.template.spec.containers[0]
  const args = container.args ?? []
  setArgument(args, '--name', options.clusterName, file)
  setArgument(args, '--proxy-server', options.proxyAddress, file)
  container.image = options.image ?? defaultKsctlAgentImage()
  templateObject(objects, 'Secret', KSCTL_AGENT_TOKEN_SECRET, file).data = {
    token: Buffer.from(options.token).toString('base64'),
  }
  if ('caPem' in options.trust) {
    templateObject(objects, 'ConfigMap', KSCTL_AGENT_PROXY_CA_CONFIGMAP, file).data = {
      'ca.crt': options.trust.caPem,
    }
    args.push(`--proxy-ca=${KSCTL_AGENT_FILES}/ca.crt`)
  } else {
    objects = objects.filter(
      (object) => !(object.kind === 'ConfigMap' && object.metadata.name === KSCTL_AGENT_PROXY_CA_CONFIGMAP),
    )
    for (const volume of deployment.spec.template.spec.volumes ?? []) {
      if (volume.projected !== undefined) {
        volume.projected.sources = volume.projected.sources.filter(
          (source) => source.configMap?.name !== KSCTL_AGENT_PROXY_CA_CONFIGMAP,
        )
      }
    }
    args.push(`--proxy-pin=${options.trust.pin}`)
  }
  // The agent reads its CA once, at start: a new CA (or pin) must roll the pods, as a changed template does.
  deployment.spec.template.metadata = {
    ...deployment.spec.template.metadata,
    annotations: {
      [PROXY_TRUST_ANNOTATION]: fingerprint(
        'caPem' in options.trust ? options.trust.caPem : options.trust.pin,
      ),
    },
  }
  customize(objects, deployment, options)
  // The PodDisruptionBudget of several replicas is not in the template: labelled here as every other object of
  // ksctl's agent is, which is how `member leave` tells them from objects of the same name that are not ksctl's.
  for (const object of objects) {
    if (object.kind === 'PodDisruptionBudget') object.metadata.labels = {...KSCTL_AGENT_LABELS}
  }
  return withMemberRbac(objects)
}

/**
 * The member's RBAC for ksctl's agent, from the one definition the runtime's own tests use (shared/identity.ts):
 * the agent's ServiceAccount may impersonate and nothing else, KubeSphere's identity gets cluster-admin, and the
 * proxy's rotation identity may read and patch the agent's token Secret. Placed
 * after the ServiceAccount, labelled as the agent's other objects are.
 */
function withMemberRbac(objects: ManifestObject[]): ManifestObject[] {
  const rbac = [
    ...agentImpersonationRbac({name: KSCTL_AGENT_NAME, namespace: KUBESPHERE_NAMESPACE}),
    ...kubesphereIdentityRbac(),
    ...agentTokenRotationRbac({name: KSCTL_AGENT_TOKEN_SECRET, namespace: KUBESPHERE_NAMESPACE}),
  ].map((object) => ({
    ...object,
    metadata: {
      ...object.metadata,
      labels: {...KSCTL_AGENT_LABELS, ...(object.metadata.labels as Record<string, string> | undefined)},
    },
  }))
  const at = objects.findIndex((object) => object.kind === 'ServiceAccount') + 1
  return [...objects.slice(0, at), ...rbac, ...objects.slice(at)]
}

/** The ServiceAccount (and cluster-admin binding) of Tower's agent on 4.x members (kubesphere.md §5.2). */
export const TOWER_AGENT_SERVICE_ACCOUNT = 'tower'

/**
 * What Tower's agent manifest puts on a member (agent-v3.yaml, agent-v4.yaml, and the PodDisruptionBudget of several
 * replicas), as references, the Deployment first so that the agent stops dialing before the rest goes. On 4.x also
 * its ServiceAccount `tower` and cluster-admin binding, which only the agent uses (3.x runs it as KubeSphere's own
 * ServiceAccount, which stays).
 */
export function towerAgentObjectRefs(edition: Edition): ManifestObject[] {
  const ns = KUBESPHERE_NAMESPACE
  return [
    {apiVersion: 'apps/v1', kind: 'Deployment', metadata: {name: AGENT_DEPLOYMENT_NAME, namespace: ns}},
    {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: {name: AGENT_DEPLOYMENT_NAME, namespace: ns},
    },
    ...(edition === '4.x'
      ? [
          {
            apiVersion: 'rbac.authorization.k8s.io/v1',
            kind: 'ClusterRoleBinding',
            metadata: {name: TOWER_AGENT_SERVICE_ACCOUNT},
          },
          {
            apiVersion: 'v1',
            kind: 'ServiceAccount',
            metadata: {name: TOWER_AGENT_SERVICE_ACCOUNT, namespace: ns},
          },
        ]
      : []),
  ]
}

/**
 * Every object ksctl's agent manifest can make on a member, as references (kind, name, namespace), read off the
 * manifest itself (rendered with every option that adds an object: a CA, several replicas), so that what removes the
 * agent (member leave, a migration back to Tower's agent) cannot miss one the manifest gained. The Deployment and its
 * PodDisruptionBudget first, so that the agent stops dialing before the rest goes; never the Namespace, where the
 * member's KubeSphere may live.
 */
export function ksctlAgentObjectRefs(): ManifestObject[] {
  const rendered = renderKsctlAgentManifest({
    clusterName: 'any',
    token: 'any',
    proxyAddress: 'wss://any:443',
    trust: {caPem: 'any'},
    replicas: 2,
    image: 'any',
  })
  const refs = rendered
    .filter((object) => object.kind !== 'Namespace')
    .map(({apiVersion, kind, metadata}) => ({
      apiVersion,
      kind,
      metadata: {
        name: metadata.name,
        ...(metadata.namespace !== undefined && {namespace: metadata.namespace}),
      },
    }))
  const first = ['Deployment', 'PodDisruptionBudget']
  // The rest in the reverse of the manifest's order, as kubectl deletes: bindings before their roles, the
  // ServiceAccount last.
  return [
    ...first.flatMap((kind) => refs.filter((ref) => ref.kind === kind)),
    ...refs.filter((ref) => !first.includes(ref.kind)).reverse(),
  ]
}

/** What both runtimes' manifests take alike: resources, an egress proxy, replicas. */
function customize(
  objects: ManifestObject[],
  deployment: AgentDeployment,
  options: {
    replicas?: number | undefined
    httpProxy?: string | undefined
    resources?: AgentResources | undefined
  },
): void {
  const spec = deployment.spec
  const container = spec.template.spec.containers[0]
  overrideResources(container.resources, options.resources ?? {})
  if (options.httpProxy !== undefined) {
    container.env = [
      {name: 'HTTP_PROXY', value: options.httpProxy},
      {name: 'HTTPS_PROXY', value: options.httpProxy},
      {name: 'NO_PROXY', value: AGENT_NO_PROXY},
    ]
  }
  const replicas = options.replicas ?? 1
  if (replicas > 1) {
    spec.replicas = replicas
    spec.template.spec.affinity = spreadAcrossNodes(spec.selector.matchLabels)
    objects.push(disruptionBudget(deployment))
  }
}

/** The manifest as KubeSphere's endpoint returns it: one YAML document per object, `---` between them. */
export function agentManifestYaml(objects: ManifestObject[]): string {
  return objects.map((object) => dump(withSortedKeys(object), goYamlStyle)).join('---\n')
}

interface AgentContainer {
  name: string
  image: string
  /** Tower's agent: its argv is the command. */
  command?: string[]
  /** ksctl's agent: the image's entrypoint is ksctl, the args choose the role. */
  args?: string[]
  env?: {name: string; value: string}[]
  resources: {limits: Record<string, string>; requests: Record<string, string>}
}

interface ProjectedVolume {
  name: string
  projected?: {sources: {secret?: {name: string}; configMap?: {name: string}}[]}
}

interface AgentDeployment extends ManifestObject {
  spec: {
    replicas?: number
    selector: {matchLabels: Record<string, string>}
    template: {
      metadata?: {labels?: Record<string, string>; annotations?: Record<string, string>}
      spec: {
        containers: [AgentContainer, ...AgentContainer[]]
        affinity?: object
        volumes?: ProjectedVolume[]
      }
    }
  }
}

type DeepPartial<T> = T extends object ? {[K in keyof T]?: DeepPartial<T[K]>} : T

function loadTemplate(file: string): ManifestObject[] {
  let documents: unknown[]
  try {
    documents = loadAll(readFileSync(file, 'utf8'))
  } catch (error) {
    throw damagedTemplate(file, error instanceof Error ? error.message : String(error), error)
  }
  return documents
    .filter((document) => document !== null)
    .map((document) => {
      if (!isManifestObject(document)) throw damagedTemplate(file, 'a document is not a Kubernetes object')
      return document
    })
}

function agentDeployment(
  objects: ManifestObject[],
  name: string,
  argv: 'command' | 'args',
  file: string,
): AgentDeployment {
  const found = objects.find((object) => object.kind === 'Deployment' && object.metadata.name === name)
  if (found === undefined || !isAgentDeployment(found, argv)) {
    throw damagedTemplate(file, `no Deployment ${name} with an agent container`)
  }
  return found
}

function isAgentDeployment(object: ManifestObject, argv: 'command' | 'args'): object is AgentDeployment {
  const spec = (object as DeepPartial<AgentDeployment>).spec
  const container = spec?.template?.spec?.containers?.[0]
  return (
    isRecord(spec?.selector?.matchLabels) &&
    Array.isArray(container?.[argv]) &&
    isRecord(container.resources?.limits) &&
    isRecord(container.resources.requests)
  )
}

function templateObject(objects: ManifestObject[], kind: string, name: string, file: string): ManifestObject {
  const found = objects.find((object) => object.kind === kind && object.metadata.name === name)
  if (found === undefined) throw damagedTemplate(file, `no ${kind} ${name}`)
  return found
}

/** Replaces the value of a `--flag=value` argument the template has, so the argument order stays KubeSphere's. */
function setArgument(command: string[], flag: string, value: string, file: string): void {
  const index = command.findIndex((argument) => argument.startsWith(`${flag}=`))
  if (index === -1) throw damagedTemplate(file, `the agent's arguments have no ${flag}=`)
  command[index] = `${flag}=${value}`
}

/**
 * Applies the overrides and checks the result, defaults included: an override can put a request above
 * KubeSphere's default limit, which the API server would refuse only when the member applies the manifest.
 */
function overrideResources(resources: AgentContainer['resources'], overrides: AgentResources): void {
  if (overrides.cpuRequest !== undefined) resources.requests.cpu = overrides.cpuRequest
  if (overrides.memoryRequest !== undefined) resources.requests.memory = overrides.memoryRequest
  if (overrides.cpuLimit !== undefined) resources.limits.cpu = overrides.cpuLimit
  if (overrides.memoryLimit !== undefined) resources.limits.memory = overrides.memoryLimit
  for (const resource of ['cpu', 'memory']) {
    const request = resources.requests[resource]
    const limit = resources.limits[resource]
    if (request === undefined || limit === undefined) continue
    if ((quantityValue(request) ?? 0) > (quantityValue(limit) ?? Infinity)) {
      throw invalidInput(
        `the agent's ${resource} request ${request} is more than its ${resource} limit ${limit}, ` +
          'which Kubernetes refuses',
        [`raise the limit as well, e.g. --${resource}-limit ${request}`],
      )
    }
  }
}

/** Preferred, not required: a one-node member must still run every replica. */
function spreadAcrossNodes(labels: Record<string, string>): object {
  return {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [
        {
          weight: 100,
          podAffinityTerm: {labelSelector: {matchLabels: {...labels}}, topologyKey: 'kubernetes.io/hostname'},
        },
      ],
    },
  }
}

/** Keeps one agent, and so the member's tunnel, up through node drains. */
function disruptionBudget(deployment: AgentDeployment): ManifestObject {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: {
      name: deployment.metadata.name,
      namespace: deployment.metadata.namespace ?? KUBESPHERE_NAMESPACE,
    },
    spec: {minAvailable: 1, selector: {matchLabels: {...deployment.spec.selector.matchLabels}}},
  }
}

/** Go's YAML printer writes mapping keys in sorted order, whatever order the object was built in. */
function withSortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withSortedKeys)
  if (!isRecord(value)) return value
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((key) => [key, withSortedKeys(value[key])]),
  )
}

function isManifestObject(value: unknown): value is ManifestObject {
  return (
    isRecord(value) &&
    typeof value.apiVersion === 'string' &&
    typeof value.kind === 'string' &&
    isRecord(value.metadata) &&
    typeof value.metadata.name === 'string'
  )
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function damagedTemplate(file: string, problem: string, cause?: unknown): KsctlError {
  return new KsctlError(`internal error: the agent manifest template ${file} is damaged: ${problem}`, {
    code: 'INTERNAL',
    cause,
    suggestions: ['reinstall ksctl'],
  })
}
