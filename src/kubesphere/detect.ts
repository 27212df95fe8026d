import type {V1Deployment} from '@kubernetes/client-node'
import {load} from 'js-yaml'

import {KsctlError} from '../errors.js'
import type {ClusterClient, DecodedSecret} from '../k8s/cluster-client.js'
import {apiVersionOf, ClusterConfigurationResource, type CustomObject} from '../k8s/resources.js'
import {allInOrder} from '../promises.js'
import {fingerprint} from '../redact.js'
import {parseKubeSphereConfig, type KubeSphereConfig} from './config.js'
import {
  CLUSTER_CONNECTION_SECRET_KEY,
  CLUSTER_CONNECTION_SECRET_TYPE,
  DEFAULT_HOST_CLUSTER_NAME,
  INSTALLER_CONFIGURATION_NAME,
  INSTALLER_DEPLOYMENT_NAME,
  KUBESPHERE_CONFIG_KEY,
  KUBESPHERE_CONFIG_NAME,
  KUBESPHERE_NAMESPACE,
  MEMBER_CLUSTER_NAME_ANNOTATION,
  MEMBER_HOST_CLUSTER_ANNOTATION,
  TOWER_CONNECTION_SECRET_NAME,
  TOWER_SERVICE_NAME,
} from './constants.js'
import {describeTowerService, type TowerService} from './tower-service.js'

export type Edition = '3.x' | '4.x'
export type MulticlusterRole = 'host' | 'member' | 'none'

export interface ProxyAddress {
  /** `proxyPublishAddress` as configured, if anywhere. */
  configured?: string
  /** Where `configured` was read from, in the user's words. */
  configuredIn?: string
  /** What members will be told to dial: the configured address, else the tower LoadBalancer's. */
  effective?: string
  source?: 'configured' | 'load-balancer'
}

/** What `ksctl info` reports for one context. Part of the `--json` contract: add fields, never rename. */
export interface KubeSphereInfo {
  context: string
  server: string
  kubernetesVersion: string
  installed: boolean
  edition?: Edition
  version?: string
  role: MulticlusterRole
  /** The host's name for itself (host only). */
  hostClusterName?: string
  /** The name a host gave this member, when it has joined one. */
  memberClusterName?: string
  /** 4.x: the host cluster that manages this member. */
  managedByHost?: string
  /** 3.x: `status.multicluster.status` written by ks-installer (`enabled` once the host role is installed). */
  multiclusterStatus?: string
  tower: TowerService
  proxyAddress: ProxyAddress
  jwtSecretFingerprint?: string
  /**
   * Set when the install is not whole enough to work on, such as KubeSphere 3.x without its ks-installer
   * ClusterConfiguration: what is missing, the signs the edition was told from, and what to do. Commands
   * that change anything refuse while it is set (requireComplete).
   */
  incomplete?: {message: string; signs: string[]; suggestions: string[]}
}

type ClusterConfiguration = CustomObject & {
  metadata?: {labels?: Record<string, string>}
  spec?: {
    multicluster?: {clusterRole?: string; hostClusterName?: string; proxyPublishAddress?: string}
    authentication?: {jwtSecret?: string}
  }
  status?: {core?: {version?: string}; multicluster?: {status?: string}}
}

/**
 * Finds out what KubeSphere (if any) runs behind one context, reading the objects each edition keeps its
 * settings in: 3.x the ks-installer ClusterConfiguration, 4.x the kubesphere-config ConfigMap.
 */
