import {isDeepStrictEqual} from 'node:util'

import type {V1Service} from '@kubernetes/client-node'

import type {ClusterClient} from '../../../k8s/cluster-client.js'
import {retryOnConflict} from '../../../k8s/conflict-retry.js'
import {ManifestObjects, type ManifestObject} from '../../../k8s/manifest-objects.js'
import {ClusterResource} from '../../../k8s/resources.js'
import {
  AGENT_TOKEN_SECRET_ANNOTATION,
  AGENT_TOKENS_SECRET,
  agentTokenState,
  readAgentTokenRecords,
  tokenExpiresAt,
  type AgentTokenRecord,
  type AgentTokenState,
} from '../../../kubesphere/agent-token-secret.js'
import type {KubeSphereCluster} from '../../../kubesphere/cluster-object.js'
import {KUBESPHERE_NAMESPACE} from '../../../kubesphere/constants.js'
import type {Logger} from '../../../log.js'
import type {CertificateAndKey} from '../../../pki/certificates.js'
import {redactor} from '../../../redact.js'
import {KUBESPHERE_IDENTITY} from '../../shared/identity.js'
import {currentCa, type CurrentCa} from '../current-ca.js'
import {AgentTokenRotations} from './agent-token-rotation.js'
import {retryTransient} from './api-retry.js'
import {ClusterEvents} from './cluster-events.js'
import {issueKubeconfig} from '../issue-kubeconfig.js'
import {kubeconfigRenewalReason, readIssuedKubeconfig, type IssuedKubeconfig} from './kubeconfig-renewal.js'
import {
  assignClusters,
  isProxyCluster,
  KUBERNETES_PORT_RANGE,
  withCondition,
  type ClusterAssignment,
  type PortRange,
} from './cluster-reconcile.js'
import type {
  AgentPresence,
  ClusterProblem,
  ClusterRegistry,
  ClusterTunnel,
  RegisteredCluster,
} from '../registry.js'

export interface KubernetesRegistryOptions {
  /**
   * The proxy's CA: signs the client certificates of the kubeconfigs written into Clusters. Refreshed on every
   * pass when it is a {@link CurrentCa} that can reload, so that a rotation re-issues the kubeconfigs.
   */
  ca: CertificateAndKey | CurrentCa
  /** Validity of the issued kubeconfigs; each is issued again at two thirds of it. */
  kubeconfigValidityDays: number
  resyncMs: number
  /** Where the mc-NAME Services live (Tower: kubesphere-system). */
  namespace?: string
  /** The per-cluster kubernetes ports to choose from (Tower's 6000–6999 by default). */
  portRange?: PortRange
  /** The cluster's DNS domain, for the names of Service mc-NAME (cluster.local by default). */
  clusterDomain?: string
  log: Logger
  now?: () => Date
  /** How a retry waits (tests make it instant). */
  sleep?: (ms: number) => Promise<void>
}

const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'
const MANAGED_BY = 'ksctl-tower'
const CLUSTER_LABEL = 'ksctl.io/cluster'
/**
 * ksctl's proxy pods (Deployment ksctl-tower-proxy, as `ksctl proxy install` makes it), which Service mc-NAME
 * forwards to. Tower's own Services select Tower's pods (`app: tower`, kubesphere.md §6); applying this selector takes
 * them over (a Service's selector is replaced whole by a server-side apply: it is an atomic map).
 */
export const PROXY_POD_SELECTOR: Readonly<Record<string, string>> = {
  'app.kubernetes.io/name': 'ksctl-tower-proxy',
}

/**
 * Kubernetes mode: the clusters are KubeSphere `Cluster` objects, reconciled the way Tower does. Each
 * proxy Cluster gets a token (when empty), collision-free ports, Service `kubesphere-system/mc-NAME`,
 * its endpoints and `Initialized`; `AgentAvailable` follows the agents' sessions, and the first agent
 * gets the Cluster an issued kubeconfig. Removed Clusters lose their Service.
 *
 * Each Cluster is reconciled on its own: one whose write fails, or that finds no free port, gets a Warning Event
 * (see {@link ClusterEvents}) and is tried again on the next pass, while the others are served. A Cluster whose
 * write failed is still served with the token and ports it holds, as agents know them.
 */
