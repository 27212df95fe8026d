import {X509Certificate} from 'node:crypto'

import {load} from 'js-yaml'

import {KsctlError} from '../errors.js'
import type {ClusterClient, DecodedSecret} from '../k8s/cluster-client.js'
import {ClusterResource, resourceName, type CustomObject} from '../k8s/resources.js'
import {allInOrder} from '../promises.js'
import {redactor} from '../redact.js'
import {PROXY_CA_SECRET} from '../tower/proxy/kubernetes/proxy-ca.js'
import {DEFAULT_AGENT_IMAGES, type ProxyTrust} from './agent-manifest.js'
import {parseKubeSphereConfig} from './config.js'
import {
  CLUSTER_CONNECTION_SECRET_KEY,
  CLUSTER_CONNECTION_SECRET_TYPE,
  KUBESPHERE_CONFIG_KEY,
  KUBESPHERE_CONFIG_NAME,
  KUBESPHERE_NAMESPACE,
  TOWER_CONNECTION_SECRET_NAME,
} from './constants.js'
import {detectKubeSphere, type Edition, type KubeSphereInfo} from './detect.js'
import {describeTowerService} from './tower-service.js'

/** Values the user gave, which replace what the host says. */
export interface AgentSettingsOverrides {
  proxyAddress?: string | undefined
  image?: string | undefined
}

/** Everything an agent manifest needs besides the rendering options. */
export interface AgentSettings {
  /** The host context the settings were read from; absent when everything came from flags. */
  context?: string
  edition: Edition
  clusterName: string
  token: string
  proxyAddress: string
  /** Where proxyAddress came from, in the user's words. */
  proxyAddressSource: string
  image: string
  /** What the user should know that does not stop the render. */
  warnings: string[]
}

/** The 4.x tower extension's fallback when kubesphere-config names no proxy Service. */
const DEFAULT_PROXY_PUBLISH_SERVICE = 'tower.kubesphere-system.svc'
/** ks-apiserver 3.x's fallback when kubesphere-config has no agentImage (the installer always writes one). */
const KUBESPHERE3_CODE_DEFAULT_AGENT_IMAGE = 'kubesphere/tower:v1.0'

type Cluster = CustomObject & {
  spec?: {joinFederation?: boolean; connection?: {type?: string; token?: string}}
}

/** The tower settings of a host, each from the first place KubeSphere looks for it. */
interface TowerSettings {
  proxyPublishAddress?: {value: string; configuredIn: string}
  proxyPublishService?: string
  agentImage?: string
}

/**
 * Reads, from a host, what KubeSphere itself uses to serve the agent manifest of cluster `clusterName`:
 * the edition, the Cluster's connection token, the proxy address (proxyPublishAddress, else the
 * LoadBalancer ingress of the proxyPublishService) and the agent image. Failures say what to do about them.
 */
export async function readAgentSettings(
  client: ClusterClient,
  clusterName: string,
  overrides: AgentSettingsOverrides = {},
): Promise<AgentSettings> {
  return readSettings(client, clusterName, overrides, (cluster, edition) =>
    connectionToken(cluster, clusterName, client.context, edition),
  )
}

/**
 * The settings `member join` will render the agent with, read before its Cluster has a token: the token
 * the proxy already issued (a re-run), else `placeholder`. What a dry run shows, so that it shows exactly
 * what the real run would do.
 */
export async function previewAgentSettings(
  client: ClusterClient,
  clusterName: string,
  overrides: AgentSettingsOverrides,
  placeholder: string,
): Promise<AgentSettings> {
  return readSettings(client, clusterName, overrides, (cluster) => {
    const issued = cluster?.spec?.connection?.token ?? ''
    redactor.register(issued)
    return {token: issued === '' ? placeholder : issued, warnings: []}
  })
}

