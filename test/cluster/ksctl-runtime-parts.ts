import {setTimeout as delay} from 'node:timers/promises'

import {KubeConfig, PatchStrategy, setHeaderOptions, type V1Deployment} from '@kubernetes/client-node'

import type {UnpackedImage} from '../../image/unpack.js'
import {isNotFound} from '../../src/k8s/api-errors.js'
import {ClusterResource} from '../../src/k8s/resources.js'
import {KSCTL_AGENT_NAME} from '../../src/kubesphere/agent-manifest.js'
import type {KubeSphereCluster} from '../../src/kubesphere/cluster-object.js'
import {ClusterClients} from '../../src/k8s/clients.js'
import {StandInLoop} from '../../src/kubesphere-standin/loop.js'
import {runPod, type ObjectData, type ObjectSource, type RunningPod} from '../helpers/pod-runner.js'
import {routeServicePort} from '../helpers/service-route.js'
import {adminApis} from '../testbed/seed.js'
import {AGENT_IMPERSONATOR_ROLE, KUBESPHERE_IDENTITY_BINDING} from '../../src/tower/shared/identity.js'
import {testBed} from './hooks.js'

const NAMESPACE = 'kubesphere-system'

/**
 * Points the host's tower Service at the pods of one proxy, as `ksctl proxy install` (ksctl's) and its undo
 * (Tower's) do (OWNERS.md): name and ports kept, the selector replaced.
 */
export async function pointTowerServiceAt(runtime: 'ksctl' | 'tower'): Promise<void> {
  const host = adminApis(testBed().kubeconfigPath, 'host')
  const selector = runtime === 'ksctl' ? {'app.kubernetes.io/name': 'ksctl-tower-proxy'} : {app: 'tower'}
  await host.core.patchNamespacedService(
    {
      name: 'tower',
      namespace: NAMESPACE,
      body: [{op: 'replace', path: '/spec/selector', value: selector}],
    },
    setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
  )
}
/** The metrics port ksctl's manifest renders; pods share the host's network here, so the test moves it. */
const RENDERED_METRICS_PORT = 9090

/**
 * The member's kubelet for ksctl's agent: waits until Deployment ksctl-tower-agent is on the member (as applied by
 * `member join` or a migration), then runs its pod from the unpacked image, as the pod runner plays kubelet and
 * runtime: its ServiceAccount's token from TokenRequest, its Secret and ConfigMap volumes read from the member and
 * kept in sync with it (a token the member's Secret gets reaches the agent's --token-file, every `volumeSyncMs`),
 * the member's API server as the kubernetes Service. The one change to the Deployment: the metrics port, moved to
 * a free one, because the pod runner shares the host's network, where 9090 may be taken (as the image's own test
 * renders its ports free). Resolves `undefined` if `abandon` settles first (the command failed before applying it).
 */
export async function runAppliedAgent(options: {
  image: UnpackedImage
  metricsPort: number
  abandon?: Promise<unknown>
  log?: (line: string) => void
  /** How often the kubelet's sync reads the member's Secret and ConfigMap again (the pod runner's default). */
  volumeSyncMs?: number
}): Promise<RunningPod | undefined> {
  const member = adminApis(testBed().kubeconfigPath, 'member')
  let abandoned = false
  void options.abandon?.finally(() => (abandoned = true))
  let deployment: V1Deployment | undefined
  while (deployment === undefined) {
    if (abandoned) return undefined
    deployment = await member.apps
      .readNamespacedDeployment({name: KSCTL_AGENT_NAME, namespace: NAMESPACE})
      .catch(() => undefined)
    if (deployment === undefined) await delay(100)
  }
  const serviceAccount = deployment.spec?.template.spec?.serviceAccountName ?? 'default'
  const token = await member.core.createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace: NAMESPACE,
    body: {spec: {audiences: [], expirationSeconds: 3600}},
  })
  return runPod({
    deployment: onMetricsPort(deployment, options.metricsPort),
    image: options.image,
    serviceAccount: {token: token.status?.token ?? '', caCert: testBed().caCertPem, namespace: NAMESPACE},
    apiServer: {host: '127.0.0.1', port: testBed().clusters.member.port},
    objectSource: clusterObjects('member'),
    ...(options.volumeSyncMs === undefined ? {} : {volumeSyncMs: options.volumeSyncMs}),
    ...(options.log === undefined ? {} : {log: options.log}),
  })
}

/**
 * What the kubelet of one test-bed cluster reads for its pods' Secrets and ConfigMaps: the objects as they are
 * now, through the test bed's admin clients (a missing one is `undefined`; any other failure is thrown).
 */