export class KubernetesClusterRegistry implements ClusterRegistry {
  private clusters = new Map<string, ClusterAssignment>()
  /** The proxy Clusters of the last pass, for the events about them. */
  private objects = new Map<string, KubeSphereCluster>()
  private readonly listeners: (() => void)[] = []
  private readonly manifests: ManifestObjects
  private readonly events: ClusterEvents
  private timer: NodeJS.Timeout | undefined
  private closed = false
  private pass: Promise<void> = Promise.resolve()
  /** Status writes per cluster, one after the other, so a disconnect never overtakes its connect. */
  private readonly writes = new Map<string, Promise<void>>()
  private readonly ca: CurrentCa
  /** What each Cluster's issued kubeconfig says, read once per kubeconfig rather than on every pass. */
  private readonly issued = new Map<string, {base64: string; kubeconfig: IssuedKubeconfig | undefined}>()
  /** Live agent sessions per cluster on this replica. */
  private readonly sessions = new Map<string, number>()
  /** The agent sessions of each cluster on this replica, and which token those still serving are on. */
  private readonly presence = new Map<string, AgentPresence>()
  /** The rotation state of each proxy Cluster that has one (its Secret, referenced from the Cluster). */
  private tokenStates = new Map<string, AgentTokenState>()
  private readonly rotations: AgentTokenRotations

  constructor(
    private readonly client: ClusterClient,
    private readonly options: KubernetesRegistryOptions,
  ) {
    this.ca = currentCa(options.ca)
    this.manifests = new ManifestObjects(client)
    this.events = new ClusterEvents(client, options.log, () => this.now())
    this.rotations = new AgentTokenRotations({
      client,
      namespace: this.namespace,
      events: this.events,
      log: options.log,
      now: () => this.now(),
    })
  }

  attachTunnel(tunnel: ClusterTunnel): void {
    this.rotations.attachTunnel(tunnel)
  }

  /**
   * Reconciles once, then every `resyncMs`. The first pass waits out what a controller waits out (HTTP 429, as
   * right after the Cluster CRD is created, 5xx, an unreachable API server), with backoff; other failures
   * (forbidden, no Cluster CRD) are thrown.
   */
  async start(): Promise<void> {
    await retryTransient(() => this.reconcile(), {
      log: this.options.log,
      what: 'list the Clusters',
      ...(this.options.sleep !== undefined && {sleep: this.options.sleep}),
    })
    const again = () => {
      if (this.closed) return
      this.timer = setTimeout(() => {
        this.pass = this.reconcile().catch((error: unknown) => {
          this.options.log.warn(
            `reconciling Clusters failed: ${error instanceof Error ? error.message : String(error)}`,
          )
        })
        void this.pass.then(again)
      }, this.options.resyncMs)
    }
    again()
  }

  list(): RegisteredCluster[] {
    return [...this.clusters.values()].map((cluster) => this.registered(cluster))
  }