async function readSettings(
  client: ClusterClient,
  clusterName: string,
  overrides: AgentSettingsOverrides,
  tokenOf: (cluster: Cluster | undefined, edition: Edition) => {token: string; warnings: string[]},
): Promise<AgentSettings> {
  const info = await detectKubeSphere(client)
  const edition = requireHost(info)
  const cluster = await client.findCustomObject<Cluster>(ClusterResource, clusterName)
  const {token, warnings} = tokenOf(cluster, edition)
  const tower = await readTowerSettings(client, info, edition)
  const proxy =
    overrides.proxyAddress === undefined
      ? await resolveProxyAddress(client, edition, tower)
      : {address: overrides.proxyAddress, source: '--proxy-address'}
  let image = overrides.image ?? tower.agentImage
  if (image === undefined && edition === '3.x') {
    image = KUBESPHERE3_CODE_DEFAULT_AGENT_IMAGE
    warnings.push(
      `configmap ${KUBESPHERE_NAMESPACE}/${KUBESPHERE_CONFIG_NAME} has no multicluster.agentImage, so the image ` +
        `is ks-apiserver's fallback ${image}, as KubeSphere would serve it; choose one with --image`,
    )
  }
  return {
    context: client.context,
    edition,
    clusterName,
    token,
    proxyAddress: proxy.address,
    proxyAddressSource: proxy.source,
    image: image ?? DEFAULT_AGENT_IMAGES[edition],
    warnings,
  }
}

const pickHost = 'pass --context with the context of the KubeSphere host cluster'

function requireHost(info: KubeSphereInfo): Edition {
  const check = `check with: ksctl info --context ${info.context}`
  if (!info.installed || info.edition === undefined) {
    throw new KsctlError(
      `KubeSphere is not installed in context "${info.context}", so it has no clusters to render an agent for`,
      {code: 'PRECONDITION_FAILED', context: info.context, suggestions: [pickHost, check]},
    )
  }
  if (info.role !== 'host') {
    const role = info.role === 'member' ? 'as a member' : 'without the host role (clusterRole none)'
    throw new KsctlError(
      `context "${info.context}" runs KubeSphere ${info.edition} ${role}: agent manifests come from ` +
        'the host cluster a member joins',
      {code: 'PRECONDITION_FAILED', context: info.context, suggestions: [pickHost, check]},
    )
  }
  return info.edition
}

function connectionToken(
  cluster: Cluster | undefined,
  name: string,
  context: string,
  edition: Edition,
): {token: string; warnings: string[]} {
  const object = {resource: resourceName(ClusterResource), name}
  const get = `kubectl --context ${context} get ${object.resource}`
  if (cluster === undefined) {
    throw new KsctlError(`cluster "${name}" not found in context "${context}" (${object.resource})`, {
      code: 'NOT_FOUND',
      context,
      object,
      suggestions: [`list the clusters this host knows: ${get}`],
    })
  }
  const connection = cluster.spec?.connection ?? {}
  if (connection.type !== 'proxy') {
    const type = connection.type === undefined ? 'no connection type' : `connection type "${connection.type}"`
    throw new KsctlError(
      `cluster "${name}" in context "${context}" has ${type}, not "proxy", and only proxy clusters run ` +
        `an agent (KubeSphere: "cluster ${name} is not using proxy connection")`,
      {
        code: 'PRECONDITION_FAILED',
        context,
        object,
        suggestions: [
          'a direct cluster needs no agent: the host reaches it with the kubeconfig in spec.connection',
          `check with: ${get} ${name} -o jsonpath='{.spec.connection.type}'`,
        ],
      },
    )
  }
  const joins = cluster.spec?.joinFederation === true
  const joinFederation =
    `the tower proxy only serves clusters with spec.joinFederation: true; set it with: kubectl --context ` +
    `${context} patch ${object.resource} ${name} --type merge -p '{"spec":{"joinFederation":true}}'`
  const token = connection.token ?? ''
  redactor.register(token)
  if (token === '') {
    throw new KsctlError(
      `cluster "${name}" in context "${context}" has no agent token yet: the tower proxy writes ` +
        'spec.connection.token when it initializes the cluster (condition Initialized)',
      {
        code: 'PRECONDITION_FAILED',
        context,
        object,
        suggestions: [
          `wait for it: kubectl --context ${context} wait --for=condition=Initialized ${object.resource}/${name} --timeout=2m`,
          ...(joins ? [] : [joinFederation]),
          `check that the tower proxy runs: kubectl --context ${context} -n ${KUBESPHERE_NAMESPACE} get deployment tower` +
            (edition === '4.x' ? ' (KubeSphere 4.x: the tower extension must be installed and enabled)' : ''),
        ],
      },
    )
  }
  return {token, warnings: joins ? [] : [`the agent will be refused: ${joinFederation}`]}
}