export async function detectKubeSphere(client: ClusterClient): Promise<KubeSphereInfo> {
  const version = await client.version()
  const base = {context: client.context, server: client.server, kubernetesVersion: version.gitVersion}
  const namespace = await client.findNamespace(KUBESPHERE_NAMESPACE)
  if (namespace === undefined) {
    return {...base, installed: false, role: 'none', tower: {exists: false}, proxyAddress: {}}
  }
  // Discovery says whether ks-installer's CRD exists at all: a 4.x cluster is then never asked for it.
  const served = await client.servedGroupVersions()
  const [installer, configMap, towerService] = await allInOrder([
    served.has(apiVersionOf(ClusterConfigurationResource))
      ? client.findCustomObject<ClusterConfiguration>(
          ClusterConfigurationResource,
          INSTALLER_CONFIGURATION_NAME,
          KUBESPHERE_NAMESPACE,
        )
      : Promise.resolve(undefined),
    client.findConfigMap(KUBESPHERE_NAMESPACE, KUBESPHERE_CONFIG_NAME),
    client.findService(KUBESPHERE_NAMESPACE, TOWER_SERVICE_NAME),
  ])
  const config = parseKubeSphereConfig(configMap?.data?.[KUBESPHERE_CONFIG_KEY], client.context)
  const tower = describeTowerService(towerService)
  if (installer !== undefined) {
    return {...base, ...describeInstallerEdition(installer, config, tower)}
  }
  if (configMap === undefined) {
    return {...base, installed: false, role: 'none', tower, proxyAddress: {}}
  }
  // No ClusterConfiguration: 4.x keeps none, but a 3.x install may have lost it. The edition is told from
  // what each leaves behind, not from the missing object.
  const [connectionSecret, apiServerVersion, installerDeployment] = await allInOrder([
    client.findSecret(KUBESPHERE_NAMESPACE, TOWER_CONNECTION_SECRET_NAME),
    coreVersionFromDeployments(client),
    client.findDeployment(KUBESPHERE_NAMESPACE, INSTALLER_DEPLOYMENT_NAME),
  ])
  const signs = editionSigns(config, configMap.metadata?.labels ?? {}, apiServerVersion, installerDeployment)
  if (signs['3.x'].length > 0) {
    const installerVersion = apiServerVersion ?? imageTag(installerDeployment)
    return {
      ...base,
      ...describeConfigOnlyInstaller(config, tower),
      ...(installerVersion === undefined ? {} : {version: installerVersion}),
      incomplete: missingInstallerConfiguration(client.context, installerVersion, signs, served),
    }
  }
  const annotations = namespace.metadata?.annotations ?? {}
  return {
    ...base,
    ...describeCoreEdition(config, tower, connectionSettings(connectionSecret), annotations),
    ...(apiServerVersion === undefined ? {} : {version: apiServerVersion}),
  }
}

/**
 * Refuses to change a cluster whose install is incomplete (see KubeSphereInfo.incomplete): ksctl would
 * change objects the missing one overwrites, or read the wrong edition's settings.
 */
export function requireComplete(info: KubeSphereInfo): void {
  if (info.incomplete === undefined) return
  throw new KsctlError(`context "${info.context}": ${info.incomplete.message}; nothing was changed`, {
    code: 'PRECONDITION_FAILED',
    context: info.context,
    suggestions: info.incomplete.suggestions,
  })
}

type EditionSigns = Record<Edition, string[]>

/**
 * What each edition leaves behind besides the ClusterConfiguration. 3.x: the ks-installer Deployment,
 * kubesphere.yaml's 3.x layout (`authentication.jwtSecret`, kubesphere.md §2.1), a v3 ks-apiserver. 4.x:
 * the 4.x layout (`authentication.issuer`, §2.2), a v4 ks-apiserver, a Helm-managed kubesphere-config. Any
 * 4.x sign outweighs the 3.x ones: ks-upgrade keeps 3.x leftovers, and a 4.x cluster has no installer.
 */
function editionSigns(
  config: KubeSphereConfig,
  configLabels: Record<string, string>,
  apiServerVersion: string | undefined,
  installerDeployment: V1Deployment | undefined,
): EditionSigns {
  const signs: EditionSigns = {'3.x': [], '4.x': []}
  const authentication = config.authentication ?? {}
  if (authentication.issuer !== undefined)
    signs['4.x'].push(`${KUBESPHERE_CONFIG_NAME} has authentication.issuer`)
  if (/^v?4\./.test(apiServerVersion ?? '')) signs['4.x'].push(`ks-apiserver ${apiServerVersion ?? ''}`)
  if (configLabels['app.kubernetes.io/managed-by'] === 'Helm')
    signs['4.x'].push(`${KUBESPHERE_CONFIG_NAME} is managed by Helm`)
  if (signs['4.x'].length > 0) return signs
  if (installerDeployment !== undefined)
    signs['3.x'].push(`deployment ${KUBESPHERE_NAMESPACE}/${INSTALLER_DEPLOYMENT_NAME}`)
  if (authentication.jwtSecret !== undefined)
    signs['3.x'].push(`${KUBESPHERE_CONFIG_NAME} has the 3.x layout (authentication.jwtSecret)`)
  if (/^v?3\./.test(apiServerVersion ?? '')) signs['3.x'].push(`ks-apiserver ${apiServerVersion ?? ''}`)
  return signs
}

