import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import type {V1Affinity, V1Deployment, V1Service, V1Toleration} from '@kubernetes/client-node'

import type {ManifestObject} from '../k8s/manifest-objects.js'
import {JOIN_TOKENS_SECRET} from '../join-token/store.js'
import {AGENT_TOKENS_SECRET} from '../kubesphere/agent-token-secret.js'
import {KUBESPHERE_CONFIG_NAME} from '../kubesphere/constants.js'
import {packageRoot} from '../package-root.js'
import {PROXY_CA_SECRET} from '../tower/proxy/kubernetes/proxy-ca.js'
import {SERVING_SECRET} from '../tower/proxy/kubernetes/serving-secret.js'
import {kubespherePortsPolicy} from '../tower/proxy/kubesphere-ports-policy.js'
import {
  EVENTS_NAMESPACE,
  EVENTS_ROLE_NAME,
  FRONT_END_PORT,
  INSTALL_LABELS,
  METRICS_PORT,
  NAMESPACE,
  PROXY_NAME,
  PROXY_POD_LABELS,
} from './names.js'

/** Where Tower's pods were placed, copied so that ksctl's proxy runs where Tower ran. */
export interface PodPlacement {
  nodeSelector?: Record<string, string>
  affinity?: V1Affinity
  tolerations?: V1Toleration[]
}

/** The port agents reach the proxy on: what the tower Service's port leads to. */
export interface AgentPort {
  /** The container port (the Service's numeric targetPort, or 8080 behind a named one). */
  number: number
  /** The container port's name: the Service's named targetPort, else `agents`. */
  name: string
}

export interface ProxyRenderInput {
  image: string
  agentPort: AgentPort
  /** The names and addresses agents and clients use for the proxy, for its serving certificates. */
  serverNames: string[]
  placement: PodPlacement
}

/** The image ksctl's proxy runs unless told another: `ksctl:<version>`, the tag `npm run image` builds. */
export function defaultImage(): string {
  return `ksctl:${ksctlVersion()}`
}

export function ksctlVersion(): string {
  const manifest = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as {version: string}
  return manifest.version
}

const rbac = 'rbac.authorization.k8s.io'

/**
 * The objects of ksctl's proxy on a host, in the order they are applied: its ServiceAccount, the least RBAC that
 * Kubernetes mode needs (each rule says which call of src/tower/proxy/kubernetes needs it), and its Deployment. The
 * CA and serving-key Secrets are made apart (they hold keys), and the tower Service is changed, not rendered.
 */