async function readTowerSettings(
  client: ClusterClient,
  info: KubeSphereInfo,
  edition: Edition,
): Promise<TowerSettings> {
  const [configMap, secret] = await allInOrder([
    client.findConfigMap(KUBESPHERE_NAMESPACE, KUBESPHERE_CONFIG_NAME),
    edition === '4.x'
      ? client.findSecret(KUBESPHERE_NAMESPACE, TOWER_CONNECTION_SECRET_NAME)
      : Promise.resolve(undefined),
  ])
  const multicluster = parseKubeSphereConfig(
    configMap?.data?.[KUBESPHERE_CONFIG_KEY],
    client.context,
  ).multicluster
  const connection = connectionSettings(secret)
  // detectKubeSphere already looked where each edition configures the address (3.x: ks-installer's
  // ClusterConfiguration; 4.x: the tower Secret, then kubesphere-config). ks-apiserver 3.x reads the
  // ConfigMap the installer renders from it, so a hand-edited ConfigMap is the 3.x fallback.
  const configured = info.proxyAddress.configured
  const fromConfigMap = nonEmpty(multicluster?.proxyPublishAddress)
  const proxyPublishAddress =
    configured !== undefined
      ? {value: configured, configuredIn: info.proxyAddress.configuredIn ?? 'the host'}
      : fromConfigMap === undefined
        ? undefined
        : {value: fromConfigMap, configuredIn: `configmap ${KUBESPHERE_CONFIG_NAME}`}
  const proxyPublishService =
    setting(connection, 'proxyPublishService') ?? nonEmpty(multicluster?.proxyPublishService)
  const agentImage = setting(connection, 'agentImage') ?? nonEmpty(multicluster?.agentImage)
  return {
    ...(proxyPublishAddress === undefined ? {} : {proxyPublishAddress}),
    ...(proxyPublishService === undefined ? {} : {proxyPublishService}),
    ...(agentImage === undefined ? {} : {agentImage}),
  }
}

/** KubeSphere's order (shared/reference/kubesphere.md §5.4), with its errors made actionable. */
async function resolveProxyAddress(
  client: ClusterClient,
  edition: Edition,
  tower: TowerSettings,
): Promise<{address: string; source: string}> {
  if (tower.proxyPublishAddress !== undefined) {
    const {value, configuredIn} = tower.proxyPublishAddress
    return {address: value, source: `proxyPublishAddress in ${configuredIn}`}
  }
  const context = client.context
  const serviceRef =
    tower.proxyPublishService ?? (edition === '4.x' ? DEFAULT_PROXY_PUBLISH_SERVICE : undefined)
  const [name = '', namespaceOfRef = ''] = serviceRef?.split('.') ?? []
  if (name === '') {
    throw new KsctlError(
      `KubeSphere in context "${context}" has neither multicluster.proxyPublishAddress nor ` +
        'multicluster.proxyPublishService, so there is no address to tell the agent to dial',
      {code: 'PRECONDITION_FAILED', context, suggestions: setAddress(context, '<port>')},
    )
  }
  const namespace = namespaceOfRef === '' ? KUBESPHERE_NAMESPACE : namespaceOfRef
  const object = {resource: 'services', name, namespace}
  const service = describeTowerService(await client.findService(namespace, name))
  if (!service.exists || service.port === undefined) {
    const problem = service.exists ? 'has no ports' : 'was not found'
    throw new KsctlError(
      `the proxy Service ${namespace}/${name} (multicluster.proxyPublishService) ${problem} in context "${context}"`,
      {
        code: 'PRECONDITION_FAILED',
        context,
        object,
        suggestions: [
          `check that the tower proxy is installed: kubectl --context ${context} -n ${namespace} get service ${name}` +
            (edition === '4.x' ? ' (KubeSphere 4.x: the tower extension)' : ''),
          ...setAddress(context, '<port>'),
        ],
      },
    )
  }
  if (service.loadBalancerAddress !== undefined) {
    return {
      address: service.loadBalancerAddress,
      source: `LoadBalancer ingress of service ${namespace}/${name}`,
    }
  }
  const pending = service.type === 'LoadBalancer'
  throw new KsctlError(
    `service ${namespace}/${name} has no public address in context "${context}" ` +
      `(${pending ? 'its LoadBalancer has no ingress yet' : `it is of type ${service.type ?? 'ClusterIP'}`}) ` +
      'and no proxyPublishAddress is configured, so there is no address to tell the agent to dial',
    {
      code: 'PRECONDITION_FAILED',
      context,
      object,
      suggestions: [
        ...setAddress(context, String(service.nodePort ?? '<port>')),
        ...(pending
          ? [
              `or wait for the LoadBalancer: kubectl --context ${context} -n ${namespace} get service ${name} --watch`,
            ]
          : []),
      ],
    },
  )
}