/** 3.x read from kubesphere-config alone, when the ClusterConfiguration that renders it is gone. */
function describeConfigOnlyInstaller(config: KubeSphereConfig, tower: TowerService): EditionFields {
  const multicluster = config.multicluster ?? {}
  // 3.0–3.2 render no clusterRole: only a host has the multicluster block, with enable true.
  const role =
    multicluster.clusterRole === undefined && multicluster.enable === true
      ? 'host'
      : toRole(multicluster.clusterRole)
  const jwtSecret = config.authentication?.jwtSecret
  return {
    installed: true,
    edition: '3.x',
    role,
    ...(role === 'host'
      ? {hostClusterName: nonEmpty(multicluster.hostClusterName) ?? DEFAULT_HOST_CLUSTER_NAME}
      : {}),
    ...(role === 'member' && nonEmpty(multicluster.clusterName) !== undefined
      ? {memberClusterName: multicluster.clusterName}
      : {}),
    tower,
    proxyAddress: proxyAddress(
      nonEmpty(multicluster.proxyPublishAddress),
      `configmap ${KUBESPHERE_CONFIG_NAME}`,
      tower,
    ),
    ...(nonEmpty(jwtSecret) === undefined ? {} : {jwtSecretFingerprint: fingerprint(jwtSecret ?? '')}),
  }
}

function missingInstallerConfiguration(
  context: string,
  version: string | undefined,
  signs: EditionSigns,
  served: Set<string>,
): NonNullable<KubeSphereInfo['incomplete']> {
  const crd = served.has(apiVersionOf(ClusterConfigurationResource))
  const release = version === undefined ? 'v3.4.1' : version
  return {
    message:
      `KubeSphere 3.x without its ks-installer ClusterConfiguration ${KUBESPHERE_NAMESPACE}/${INSTALLER_CONFIGURATION_NAME} ` +
      `(${crd ? 'its CRD is still served' : 'its CRD is not served either'}; signs of 3.x: ${signs['3.x'].join(', ')}): ` +
      'ks-installer renders kubesphere-config from it, so a change made without it would not last',
    signs: signs['3.x'],
    suggestions: [
      `recreate it with the settings this cluster has (spec.multicluster.clusterRole; on a member, the host's jwtSecret ` +
        `as spec.authentication.jwtSecret), starting from the release's cluster-configuration.yaml: ` +
        `https://github.com/kubesphere/ks-installer/releases/download/${release}/cluster-configuration.yaml, ` +
        `then kubectl --context ${context} apply -f cluster-configuration.yaml`,
      `then check with: ksctl info --context ${context}`,
    ],
  }
}

function imageTag(deployment: V1Deployment | undefined): string | undefined {
  const image = deployment?.spec?.template.spec?.containers[0]?.image
  return image?.includes(':') === true ? image.slice(image.lastIndexOf(':') + 1) : undefined
}

type EditionFields = Omit<KubeSphereInfo, 'context' | 'server' | 'kubernetesVersion'>