export function renderProxyObjects(input: ProxyRenderInput): ManifestObject[] {
  const subject = {kind: 'ServiceAccount', name: PROXY_NAME, namespace: NAMESPACE}
  const labels = {...INSTALL_LABELS}
  return [
    {apiVersion: 'v1', kind: 'ServiceAccount', metadata: {name: PROXY_NAME, namespace: NAMESPACE, labels}},
    {
      apiVersion: `${rbac}/v1`,
      kind: 'ClusterRole',
      metadata: {name: PROXY_NAME, labels},
      rules: [
        // kubernetes-registry.ts: the Clusters are listed on every pass, read again on a conflict and when an agent
        // comes or goes, and patched (token, ports, endpoints, conditions, the issued kubeconfig).
        {apiGroups: ['cluster.kubesphere.io'], resources: ['clusters'], verbs: ['get', 'list', 'patch']},
      ],
    },
    {
      apiVersion: `${rbac}/v1`,
      kind: 'ClusterRoleBinding',
      metadata: {name: PROXY_NAME, labels},
      roleRef: {apiGroup: rbac, kind: 'ClusterRole', name: PROXY_NAME},
      subjects: [subject],
    },
    {
      apiVersion: `${rbac}/v1`,
      kind: 'Role',
      metadata: {name: PROXY_NAME, namespace: NAMESPACE, labels},
      rules: [
        // Services mc-NAME: listed by label on every pass, server-side applied (a patch, and a create for a new
        // one), deleted with their Cluster. RBAC cannot limit list or create by name.
        {apiGroups: [''], resources: ['services'], verbs: ['list', 'create', 'patch', 'delete']},
        // proxy-ca.ts and serving-secret.ts: both read at start and the CA on every pass (a rotation); the serving
        // certificate renewed in place. The install makes both, so the proxy never needs to create a Secret.
        {
          apiGroups: [''],
          resources: ['secrets'],
          resourceNames: [PROXY_CA_SECRET, SERVING_SECRET],
          verbs: ['get'],
        },
        {apiGroups: [''], resources: ['secrets'], resourceNames: [SERVING_SECRET], verbs: ['update']},
        // join-exchange.ts: the join tokens' records are read, and updated (resourceVersion-guarded) when one is
        // used; `ksctl host invite` creates the Secret, so the proxy needs no create. On 3.x the exchange gives the
        // member the host's jwtSecret, read from kubesphere-config.
        {
          apiGroups: [''],
          resources: ['secrets'],
          resourceNames: [JOIN_TOKENS_SECRET],
          verbs: ['get', 'update'],
        },
        {apiGroups: [''], resources: ['configmaps'], resourceNames: [KUBESPHERE_CONFIG_NAME], verbs: ['get']},
        // agent-token-rotation.ts: agent token rotations, read on every pass and updated (resourceVersion-guarded)
        // at each step; `ksctl agent-token rotate` creates the Secret. Cluster writes are the ClusterRole's.
        {
          apiGroups: [''],
          resources: ['secrets'],
          resourceNames: [AGENT_TOKENS_SECRET],
          verbs: ['get', 'update'],
        },
      ],
    },
    {
      apiVersion: `${rbac}/v1`,
      kind: 'RoleBinding',
      metadata: {name: PROXY_NAME, namespace: NAMESPACE, labels},
      roleRef: {apiGroup: rbac, kind: 'Role', name: PROXY_NAME},
      subjects: [subject],
    },
    {
      apiVersion: `${rbac}/v1`,
      kind: 'Role',
      metadata: {name: EVENTS_ROLE_NAME, namespace: EVENTS_NAMESPACE, labels},
      // cluster-events.ts: a Warning Event per failing Cluster, its count patched while the failure repeats.
      rules: [{apiGroups: [''], resources: ['events'], verbs: ['create', 'patch']}],
    },
    {
      apiVersion: `${rbac}/v1`,
      kind: 'RoleBinding',
      metadata: {name: EVENTS_ROLE_NAME, namespace: EVENTS_NAMESPACE, labels},
      roleRef: {apiGroup: rbac, kind: 'Role', name: EVENTS_ROLE_NAME},
      subjects: [subject],
    },
    portsPolicy(input, labels),
    proxyDeployment(input),
  ]
}

/**
 * The per-cluster kubesphere ports are plain HTTP (their one caller, ks-apiserver, can do no better): only
 * ks-apiserver's pods may reach them, every other port of the proxy stays open (docs/deployment.md, "Authorization
 * and identity").
 */
function portsPolicy(input: ProxyRenderInput, labels: Record<string, string>): ManifestObject {
  const policy = kubespherePortsPolicy({otherPorts: [input.agentPort.number, FRONT_END_PORT, METRICS_PORT]})
  return {...policy, metadata: {...policy.metadata, labels}}
}

function proxyDeployment(input: ProxyRenderInput): ManifestObject {
  const {agentPort} = input
  const deployment: V1Deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {name: PROXY_NAME, namespace: NAMESPACE, labels: {...INSTALL_LABELS}},
    spec: {
      replicas: 1,
      selector: {matchLabels: {...PROXY_POD_LABELS}},
      template: {
        metadata: {labels: {...PROXY_POD_LABELS}},
        spec: {
          serviceAccountName: PROXY_NAME,
          // The proxy drains open streams within --grace-period (30 s) on SIGTERM.
          terminationGracePeriodSeconds: 40,
          securityContext: {
            runAsNonRoot: true,
            // The image's own user (nonroot), numeric so that runAsNonRoot can be checked.
            runAsUser: 65532,
            runAsGroup: 65532,
            seccompProfile: {type: 'RuntimeDefault'},
          },
          ...placement(input.placement),
          containers: [
            {
              name: 'proxy',
              image: input.image,
              args: [
                ...['tower', 'proxy', '--namespace', NAMESPACE],
                ...['--listen', `0.0.0.0:${String(agentPort.number)}`],
                // Each cluster's own ports (Service mc-NAME's targets) are opened on this host too.
                ...['--front-end', `0.0.0.0:${String(FRONT_END_PORT)}`],
                ...['--metrics-address', `0.0.0.0:${String(METRICS_PORT)}`],
                ...input.serverNames.flatMap((name) => ['--server-name', name]),
                ...['--grace-period', '30s', '--log-format', 'json'],
              ],
              ports: [
                {name: agentPort.name, containerPort: agentPort.number, protocol: 'TCP'},
                {name: 'front-end', containerPort: FRONT_END_PORT, protocol: 'TCP'},
                {name: 'metrics', containerPort: METRICS_PORT, protocol: 'TCP'},
              ],
              readinessProbe: {
                httpGet: {path: '/readyz', port: 'metrics'},
                periodSeconds: 5,
                failureThreshold: 3,
              },
              livenessProbe: {
                httpGet: {path: '/healthz', port: 'metrics'},
                initialDelaySeconds: 10,
                periodSeconds: 10,
                failureThreshold: 3,
              },
              resources: {
                requests: {cpu: '100m', memory: '128Mi'},
                limits: {cpu: '1', memory: '512Mi'},
              },
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: {drop: ['ALL']},
              },
            },
          ],
        },
      },
    },
  }
  return deployment as ManifestObject
}