  get(name: string): RegisteredCluster | undefined {
    const cluster = this.clusters.get(name)
    return cluster === undefined ? undefined : this.registered(cluster)
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener)
  }

  agentConnected(name: string, presence: AgentPresence): void {
    this.sessions.set(name, presence.sessions)
    this.presence.set(name, presence)
    this.queue(name, () => retryOnConflict(() => this.writeAgentPresence(name, presence.sessions)))
  }

  agentDisconnected(name: string, presence: AgentPresence): void {
    this.sessions.set(name, presence.sessions)
    this.presence.set(name, presence)
    this.queue(name, () => retryOnConflict(() => this.writeAgentPresence(name, presence.sessions)))
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.timer)
    this.timer = undefined
    await this.pass
    await Promise.all(this.writes.values())
  }

  /** A front end could not serve a Cluster (its port is taken): an Event on the Cluster says so. */
  problem(name: string, problem: ClusterProblem): void {
    const cluster = this.objects.get(name)
    if (cluster !== undefined) void this.events.warn(cluster, problem.reason, problem.message)
  }

  /**
   * One reconcile pass over all Clusters; exposed so that tests need not wait for the timer. Only a failed list
   * fails the pass; each Cluster's own failure is reported on it.
   */
  async reconcile(): Promise<void> {
    await this.refreshCa()
    const [clusters, services, {records: tokenRecords}] = await Promise.all([
      this.client.listCustomObjects<KubeSphereCluster>(ClusterResource),
      this.client.listServices(this.namespace, `${MANAGED_BY_LABEL}=${MANAGED_BY}`),
      readAgentTokenRecords(this.client, this.namespace),
    ])
    const served = JSON.stringify(this.list())
    const proxyClusters = new Map(
      clusters.filter(isProxyCluster).map((cluster) => [cluster.metadata?.name ?? '', cluster]),
    )
    this.objects = proxyClusters
    for (const name of this.issued.keys()) if (!proxyClusters.has(name)) this.issued.delete(name)
    for (const name of this.sessions.keys()) if (!proxyClusters.has(name)) this.sessions.delete(name)
    for (const name of this.presence.keys()) if (!proxyClusters.has(name)) this.presence.delete(name)
    this.tokenStates = referencedTokenStates(proxyClusters, tokenRecords)
    const {assignments, unassigned} = assignClusters(clusters, this.portRange)
    const next = new Map<string, ClusterAssignment>()
    for (const assignment of assignments) {
      const cluster = proxyClusters.get(assignment.name)
      if (cluster === undefined) continue
      const service = services.find(
        (candidate) => candidate.metadata?.labels?.[CLUSTER_LABEL] === assignment.name,
      )
      try {
        next.set(assignment.name, await this.reconcileCluster(cluster, assignment, service))
        this.events.resolved(assignment.name)
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error)
        this.options.log.warn('cannot reconcile a Cluster; trying again on the next pass', {
          cluster: assignment.name,
          reason,
        })
        await this.events.warn(
          cluster,
          'ReconcileFailed',
          `ksctl tower proxy cannot initialize the Cluster: ${reason}`,
        )
        // Agents hold what the Cluster holds: serve that, or what was served before.
        const previous = this.clusters.get(assignment.name)
        const served = holds(cluster, assignment)
          ? {...assignment, ...(previous?.serverNames !== undefined && {serverNames: previous.serverNames})}
          : previous
        if (served !== undefined) next.set(assignment.name, served)
      }
    }
    const {first, last} = this.portRange
    for (const name of unassigned) {
      this.options.log.warn('no free port for a Cluster; trying again on the next pass', {cluster: name})
      const cluster = proxyClusters.get(name)
      if (cluster === undefined) continue
      await this.events.warn(
        cluster,
        'NoFreePort',
        `ksctl tower proxy has no free port in ${first}-${last} for the Cluster: remove proxy Clusters no longer used, or widen --cluster-ports`,
      )
    }
    await this.removeOrphanServices(services, new Set(proxyClusters.keys()))
    this.clusters = next
    await this.rotateTokens(proxyClusters)
    if (JSON.stringify(this.list()) !== served) for (const listener of this.listeners) listener()
  }

  /**
   * One step of each rotation due or under way. A promotion is taken at once (the Cluster now holds the next token),
   * so that the old token is refused from this pass on rather than the next.
   */
  private async rotateTokens(proxyClusters: Map<string, KubeSphereCluster>): Promise<void> {
    for (const [name, state] of this.tokenStates) {
      const cluster = proxyClusters.get(name)
      const assignment = this.clusters.get(name)
      if (cluster === undefined || assignment === undefined) continue
      try {
        const step = await this.rotations.step(cluster, assignment.token, state, this.presence.get(name))
        if (step === 'promoted' && state.next !== undefined) {
          this.clusters.set(name, {...assignment, token: state.next})
          this.tokenStates.set(name, {...state, next: undefined, issuedAt: this.now()})
        }
      } catch (error) {
        this.options.log.warn(
          'cannot take the agent token rotation of a cluster further; trying again on the next pass',
          {
            cluster: name,
            reason: error instanceof Error ? error.message : String(error),
          },
        )
      }
    }
  }

  /** What the proxy accepts of a cluster: its assignment, and its rotation's next token and lifetime. */
  private registered(assignment: ClusterAssignment): RegisteredCluster {
    const state = this.tokenStates.get(assignment.name)
    const expiresAt = state === undefined ? undefined : tokenExpiresAt(state)
    return {
      ...toRegistered(assignment),
      ...(state?.next !== undefined && state.next !== assignment.token && {nextToken: state.next}),
      ...(expiresAt !== undefined && {tokenExpiresAt: expiresAt.getTime()}),
    }
  }

  /**
   * Service mc-NAME, the Cluster's connection and Initialized; returns what the Cluster now holds. A Cluster that
   * changed since it was listed is read again and the write retried (on conflict); a token someone else set
   * meanwhile is kept.
   */
  private async reconcileCluster(
    listed: KubeSphereCluster,
    assignment: ClusterAssignment,
    existing: V1Service | undefined,
  ): Promise<ClusterAssignment> {
    const wanted = serviceFor(assignment, this.namespace)
    const service =
      existing !== undefined && sameRouting(existing, wanted)
        ? existing
        : await this.manifests.apply<V1Service>(wanted)
    const clusterIp = service.spec?.clusterIP
    const hasClusterIp = clusterIp !== undefined && clusterIp !== 'None'
    const serverNames = hasClusterIp ? [clusterIp, ...this.serviceDnsNames(assignment.name)] : undefined
    return retryOnConflict(async (attempt) => {
      const cluster =
        attempt === 1
          ? listed
          : await this.client.findCustomObject<KubeSphereCluster>(ClusterResource, assignment.name)
      if (cluster === undefined || !isProxyCluster(cluster)) return assignment
      const connection = (cluster.spec?.connection ?? {}) as Record<string, unknown>
      const token =
        typeof connection.token === 'string' && connection.token !== '' ? connection.token : assignment.token
      redactor.register(token)
      const desired = {
        token,
        kubernetesAPIServerPort: assignment.kubernetesPort,
        kubesphereAPIServerPort: assignment.kubespherePort,
        ...(hasClusterIp && {
          kubernetesAPIEndpoint: `https://${clusterIp}:6443`,
          // Plain HTTP, as Tower writes it: ks-apiserver calls it with no client certificate (kubesphere-ports-policy.ts).
          kubesphereAPIEndpoint: `http://${clusterIp}:80`,
        }),
      }
      // Only while this replica holds an agent of the Cluster: KubeSphere's Cluster webhook tries the new kubeconfig
      // against the member before it admits the write, which fails without an agent (kubesphere.md §4.6).
      const renewed =
        hasClusterIp && (this.sessions.get(assignment.name) ?? 0) > 0
          ? await this.renewedKubeconfig(assignment.name, connection.kubeconfig, `https://${clusterIp}:6443`)
          : undefined
      const conditions = withCondition(
        cluster.status?.conditions ?? [],
        {type: 'Initialized', status: 'True', reason: 'Initialized', message: 'Cluster has been initialized'},
        this.now(),
      )
      const held = {...assignment, token, ...(serverNames !== undefined && {serverNames})}
      const unchanged =
        Object.entries(desired).every(([key, value]) => connection[key] === value) &&
        conditions === cluster.status?.conditions &&
        renewed === undefined
      if (unchanged) return held
      await this.client.patchCustomObject(ClusterResource, assignment.name, {
        strategy: 'merge',
        body: {
          metadata: {resourceVersion: cluster.metadata?.resourceVersion},
          spec: {connection: {...desired, ...(renewed !== undefined && {kubeconfig: renewed.kubeconfig})}},
          status: {conditions},
        },
      })
      if (renewed !== undefined) {
        this.options.log.info('issued the kubeconfig of a cluster again', {
          cluster: assignment.name,
          reason: renewed.reason,
        })
      }
      this.options.log.info('initialized cluster', {
        cluster: assignment.name,
        kubernetesPort: assignment.kubernetesPort,
      })
      return held
    })
  }

  private async removeOrphanServices(services: V1Service[], current: Set<string>): Promise<void> {
    for (const service of services) {
      const name = service.metadata?.labels?.[CLUSTER_LABEL]
      if (name === undefined || current.has(name)) continue
      try {
        await this.manifests.remove({
          apiVersion: 'v1',
          kind: 'Service',
          metadata: {name: service.metadata?.name ?? '', namespace: this.namespace},
        })
        this.options.log.info('removed the Service of a deleted cluster', {cluster: name})
      } catch (error) {
        this.options.log.warn(
          'cannot remove the Service of a deleted cluster; trying again on the next pass',
          {
            cluster: name,
            reason: error instanceof Error ? error.message : String(error),
          },
        )
      }
    }
  }

  private queue(name: string, write: () => Promise<void>): void {
    const previous = this.writes.get(name) ?? Promise.resolve()
    const next = previous.then(write).catch((error: unknown) => {
      this.options.log.warn(
        `updating cluster ${name} failed: ${error instanceof Error ? error.message : String(error)}`,
      )
    })
    this.writes.set(name, next)
  }

  /** AgentAvailable, and on the first connection the issued kubeconfig (as Tower writes it). */
  private async writeAgentPresence(name: string, sessions: number): Promise<void> {
    const cluster = await this.client.findCustomObject<KubeSphereCluster>(ClusterResource, name)
    if (cluster === undefined || !isProxyCluster(cluster)) return
    const connected = sessions > 0
    const conditions = withCondition(
      cluster.status?.conditions ?? [],
      connected
        ? {
            type: 'AgentAvailable',
            status: 'True',
            reason: 'AgentAvailable',
            message: 'Agent has connected to proxy successfully.',
          }
        : {
            type: 'AgentAvailable',
            status: 'False',
            reason: 'AgentNotAvailable',
            message: 'Agent has not connected to proxy.',
          },
      this.now(),
    )
    const endpoint = cluster.spec?.connection?.kubernetesAPIEndpoint
    const needsKubeconfig =
      connected && endpoint !== undefined && (cluster.spec?.connection?.kubeconfig ?? '') === ''
    if (conditions === cluster.status?.conditions && !needsKubeconfig) return
    const kubeconfig = needsKubeconfig ? await this.issueClusterKubeconfig(name, endpoint) : undefined
    await this.client.patchCustomObject(ClusterResource, name, {
      strategy: 'merge',
      body: {
        metadata: {resourceVersion: cluster.metadata?.resourceVersion},
        ...(kubeconfig === undefined ? {} : {spec: {connection: {kubeconfig}}}),
        status: {conditions},
      },
    })
  }

  /**
   * The kubeconfig KubeSphere reaches the member with (base64, as Cluster.spec.connection.kubeconfig holds it): bound
   * to the cluster, as KubeSphere's identity, which the member must grant what KubeSphere needs
   * (kubesphereIdentityRbac in shared/identity.ts).
   */
  private async issueClusterKubeconfig(name: string, server: string): Promise<string> {
    const kubeconfig = await issueKubeconfig({
      ca: this.ca.current,
      cluster: name,
      server,
      identity: KUBESPHERE_IDENTITY,
      validityDays: this.options.kubeconfigValidityDays,
    })
    return Buffer.from(kubeconfig).toString('base64')
  }

  /**
   * A new kubeconfig when the Cluster's must be issued again (see {@link kubeconfigRenewalReason}); undefined when
   * it has none yet (the first agent's connection brings it, as with Tower) or it is good.
   */
  private async renewedKubeconfig(
    name: string,
    current: unknown,
    server: string,
  ): Promise<{kubeconfig: string; reason: string} | undefined> {
    if (typeof current !== 'string' || current === '') return undefined
    let known = this.issued.get(name)
    if (known?.base64 !== current) {
      known = {base64: current, kubeconfig: readIssuedKubeconfig(current)}
      this.issued.set(name, known)
    }
    const reason = kubeconfigRenewalReason(
      known.kubeconfig,
      {server, caPem: this.ca.current.certPem, cluster: name, identity: KUBESPHERE_IDENTITY},
      this.now(),
    )
    return reason === undefined
      ? undefined
      : {kubeconfig: await this.issueClusterKubeconfig(name, server), reason}
  }

  /** A CA rotated in its Secret is taken here; one that cannot be read leaves the current CA in place. */
  private async refreshCa(): Promise<void> {
    try {
      if (await this.ca.refresh()) this.options.log.info('the proxy CA changed: issuing kubeconfigs again')
    } catch (error) {
      this.options.log.warn('cannot read the proxy CA again; keeping the current one', {
        reason: error instanceof Error ? error.message : String(error),
      })
    }
  }

  /** Service mc-NAME's names in the cluster's DNS, shortest first. */
  private serviceDnsNames(cluster: string): string[] {
    const service = `mc-${cluster}`
    const namespace = this.namespace
    const domain = this.options.clusterDomain ?? 'cluster.local'
    return [
      service,
      `${service}.${namespace}`,
      `${service}.${namespace}.svc`,
      `${service}.${namespace}.svc.${domain}`,
    ]
  }

  private get namespace(): string {
    return this.options.namespace ?? KUBESPHERE_NAMESPACE
  }

  private get portRange(): PortRange {
    return this.options.portRange ?? KUBERNETES_PORT_RANGE
  }

  private now(): Date {
    return this.options.now?.() ?? new Date()
  }
}