export function clusterObjects(context: string): ObjectSource {
  const apis = adminApis(testBed().kubeconfigPath, context)
  const missing = (error: unknown) => {
    if (isNotFound(error)) return undefined
    throw error
  }
  return {
    secret: (namespace, name) =>
      apis.core
        .readNamespacedSecret({name, namespace})
        .then(
          (secret): ObjectData =>
            Object.fromEntries(
              Object.entries(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64')]),
            ),
          missing,
        ),
    configMap: (namespace, name) =>
      apis.core.readNamespacedConfigMap({name, namespace}).then(
        (configMap): ObjectData => ({
          ...configMap.data,
          ...Object.fromEntries(
            Object.entries(configMap.binaryData ?? {}).map(([key, value]) => [
              key,
              Buffer.from(value, 'base64'),
            ]),
          ),
        }),
        missing,
      ),
  }
}

function onMetricsPort(deployment: V1Deployment, port: number): V1Deployment {
  const moved = structuredClone(deployment)
  for (const container of moved.spec?.template.spec?.containers ?? []) {
    container.args = container.args?.map((argument) =>
      argument.startsWith('--metrics-address=')
        ? argument.replace(`:${String(RENDERED_METRICS_PORT)}`, `:${String(port)}`)
        : argument,
    )
    for (const containerPort of container.ports ?? [])
      if (containerPort.containerPort === RENDERED_METRICS_PORT) containerPort.containerPort = port
  }
  return moved
}

/**
 * kube-proxy's part for Service mc-NAME of one Cluster: once the proxy has written the Cluster's kubernetes endpoint
 * (the Service's ClusterIP, port 6443) and its port, a DNAT rule sends that address to the proxy's port on this
 * machine, so that the issued kubeconfig works at the server it names. Returns the undo.
 */
export async function routeClusterService(
  name: string,
  options: {timeoutMs?: number; port?: (port: number) => boolean} = {},
): Promise<() => Promise<void>> {
  const timeoutMs = options.timeoutMs ?? 60_000
  const host = ClusterClients.load({kubeconfig: testBed().kubeconfigPath}).forContext('host')
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const cluster = await host.findCustomObject<KubeSphereCluster>(ClusterResource, name)
    const endpoint = cluster?.spec?.connection?.kubernetesAPIEndpoint
    const port = (cluster?.spec?.connection as {kubernetesAPIServerPort?: number} | undefined)
      ?.kubernetesAPIServerPort
    // The proxy writes the endpoint once Service mc-NAME has a ClusterIP.
    if (endpoint !== undefined && endpoint !== '' && port !== undefined && (options.port?.(port) ?? true)) {
      const server = new URL(endpoint)
      return routeServicePort(server.hostname, Number(server.port), port)
    }
    if (Date.now() > deadline)
      throw new Error(`cluster ${name} got no kubernetes endpoint in ${String(timeoutMs)} ms`)
    await delay(100)
  }
}

/** ksctl's cluster-scoped agent objects on the member, which resetting the cluster leaves. */
export async function removeKsctlAgentClusterObjects(): Promise<void> {
  const member = adminApis(testBed().kubeconfigPath, 'member')
  await member.rbac.deleteClusterRole({name: AGENT_IMPERSONATOR_ROLE}).catch(() => undefined)
  for (const name of [AGENT_IMPERSONATOR_ROLE, KUBESPHERE_IDENTITY_BINDING])
    await member.rbac.deleteClusterRoleBinding({name}).catch(() => undefined)
}

/**
 * The member's own kubeconfig (the test bed's admin, context member): what the stand-in for Tower's tunnel puts
 * into a Cluster. Tower cannot run here; a kubeconfig that reaches the member directly plays its tunnel, which is
 * all the host (and a migration) asks of it.
 */
export function towerTunnelKubeconfig(server?: string): string {
  const all = new KubeConfig()
  all.loadFromFile(testBed().kubeconfigPath)
  const context = all.getContextObject('member')
  const cluster = all.getCluster(context?.cluster ?? '')
  const user = all.getUser(context?.user ?? '')
  if (context === null || cluster === null || user === null)
    throw new Error('the test bed has no member context')
  const only = new KubeConfig()
  only.loadFromOptions({
    clusters: [server === undefined ? cluster : {...cluster, server}],
    users: [user],
    contexts: [context],
    currentContext: context.name,
  })
  return only.exportConfig()
}

/**
 * A stand-in for Tower's proxy once it is the host's proxy again (the tower Service selects app=tower): when the
 * member runs Deployment cluster-agent with a Cluster's --name and --token (Tower's agent would then connect), it
 * issues that Cluster its tunnel (the member's own kubeconfig, see towerTunnelKubeconfig).
 */
export function startTowerTunnelStandIn(): StandInLoop {
  const clients = ClusterClients.load({kubeconfig: testBed().kubeconfigPath})
  const host = clients.forContext('host')
  const member = clients.forContext('member')
  const tunnel = Buffer.from(towerTunnelKubeconfig()).toString('base64')
  const pass = async () => {
    const service = await host.findService(NAMESPACE, 'tower')
    if (service?.spec?.selector?.app !== 'tower') return
    const agent = await member.findDeployment(NAMESPACE, 'cluster-agent')
    const command = agent?.spec?.template.spec?.containers[0]?.command ?? []
    for (const cluster of await host.listCustomObjects<KubeSphereCluster>(ClusterResource)) {
      const name = cluster.metadata?.name ?? ''
      const token = cluster.spec?.connection?.token ?? ''
      if (token === '' || !command.includes(`--name=${name}`) || !command.includes(`--token=${token}`))
        continue
      if (cluster.spec?.connection?.kubeconfig === tunnel) continue
      await host.patchCustomObject(ClusterResource, name, {
        strategy: 'merge',
        body: {spec: {connection: {kubeconfig: tunnel}}},
      })
    }
  }
  return new StandInLoop([pass], 100).start()
}
