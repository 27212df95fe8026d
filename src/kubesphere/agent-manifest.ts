import {readFileSync} from 'node:fs'

import {dump, loadAll, type DumpOptions} from 'js-yaml'

import {invalidInput, KsctlError} from '../errors.js'
import {templatePath} from '../package-root.js'
import {quantityValue} from '../quantity.js'
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
  const deployment = agentDeployment(objects, file)
  const spec = deployment.spec
  const container = spec.template.spec.containers[0]
  setArgument(container.command, '--name', options.clusterName, file)
  setArgument(container.command, '--token', options.token, file)
  setArgument(container.command, '--proxy-server', options.proxyAddress, file)
  container.image = options.image ?? DEFAULT_AGENT_IMAGES[options.edition]
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
  return objects
}

/** The manifest as KubeSphere's endpoint returns it: one YAML document per object, `---` between them. */
export function agentManifestYaml(objects: ManifestObject[]): string {
  return objects.map((object) => dump(withSortedKeys(object), goYamlStyle)).join('---\n')
}

interface AgentContainer {
  name: string
  image: string
  command: string[]
  env?: {name: string; value: string}[]
  resources: {limits: Record<string, string>; requests: Record<string, string>}
}

interface AgentDeployment extends ManifestObject {
  spec: {
    replicas?: number
    selector: {matchLabels: Record<string, string>}
    template: {spec: {containers: [AgentContainer, ...AgentContainer[]]; affinity?: object}}
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

function agentDeployment(objects: ManifestObject[], file: string): AgentDeployment {
  const found = objects.find(
    (object) => object.kind === 'Deployment' && object.metadata.name === AGENT_DEPLOYMENT_NAME,
  )
  if (found === undefined || !isAgentDeployment(found)) {
    throw damagedTemplate(file, `no Deployment ${AGENT_DEPLOYMENT_NAME} with an agent container`)
  }
  return found
}

function isAgentDeployment(object: ManifestObject): object is AgentDeployment {
  const spec = (object as DeepPartial<AgentDeployment>).spec
  const container = spec?.template?.spec?.containers?.[0]
  return (
    isRecord(spec?.selector?.matchLabels) &&
    Array.isArray(container?.command) &&
    isRecord(container.resources?.limits) &&
    isRecord(container.resources.requests)
  )
}

/** Replaces the value of a `--flag=value` argument the template has, so the argument order stays KubeSphere's. */
function setArgument(command: string[], flag: string, value: string, file: string): void {
  const index = command.findIndex((argument) => argument.startsWith(`${flag}=`))
  if (index === -1) throw damagedTemplate(file, `the agent command has no ${flag}=`)
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
    metadata: {name: AGENT_DEPLOYMENT_NAME, namespace: deployment.metadata.namespace ?? KUBESPHERE_NAMESPACE},
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