function describeInstallerEdition(
  installer: ClusterConfiguration,
  config: KubeSphereConfig,
  tower: TowerService,
): EditionFields {
  const multicluster = installer.spec?.multicluster ?? {}
  const role = toRole(multicluster.clusterRole)
  const version = installer.status?.core?.version ?? installer.metadata?.labels?.version
  const jwtSecret = config.authentication?.jwtSecret
  const memberName = config.multicluster?.clusterName
  const multiclusterStatus = installer.status?.multicluster?.status
  return {
    installed: true,
    edition: '3.x',
    ...(version === undefined ? {} : {version}),
    role,
    ...(role === 'host'
      ? {hostClusterName: nonEmpty(multicluster.hostClusterName) ?? DEFAULT_HOST_CLUSTER_NAME}
      : {}),
    ...(role === 'member' && nonEmpty(memberName) !== undefined ? {memberClusterName: memberName} : {}),
    ...(multiclusterStatus === undefined ? {} : {multiclusterStatus}),
    tower,
    proxyAddress: proxyAddress(
      nonEmpty(multicluster.proxyPublishAddress),
      'ClusterConfiguration ks-installer',
      tower,
    ),
    ...(nonEmpty(jwtSecret) === undefined ? {} : {jwtSecretFingerprint: fingerprint(jwtSecret ?? '')}),
  }
}

function describeCoreEdition(
  config: KubeSphereConfig,
  tower: TowerService,
  connection: Record<string, unknown> | undefined,
  namespaceAnnotations: Record<string, string>,
): EditionFields {
  const multicluster = config.multicluster ?? {}
  const role: MulticlusterRole = multicluster.clusterRole === 'member' ? 'member' : 'host'
  const jwtSecret = config.authentication?.issuer?.jwtSecret
  const fromSecret =
    typeof connection?.proxyPublishAddress === 'string' ? nonEmpty(connection.proxyPublishAddress) : undefined
  const configured = fromSecret ?? nonEmpty(multicluster.proxyPublishAddress)
  const configuredIn =
    fromSecret === undefined
      ? `configmap ${KUBESPHERE_CONFIG_NAME}`
      : `secret ${TOWER_CONNECTION_SECRET_NAME}`
  const memberName = nonEmpty(namespaceAnnotations[MEMBER_CLUSTER_NAME_ANNOTATION])
  const managedBy = nonEmpty(namespaceAnnotations[MEMBER_HOST_CLUSTER_ANNOTATION])
  return {
    installed: true,
    edition: '4.x',
    role,
    ...(role === 'host'
      ? {hostClusterName: nonEmpty(multicluster.hostClusterName) ?? DEFAULT_HOST_CLUSTER_NAME}
      : {}),
    ...(memberName === undefined ? {} : {memberClusterName: memberName}),
    ...(managedBy === undefined ? {} : {managedByHost: managedBy}),
    tower,
    proxyAddress: proxyAddress(configured, configuredIn, tower),
    ...(nonEmpty(jwtSecret) === undefined ? {} : {jwtSecretFingerprint: fingerprint(jwtSecret ?? '')}),
  }
}

function proxyAddress(
  configured: string | undefined,
  configuredIn: string,
  tower: TowerService,
): ProxyAddress {
  if (configured !== undefined) return {configured, configuredIn, effective: configured, source: 'configured'}
  if (tower.loadBalancerAddress !== undefined)
    return {effective: tower.loadBalancerAddress, source: 'load-balancer'}
  return {}
}

/** The settings of the 4.x cluster-connection Secret, when it exists and has that Secret type. */
function connectionSettings(secret: DecodedSecret | undefined): Record<string, unknown> | undefined {
  if (secret?.type !== CLUSTER_CONNECTION_SECRET_TYPE) return undefined
  const parsed: unknown = load(secret.data[CLUSTER_CONNECTION_SECRET_KEY] ?? '')
  return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : undefined
}

/** 4.x keeps no version in a config object: the ks-apiserver (host) or ks-agent (member) image tag says it. */
async function coreVersionFromDeployments(client: ClusterClient): Promise<string | undefined> {
  for (const name of ['ks-apiserver', 'ks-agent']) {
    const deployment = await client.findDeployment(KUBESPHERE_NAMESPACE, name)
    const labelled = deployment?.metadata?.labels?.['app.kubernetes.io/version']
    if (labelled !== undefined) return labelled
    const image = deployment?.spec?.template.spec?.containers.find((c) => c.name === 'ks-apiserver')?.image
    const tag = image?.includes(':') === true ? image.slice(image.lastIndexOf(':') + 1) : undefined
    if (tag !== undefined) return tag
  }
  return undefined
}

function toRole(value: string | undefined): MulticlusterRole {
  return value === 'host' || value === 'member' ? value : 'none'
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}
