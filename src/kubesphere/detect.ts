import {load} from 'js-yaml'

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
  const annotations = namespace.metadata?.annotations ?? {}
  const [connectionSecret, apiServerVersion] = await allInOrder([
    client.findSecret(KUBESPHERE_NAMESPACE, TOWER_CONNECTION_SECRET_NAME),
    coreVersionFromDeployments(client),
  ])
  return {
    ...base,
    ...describeCoreEdition(config, tower, connectionSettings(connectionSecret), annotations),
    ...(apiServerVersion === undefined ? {} : {version: apiServerVersion}),
  }
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