/**
 * The rotation state of each proxy Cluster whose annotation references the Secret (a record no Cluster references
 * is not acted on: the reference is what `ksctl agent-token rotate` writes, and what says the record is the
 * Cluster's, not a deleted namesake's).
 */
function referencedTokenStates(
  proxyClusters: Map<string, KubeSphereCluster>,
  records: Map<string, AgentTokenRecord>,
): Map<string, AgentTokenState> {
  const states = new Map<string, AgentTokenState>()
  for (const [name, record] of records) {
    const reference = proxyClusters.get(name)?.metadata?.annotations?.[AGENT_TOKEN_SECRET_ANNOTATION]
    if (reference === AGENT_TOKENS_SECRET) states.set(name, agentTokenState(name, record))
  }
  return states
}

/** Whether the Cluster already holds the token and ports of `assignment` (what its agent connects with). */
function holds(cluster: KubeSphereCluster, assignment: ClusterAssignment): boolean {
  const connection = (cluster.spec?.connection ?? {}) as Record<string, unknown>
  return (
    connection.token === assignment.token && connection.kubernetesAPIServerPort === assignment.kubernetesPort
  )
}

function toRegistered(assignment: ClusterAssignment): RegisteredCluster {
  return {
    name: assignment.name,
    token: assignment.token,
    kubernetesPort: assignment.kubernetesPort,
    kubespherePort: assignment.kubespherePort,
    ...(assignment.serverNames !== undefined && {serverNames: assignment.serverNames}),
  }
}