function setAddress(context: string, port: string): string[] {
  const node = port === '<port>' ? '<address>' : '<node-ip>'
  return [
    `set the address every member can reach the tower proxy at: ksctl proxy set-address http://${node}:${port} --context ${context}`,
    `or give it to this command only: --proxy-address http://${node}:${port}`,
  ]
}

/** The 4.x cluster-connection Secret's settings, when the Secret exists and has that type. */
function connectionSettings(secret: DecodedSecret | undefined): Record<string, unknown> | undefined {
  if (secret?.type !== CLUSTER_CONNECTION_SECRET_TYPE) return undefined
  const parsed: unknown = load(secret.data[CLUSTER_CONNECTION_SECRET_KEY] ?? '')
  return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : undefined
}

function setting(settings: Record<string, unknown> | undefined, key: string): string | undefined {
  const value = settings?.[key]
  return typeof value === 'string' ? nonEmpty(value) : undefined
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}

/** How ksctl's agent is told to trust ksctl's proxy, as the user gave it (`--proxy-pin`, `--proxy-ca`). */
export interface ProxyTrustOverrides {
  pin?: string | undefined
  caPem?: string | undefined
}

/**
 * How ksctl's agent trusts ksctl's proxy: what the user gave, else the proxy CA's certificate, which ksctl's proxy
 * keeps in Secret kubesphere-system/ksctl-tower-ca on the host. Only `tls.crt` is taken: the CA's key never leaves
 * the host.
 */
export async function readProxyTrust(host: ClusterClient, given: ProxyTrustOverrides): Promise<ProxyTrust> {
  if (given.pin !== undefined) return {pin: given.pin}
  if (given.caPem !== undefined) return {caPem: given.caPem}
  const context = host.context
  const object = {resource: 'secrets', name: PROXY_CA_SECRET, namespace: KUBESPHERE_NAMESPACE}
  const secret = await host.findSecret(KUBESPHERE_NAMESPACE, PROXY_CA_SECRET)
  const certificate = secret?.data['tls.crt'] ?? ''
  if (secret === undefined || !isCertificatePem(certificate)) {
    const problem = secret === undefined ? 'does not exist' : 'has no certificate in tls.crt'
    throw new KsctlError(
      `secret ${KUBESPHERE_NAMESPACE}/${PROXY_CA_SECRET} ${problem} in context "${context}": ksctl's agent needs ` +
        "the CA of ksctl's proxy to verify it, and the proxy makes that Secret at its first start",
      {
        code: 'PRECONDITION_FAILED',
        context,
        object,
        suggestions: [
          `check that ksctl's proxy runs: kubectl --context ${context} -n ${KUBESPHERE_NAMESPACE} get deployment ksctl-tower-proxy`,
          'or trust the proxy by the pin of its serving key instead: --proxy-pin sha256:<hex> (the proxy logs it as servingPin)',
        ],
      },
    )
  }
  return {caPem: certificate}
}

/** One or more PEM certificates and nothing else: never a private key. */
export function isCertificatePem(text: string): boolean {
  if (/PRIVATE KEY-----/.test(text)) return false
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []
  if (blocks.length === 0) return false
  try {
    for (const block of blocks) new X509Certificate(block)
    return true
  } catch {
    return false
  }
}