function placement(from: PodPlacement): PodPlacement {
  return {
    ...(from.nodeSelector !== undefined && Object.keys(from.nodeSelector).length > 0
      ? {nodeSelector: from.nodeSelector}
      : {}),
    ...(from.affinity !== undefined && Object.keys(from.affinity).length > 0
      ? {affinity: from.affinity}
      : {}),
    ...(from.tolerations !== undefined && from.tolerations.length > 0 ? {tolerations: from.tolerations} : {}),
  }
}

/** Tower's pod placement, from its Deployment's pod template. */
export function towerPlacement(tower: V1Deployment): PodPlacement {
  const spec = tower.spec?.template.spec
  return {
    ...(spec?.nodeSelector === undefined ? {} : {nodeSelector: spec.nodeSelector}),
    ...(spec?.affinity === undefined ? {} : {affinity: spec.affinity}),
    ...(spec?.tolerations === undefined ? {} : {tolerations: spec.tolerations}),
  }
}

/** Where the tower Service's first port leads: a number, or a name that ksctl's container then carries. */
export function agentPortOf(service: V1Service): AgentPort {
  const target = service.spec?.ports?.[0]?.targetPort ?? service.spec?.ports?.[0]?.port ?? 8080
  if (typeof target === 'number') return {number: target, name: 'agents'}
  return /^\d+$/.test(target) ? {number: Number(target), name: 'agents'} : {number: 8080, name: target}
}

/**
 * The names agents and clients may use for the proxy: the tower Service's ClusterIP and DNS names, the host of the
 * published address (proxyPublishAddress or the LoadBalancer's), and the names given; each once, in that order.
 */
export function proxyServerNames(
  service: V1Service,
  publishedAddress: string | undefined,
  given: string[],
  clusterDomain = 'cluster.local',
): string[] {
  const name = service.metadata?.name ?? 'tower'
  const clusterIp = service.spec?.clusterIP
  const published = publishedAddress === undefined ? undefined : new URL(publishedAddress).hostname
  return [
    ...new Set([
      ...(clusterIp === undefined || clusterIp === '' || clusterIp === 'None' ? [] : [clusterIp]),
      name,
      `${name}.${NAMESPACE}`,
      `${name}.${NAMESPACE}.svc`,
      `${name}.${NAMESPACE}.svc.${clusterDomain}`,
      ...(published === undefined ? [] : [published.replace(/^\[|\]$/g, '')]),
      ...given,
    ]),
  ]
}

/** The tower Service as the install leaves it: name, type, ports and address kept, its pods ksctl's. */
export function switchedTowerService<T extends V1Service>(service: T): T {
  const switched = structuredClone(service)
  switched.spec = {...switched.spec, selector: {...PROXY_POD_LABELS}}
  return switched
}

/** Tower's Deployment as the install leaves it: no replicas, nothing else changed. */
export function stoppedTowerDeployment<T extends V1Deployment>(deployment: T): T {
  const stopped = structuredClone(deployment)
  stopped.spec = {...stopped.spec, replicas: 0} as T['spec']
  return stopped
}
