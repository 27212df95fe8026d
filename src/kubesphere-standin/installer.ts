import {AppsV1Api, CoreV1Api} from '@kubernetes/client-node'
import {dump, load} from 'js-yaml'

import type {ClusterClient} from '../k8s/cluster-client.js'
import {ClusterConfigurationResource, type CustomObject} from '../k8s/resources.js'
import {DEFAULT_AGENT_IMAGES} from '../kubesphere/agent-manifest.js'
import {
  INSTALLER_CONFIGURATION_NAME,
  KUBESPHERE_CONFIG_KEY,
  KUBESPHERE_CONFIG_NAME,
  KUBESPHERE_NAMESPACE,
  TOWER_SERVICE_NAME,
} from '../kubesphere/constants.js'

type Installer = CustomObject & {
  spec?: {
    authentication?: {jwtSecret?: string}
    multicluster?: {clusterRole?: string; proxyPublishAddress?: string; hostClusterName?: string}
  }
  status?: {multicluster?: {status?: string}}
}

interface KubeSphereYaml {
  authentication?: Record<string, unknown>
  multicluster?: Record<string, unknown>
}

/**
 * One pass of ks-installer (KubeSphere 3.x) on one cluster, for what the join flow waits on (kubesphere.md §1.4):
 * on a spec change the installer re-renders kubesphere-config from the ClusterConfiguration (its jwtSecret, its
 * role and, for a host, the multicluster settings and proxyPublishAddress), and on a host whose multicluster
 * component is not enabled yet it installs the tower proxy (the `tower` Service and Deployment) and reports
 * `status.multicluster` enabled. Nothing is run: no pods start, nothing is pulled. A cluster without the
 * ClusterConfiguration (KubeSphere 4.x, or none) is left alone.
 */
export async function installerPass(client: ClusterClient): Promise<void> {
  const installer = await client.findCustomObject<Installer>(
    ClusterConfigurationResource,
    INSTALLER_CONFIGURATION_NAME,
    KUBESPHERE_NAMESPACE,
  )
  if (installer === undefined) return
  const role = installer.spec?.multicluster?.clusterRole ?? 'none'
  const configMap = await client.findConfigMap(KUBESPHERE_NAMESPACE, KUBESPHERE_CONFIG_NAME)
  if (configMap !== undefined) {
    const config = (load(configMap.data?.[KUBESPHERE_CONFIG_KEY] ?? '') ?? {}) as KubeSphereYaml
    const before = JSON.stringify(config)
    const jwtSecret = installer.spec?.authentication?.jwtSecret
    if (jwtSecret !== undefined && jwtSecret !== '')
      config.authentication = {...config.authentication, jwtSecret}
    const multicluster = installer.spec?.multicluster
    config.multicluster =
      role === 'host'
        ? {
            ...config.multicluster,
            clusterRole: role,
            enable: true,
            agentImage: DEFAULT_AGENT_IMAGES['3.x'],
            proxyPublishService: `${TOWER_SERVICE_NAME}.${KUBESPHERE_NAMESPACE}.svc`,
            ...(multicluster?.proxyPublishAddress === undefined
              ? {}
              : {proxyPublishAddress: multicluster.proxyPublishAddress}),
            ...(multicluster?.hostClusterName === undefined
              ? {}
              : {hostClusterName: multicluster.hostClusterName}),
          }
        : {...config.multicluster, clusterRole: role}
    if (JSON.stringify(config) !== before) {
      configMap.data = {...configMap.data, [KUBESPHERE_CONFIG_KEY]: dump(config)}
      await client.replaceConfigMap(configMap)
    }
  }
  if (role === 'host' && installer.status?.multicluster?.status !== 'enabled') {
    await installTowerProxy(client)
    await client.patchCustomObject(
      ClusterConfigurationResource,
      INSTALLER_CONFIGURATION_NAME,
      {strategy: 'merge', body: {status: {multicluster: {status: 'enabled', enabledTime: installerTime()}}}},
      {namespace: KUBESPHERE_NAMESPACE},
    )
  }
}

/**
 * The time as ks-installer writes it (`date +%Y-%m-%dT%H:%M:%S%Z`: a zone abbreviation, not RFC 3339,
 * kubesphere.md §1.3), in UTC.
 */
function installerTime(): string {
  return `${new Date().toISOString().slice(0, 19)}UTC`
}

/**
 * ks-installer's ks-multicluster role: the tower proxy's Service (a LoadBalancer, its address pending without a
 * load balancer) and Deployment. Nothing runs the Deployment's pod; ksctl's tower proxy serves in its place where
 * one is needed.
 */
async function installTowerProxy(client: ClusterClient): Promise<void> {
  if ((await client.findService(KUBESPHERE_NAMESPACE, TOWER_SERVICE_NAME)) !== undefined) return
  const core = client.config.makeApiClient(CoreV1Api)
  const apps = client.config.makeApiClient(AppsV1Api)
  const labels = {app: 'tower', 'app.kubernetes.io/name': 'tower'}
  await core.createNamespacedService({
    namespace: KUBESPHERE_NAMESPACE,
    body: {
      metadata: {name: TOWER_SERVICE_NAME, namespace: KUBESPHERE_NAMESPACE, labels: {app: 'tower'}},
      spec: {
        type: 'LoadBalancer',
        selector: {app: 'tower'},
        ports: [{port: 8080, protocol: 'TCP', targetPort: 8080}],
      },
    },
  })
  await apps.createNamespacedDeployment({
    namespace: KUBESPHERE_NAMESPACE,
    body: {
      metadata: {name: TOWER_SERVICE_NAME, namespace: KUBESPHERE_NAMESPACE, labels},
      spec: {
        selector: {matchLabels: labels},
        template: {
          metadata: {labels},
          spec: {containers: [{name: 'tower', image: DEFAULT_AGENT_IMAGES['3.x'], command: ['/proxy']}]},
        },
      },
    },
  })
}
