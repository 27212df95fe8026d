import type {V1Deployment, V1Service} from '@kubernetes/client-node'

import {KsctlError} from '../errors.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {ClusterResource} from '../k8s/resources.js'
import type {KubeSphereCluster} from '../kubesphere/cluster-object.js'
import {detectKubeSphere, requireComplete, type Edition, type KubeSphereInfo} from '../kubesphere/detect.js'
import {privateKeyFingerprint} from '../pki/certificates.js'
import {isProxyCluster} from '../tower/proxy/kubernetes/cluster-reconcile.js'
import {PROXY_CA_SECRET} from '../tower/proxy/kubernetes/proxy-ca.js'
import {SERVING_SECRET} from '../tower/proxy/kubernetes/serving-secret.js'
import {HostObjects, plain, type HostObject} from './host-objects.js'
import {readRecord, type InstallRecord} from './install-record.js'
import {INSTALL_RECORD_NAME, NAMESPACE, TOWER_NAME} from './names.js'

export type TowerDeployment = HostObject & V1Deployment
export type TowerService = HostObject & V1Service

/** Everything install and uninstall decide from, read before any write. */
export interface HostState {
  client: ClusterClient
  objects: HostObjects
  info: KubeSphereInfo
  edition: Edition
  towerDeployment: TowerDeployment
  towerService: TowerService
  clusters: KubeSphereCluster[]
  /** Service mc-NAME of each proxy Cluster that has one, by Cluster name. */
  clusterServices: Map<string, HostObject & V1Service>
  record?: {configMap: HostObject; record: InstallRecord}
  /** The proxy CA's certificate, when its Secret exists. */
  caPem?: string
  /** The serving key's pin, when its Secret exists. */
  servingPin?: string
}

export const towerDeploymentHeader = {
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: {name: TOWER_NAME, namespace: NAMESPACE},
}
export const towerServiceHeader = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: {name: TOWER_NAME, namespace: NAMESPACE},
}
export const recordHeader = {
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: {name: INSTALL_RECORD_NAME, namespace: NAMESPACE},
}

/**
 * Reads the host: KubeSphere's edition and role, Tower's proxy Deployment and Service, the Clusters and their mc-NAME
 * Services, the install record and the proxy's Secrets. A cluster that is not a KubeSphere host with Tower installed
 * is refused here, naming what is missing.
 */
export async function readHostState(client: ClusterClient): Promise<HostState> {
  const objects = new HostObjects(client)
  const info = await detectKubeSphere(client)
  requireComplete(info)
  const edition = requireHost(client, info)
  const [towerDeployment, towerService, clusters, services, recordMap, ca, serving] = await Promise.all([
    objects.find<TowerDeployment>(towerDeploymentHeader),
    objects.find<TowerService>(towerServiceHeader),
    client.listCustomObjects<KubeSphereCluster>(ClusterResource),
    client.listServices(NAMESPACE, ''),
    objects.find(recordHeader),
    client.findSecret(NAMESPACE, PROXY_CA_SECRET),
    client.findSecret(NAMESPACE, SERVING_SECRET),
  ])
  if (towerDeployment === undefined || towerService === undefined) {
    const missing = [
      ...(towerDeployment === undefined ? [`deployment ${NAMESPACE}/${TOWER_NAME}`] : []),
      ...(towerService === undefined ? [`service ${NAMESPACE}/${TOWER_NAME}`] : []),
    ]
    throw new KsctlError(
      `Tower's proxy is not installed in context "${client.context}" (no ${missing.join(' and no ')}): there is nothing to replace`,
      {
        code: 'PRECONDITION_FAILED',
        context: client.context,
        object: {
          resource: towerDeployment === undefined ? 'deployments' : 'services',
          ...(towerDeployment === undefined ? {group: 'apps'} : {}),
          name: TOWER_NAME,
          namespace: NAMESPACE,
        },
        suggestions:
          edition === '3.x'
            ? [
                `make the cluster a host first, and wait for ks-installer: ksctl host init --context ${client.context} --wait`,
              ]
            : [
                'install and enable "KubeSphere Multi-Cluster Agent Connection" (the tower extension) in the Extensions Center: the console offers the proxy connection type only with it',
              ],
      },
    )
  }
  const proxyNames = new Set(
    clusters.filter(isProxyCluster).map((cluster) => `mc-${cluster.metadata?.name ?? ''}`),
  )
  const clusterServices = new Map(
    services
      .filter((service) => proxyNames.has(service.metadata?.name ?? ''))
      .map((service) => [
        (service.metadata?.name ?? '').slice('mc-'.length),
        {...(plain(service) as HostObject & V1Service), apiVersion: 'v1', kind: 'Service'},
      ]),
  )
  return {
    client,
    objects,
    info,
    edition,
    towerDeployment,
    towerService,
    clusters,
    clusterServices,
    ...(recordMap === undefined
      ? {}
      : {record: {configMap: recordMap, record: readRecord(recordMap, client.context)}}),
    ...(ca?.data['tls.crt'] === undefined ? {} : {caPem: ca.data['tls.crt']}),
    ...(serving?.data['tls.key'] === undefined ? {} : {servingPin: pinOf(serving.data['tls.key'])}),
  }
}

function pinOf(keyPem: string): string | undefined {
  try {
    return privateKeyFingerprint(keyPem)
  } catch {
    return undefined
  }
}

function requireHost(client: ClusterClient, info: KubeSphereInfo): Edition {
  if (!info.installed || info.edition === undefined) {
    throw new KsctlError(`KubeSphere is not installed in context "${client.context}"`, {
      code: 'PRECONDITION_FAILED',
      context: client.context,
      suggestions: [
        'ksctl proxy install replaces Tower on a KubeSphere 3.4 or 4.1 host',
        `check with: ksctl info --context ${client.context}`,
      ],
    })
  }
  if (info.role !== 'host') {
    throw new KsctlError(
      `context "${client.context}" is not a KubeSphere host (its multi-cluster role is ${info.role}): only a host runs the tower proxy`,
      {
        code: 'PRECONDITION_FAILED',
        context: client.context,
        suggestions: [
          info.role === 'member'
            ? 'run it against the host this member belongs to'
            : `make it a host first: ksctl host init --context ${client.context} --wait`,
        ],
      },
    )
  }
  return info.edition
}