/** Whether the Service already leads where `wanted` does: the same ports, to the same pods. */
function sameRouting(service: V1Service, wanted: ManifestObject): boolean {
  const wantedSpec = wanted.spec as {
    selector: Record<string, string>
    ports: {name: string; port: number; targetPort: number}[]
  }
  const ports = (service.spec?.ports ?? []).map((port) => [port.name, port.port, port.targetPort])
  const wantedPorts = wantedSpec.ports.map((port) => [port.name, port.port, port.targetPort])
  return (
    JSON.stringify(ports) === JSON.stringify(wantedPorts) &&
    isDeepStrictEqual(service.spec?.selector ?? {}, wantedSpec.selector)
  )
}

/** Service mc-NAME, as Tower creates it: kubernetes 6443 and kubesphere 80 to the cluster's proxy ports. */
function serviceFor(assignment: ClusterAssignment, namespace: string): ManifestObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: `mc-${assignment.name}`,
      namespace,
      labels: {[MANAGED_BY_LABEL]: MANAGED_BY, [CLUSTER_LABEL]: assignment.name},
    },
    spec: {
      type: 'ClusterIP',
      selector: {...PROXY_POD_SELECTOR},
      ports: [
        {name: 'kubernetes', protocol: 'TCP', port: 6443, targetPort: assignment.kubernetesPort},
        {name: 'kubesphere', protocol: 'TCP', port: 80, targetPort: assignment.kubespherePort},
      ],
    },
  }
}
