import {setTimeout as delay} from 'node:timers/promises'

import {KubeConfig, type V1Deployment} from '@kubernetes/client-node'
import {load} from 'js-yaml'

import {formatDuration} from '../cli/duration.js'
import {KsctlError} from '../errors.js'
import {ClusterClient} from '../k8s/cluster-client.js'
import {applyManifest, ManifestObjects, type ManifestObject} from '../k8s/manifest-objects.js'
import {compareObjects, type EditOutcome} from '../k8s/object-edit.js'
import {ClusterResource} from '../k8s/resources.js'
import {log} from '../log.js'
import {redactor} from '../redact.js'
import {isProxyCluster} from '../tower/proxy/kubernetes/cluster-reconcile.js'
import {PROXY_CA_SECRET} from '../tower/proxy/kubernetes/proxy-ca.js'
import {
  defaultKsctlAgentImage,
  ksctlAgentObjectRefs,
  renderAgentManifest,
  towerAgentObjectRefs,
  renderKsctlAgentManifest,
  type ProxyTrust,
} from './agent-manifest.js'
import {ksctlProxyAddress, type TunnelRuntime} from './agent-runtime.js'
import {previewAgentSettings, readProxyTrust, type AgentSettings} from './agent-settings.js'
import type {KubeSphereCluster} from './cluster-object.js'
import {HOST_CLUSTER_LABEL, KUBESPHERE_NAMESPACE} from './constants.js'
import {AGENT_DEPLOYMENTS} from './member-agents.js'

/**
 * Moving a host's proxy members from one tunnel runtime's agent to the other's, for `ksctl proxy install` (Tower's
 * → ksctl's) and its undo (ksctl's → Tower's). An agent can only talk to its own proxy, so the members must change
 * agents when the host changes proxies, and the only way to reach a member from the host is the tunnel of the
 * runtime it runs: the kubeconfig in its Cluster's `spec.connection.kubeconfig`, which the proxy issued.
 *
 * For each member, through the tunnel that works before the switch (the old runtime's): the new agent's objects
 * are applied beside the old agent. Then `switchProxy` points the host's published proxy at the new proxy, once.
 * Then, for each member, through the new runtime's tunnel as soon as it works (the Cluster's kubeconfig is the new
 * proxy's and reaches the member's new agent): the old agent is removed. A member that fails before the switch is
 * left as it was (what was created there is removed again) and reported by name; one that fails after it keeps
 * both agents, and is reported with what to check.
 */
export interface RuntimeMigrationOptions {
  /**
   * Points the host's published proxy (the `tower` Service's selector) at the proxy of the runtime being moved to;
   * called once, after every member runs the new agent beside the old one, before the wait for the new agents. It
   * should also stop the old proxy, which would otherwise go on writing its own kubeconfigs into the Clusters of
   * the agents still connected to it.
   */
  switchProxy: () => Promise<void>
  /**
   * Switch even when members could not be given the new agent. They keep the old agent, which cannot reach the new
   * proxy: they are cut off until joined again. Default: no switch, and the members already given the new agent
   * are put back as they were.
   */
  switchDespiteFailures?: boolean
  /** Apply nothing, switch nothing: server dry runs of each member's new agent, through the old tunnel. */
  dryRun?: boolean
  /** The new agent's image. Default: ksctl's `ksctl:<version>`; Tower's the host's agentImage. */
  agentImage?: string
  /** Moving to ksctl's agent: trust ksctl's proxy by this pin of its serving key instead of the CA on the host. */
  proxyPin?: string
  /** How long each member's new agent may take to connect once switched. Default 5 minutes. */
  connectTimeoutMs?: number
  /** Each API request's time-out, through the tunnels included. Default 30 s. */
  requestTimeoutMs?: number
  /** Members worked on at once. Default 8. */
  concurrency?: number
  /**
   * Where this process reaches the server a Cluster's kubeconfig names (Service mc-NAME's ClusterIP, which routes
   * only inside the host's network); `undefined`: as written. A caller outside the host's network gives a route,
   * such as a port-forward to the proxy.
   */
  tunnelServer?: (cluster: KubeSphereCluster) => string | undefined
  /** One line of progress. Default: the log (stderr). */
  say?: (line: string) => void
}

/**
 * - `moved`: the member runs the new agent only.
 * - `already`: it ran the new agent only before this migration.
 * - `planned`: a dry run; nothing changed.
 * - `put-back`: it was given the new agent, then put back as it was, because other members failed and nothing was
 *   switched.
 * - `skipped`: no agent of it ever connected (no kubeconfig in the Cluster): there is no tunnel to move it
 *   through, and nothing of it to cut off; it needs the new runtime's agent joined (see `suggestions`).
 * - `failed`: see `error`.
 */
export type MemberMigrationOutcome = 'moved' | 'already' | 'planned' | 'put-back' | 'skipped' | 'failed'

export interface MemberMigration {
  /** The Cluster's name on the host. */
  name: string
  outcome: MemberMigrationOutcome
  /** Why it failed and what is left on the member, for `failed`; why it was put back, for `put-back`. */
  error?: string
  /** What to do about it. */
  suggestions?: string[]
  /** The changes made on the member through the tunnels, in order (diffs redacted). */
  changes: EditOutcome[]
}

export interface RuntimeMigrationReport {
  from: TunnelRuntime
  to: TunnelRuntime
  /** Whether `switchProxy` was called. */
  switched: boolean
  members: MemberMigration[]
}

/** Tower's proxy → ksctl's: each proxy member whose agent is Tower's gets ksctl's agent, then loses Tower's. */
export function migrateMembersToKsctlAgent(
  host: ClusterClient,
  options: RuntimeMigrationOptions,
): Promise<RuntimeMigrationReport> {
  return migrateMembers(host, {from: 'tower', to: 'ksctl'}, options)
}

/** ksctl's proxy → Tower's (the undo): each proxy member whose agent is ksctl's gets Tower's, then loses ksctl's. */
export function migrateMembersToTowerAgent(
  host: ClusterClient,
  options: RuntimeMigrationOptions,
): Promise<RuntimeMigrationReport> {
  return migrateMembers(host, {from: 'ksctl', to: 'tower'}, options)
}

/** The members a migration did not move: failed, or put back because others failed. */
export function unmovedMembers(report: RuntimeMigrationReport): MemberMigration[] {
  return report.members.filter((member) => member.outcome === 'failed' || member.outcome === 'put-back')
}

/**
 * A migration that switched nothing, as the error a command reports: each member that could not be given the new
 * agent and why, what was left as it was (`leftAsItWas`), and the suggestions, `nextStep` last.
 */
export function notSwitchedError(
  host: ClusterClient,
  report: RuntimeMigrationReport,
  leftAsItWas: string,
  nextStep: string,
): KsctlError {
  const unmoved = unmovedMembers(report)
  return new KsctlError(
    `could not give ${RUNTIME_NAMES[report.to]} agent to ${unmoved.map((member) => `${member.name} (${member.error ?? 'failed'})`).join('; ')}; ${leftAsItWas}`,
    {
      code: 'PRECONDITION_FAILED',
      context: host.context,
      object: {resource: 'clusters.cluster.kubesphere.io', name: unmoved[0]?.name ?? ''},
      suggestions: [...new Set(unmoved.flatMap((member) => member.suggestions ?? [])), nextStep],
    },
  )
}

interface Direction {
  from: TunnelRuntime
  to: TunnelRuntime
}

const RUNTIME_NAMES: Record<TunnelRuntime, string> = {tower: "Tower's", ksctl: "ksctl's"}
const DEFAULT_CONNECT_TIMEOUT_MS = 5 * 60_000
const POLL_MS = 500

/** What every member's new agent is rendered from, read from the host once, before anything changes. */
interface HostFacts {
  settings: AgentSettings
  /** The certificate of ksctl's proxy CA: how a kubeconfig of ksctl's proxy is told from Tower's. */
  ksctlCaPem: string
  trust?: ProxyTrust
}

/** A member given the new agent beside the old one, before the switch. */
interface Prepared {
  cluster: KubeSphereCluster
  name: string
  /** The old tunnel, and what was created through it (to remove it again if the switch is not made). */
  oldTunnel: ClusterClient
  created: ManifestObject[]
  changes: EditOutcome[]
}

async function migrateMembers(
  host: ClusterClient,
  direction: Direction,
  options: RuntimeMigrationOptions,
): Promise<RuntimeMigrationReport> {
  const say = options.say ?? ((line: string) => log.info(line))
  const proxyMembers = (await host.listCustomObjects<KubeSphereCluster>(ClusterResource)).filter(
    isProxyMember,
  )
  const clusters = proxyMembers.filter(hasConnected)
  const report: RuntimeMigrationReport = {
    ...direction,
    switched: false,
    members: proxyMembers
      .filter((cluster) => !hasConnected(cluster))
      .map((cluster): MemberMigration => {
        const name = cluster.metadata?.name ?? ''
        return {
          name,
          outcome: 'skipped',
          error: `no agent of cluster ${name} ever connected (no kubeconfig in spec.connection): there is no tunnel to move it through`,
          suggestions: [
            `join it with the new agent: ksctl member join ${name} --runtime ${direction.to} --host-context <host> --member-context <member>`,
          ],
          changes: [],
        }
      }),
  }
  if (clusters.length === 0) {
    say(`no proxy member to move to ${RUNTIME_NAMES[direction.to]} agent`)
  }
  const facts = clusters.length === 0 ? undefined : await readHostFacts(host, direction, clusters, options)
  const concurrency = options.concurrency ?? 8
  const prepared =
    facts === undefined
      ? []
      : await mapLimited(clusters, concurrency, (cluster) =>
          prepareMember(cluster, direction, facts, options, say),
        )
  const ready = prepared.filter((entry): entry is Prepared => 'oldTunnel' in entry)
  const settled = prepared.filter((entry): entry is MemberMigration => !('oldTunnel' in entry))
  report.members.push(...settled)
  if (options.dryRun === true) {
    report.members.push(
      ...ready.map((entry): MemberMigration => ({
        name: entry.name,
        outcome: 'planned',
        changes: entry.changes,
      })),
    )
    return sortedReport(report)
  }
  const failed = settled.filter((member) => member.outcome === 'failed')
  if (failed.length > 0 && options.switchDespiteFailures !== true) {
    const names = failed.map((member) => member.name).join(', ')
    say(
      `not switching: ${failed.length === 1 ? 'member' : 'members'} ${names} could not be given the new agent`,
    )
    report.members.push(
      ...(await mapLimited(ready, concurrency, (entry) => putBack(entry, direction, names, say))),
    )
    return sortedReport(report)
  }
  say(
    `every member runs ${RUNTIME_NAMES[direction.to]} agent beside ${RUNTIME_NAMES[direction.from]}: switching the proxy`,
  )
  await options.switchProxy()
  report.switched = true
  if (facts !== undefined) {
    report.members.push(
      ...(await mapLimited(ready, concurrency, (entry) =>
        completeMember(host, entry, direction, facts, options, say),
      )),
    )
  }
  return sortedReport(report)
}

/** Whether an agent of the Cluster ever connected: its proxy wrote a kubeconfig into it. */
function hasConnected(cluster: KubeSphereCluster): boolean {
  return (cluster.spec?.connection?.kubeconfig ?? '') !== ''
}

/**
 * Proxy members: the Clusters ksctl's proxy serves (isProxyCluster, the one definition the proxy and the install use
 * too), but not the host itself. One without a token is not skipped: it cannot be given an agent, so it fails.
 */
function isProxyMember(cluster: KubeSphereCluster): boolean {
  return isProxyCluster(cluster) && cluster.metadata?.labels?.[HOST_CLUSTER_LABEL] === undefined
}

async function readHostFacts(
  host: ClusterClient,
  direction: Direction,
  clusters: KubeSphereCluster[],
  options: RuntimeMigrationOptions,
): Promise<HostFacts> {
  const image = options.agentImage ?? (direction.to === 'ksctl' ? defaultKsctlAgentImage() : undefined)
  // The edition, the published address and the image are the host's, whichever Cluster they are read for; the
  // token is each Cluster's own.
  const settings = await previewAgentSettings(host, clusters[0]?.metadata?.name ?? '', {image}, '')
  const ca = await host.findSecret(KUBESPHERE_NAMESPACE, PROXY_CA_SECRET)
  const ksctlCaPem = ca?.data['tls.crt'] ?? ''
  if (ksctlCaPem === '') {
    throw new KsctlError(
      `secret ${KUBESPHERE_NAMESPACE}/${PROXY_CA_SECRET} has no certificate in context "${host.context}": the ` +
        "migration tells ksctl's kubeconfigs by the CA of ksctl's proxy, which makes that Secret at its first start",
      {
        code: 'PRECONDITION_FAILED',
        context: host.context,
        object: {resource: 'secrets', name: PROXY_CA_SECRET, namespace: KUBESPHERE_NAMESPACE},
        suggestions: [
          `start ksctl's proxy first and wait until it is ready: kubectl --context ${host.context} -n ${KUBESPHERE_NAMESPACE} rollout status deployment ksctl-tower-proxy`,
        ],
      },
    )
  }
  return {
    settings,
    ksctlCaPem,
    ...(direction.to === 'ksctl' ? {trust: await readProxyTrust(host, {pin: options.proxyPin})} : {}),
  }
}

/**
 * Before the switch, through the old tunnel: gives the member the new agent, unless it has it alone already. On a
 * failure, removes what it created and reports the member as it was.
 */
async function prepareMember(
  cluster: KubeSphereCluster,
  direction: Direction,
  facts: HostFacts,
  options: RuntimeMigrationOptions,
  say: (line: string) => void,
): Promise<Prepared | MemberMigration> {
  const name = cluster.metadata?.name ?? ''
  const via = `through ${RUNTIME_NAMES[direction.from]} tunnel`
  const tunnel = tunnelClient(cluster, `${RUNTIME_NAMES[direction.from]} tunnel`, options)
  if ((cluster.spec?.connection?.token ?? '') === '') {
    return failed(name, `cluster ${name} has no token in spec.connection: no agent can be rendered for it`, [
      `check the Cluster on the host: kubectl get cluster ${name} -o yaml`,
    ])
  }
  // Members without a kubeconfig were skipped (hasConnected) before any was prepared.
  if (tunnel === undefined) throw new Error(`internal error: cluster ${name} has no kubeconfig`)
  const manifest = new ManifestObjects(tunnel)
  const created: ManifestObject[] = []
  const changes: EditOutcome[] = []
  try {
    const [oldAgent, newAgent] = await Promise.all([
      tunnel.findDeployment(KUBESPHERE_NAMESPACE, AGENT_DEPLOYMENTS[direction.from]),
      tunnel.findDeployment(KUBESPHERE_NAMESPACE, AGENT_DEPLOYMENTS[direction.to]),
    ])
    if (oldAgent === undefined) {
      if (newAgent !== undefined) return {name, outcome: 'already', changes: []}
      return failed(
        name,
        `member ${name} runs neither agent (deployment ${KUBESPHERE_NAMESPACE}/${AGENT_DEPLOYMENTS.tower} nor ` +
          `${KUBESPHERE_NAMESPACE}/${AGENT_DEPLOYMENTS.ksctl}), though its tunnel answers: its agent runs some other way`,
        [
          `move it by hand: ksctl agent render ${name} --runtime ${direction.to}, and apply that on the member`,
        ],
      )
    }
    // The namespace exists (the old agent runs in it): applying it would only add ksctl's field manager.
    const objects = newAgentObjects(cluster, direction, facts, oldAgent).filter(
      (object) => object.kind !== 'Namespace',
    )
    for (const object of objects) if ((await manifest.find(object)) === undefined) created.push(object)
    changes.push(...(await applyManifest(tunnel, objects, options.dryRun === true)))
    if (options.dryRun !== true) say(`${name}: ${RUNTIME_NAMES[direction.to]} agent applied ${via}`)
    return {cluster, name, oldTunnel: tunnel, created: options.dryRun === true ? [] : created, changes}
  } catch (error) {
    const removed = options.dryRun === true ? [] : await removeQuietly(tunnel, created)
    const left = created.filter((object) => !removed.includes(object))
    return failed(
      name,
      `${describe(error)} (${via})` +
        (left.length === 0
          ? '; the member is as it was'
          : `; left on the member: ${left.map((object) => `${object.kind} ${object.metadata.name}`).join(', ')}`),
      suggestionsOf(error),
      changes,
    )
  }
}

/**
 * After the switch: waits until the member's Cluster holds the new proxy's kubeconfig and, through it, the new
 * agent answers; then removes the old agent through that tunnel.
 */
async function completeMember(
  host: ClusterClient,
  entry: Prepared,
  direction: Direction,
  facts: HostFacts,
  options: RuntimeMigrationOptions,
  say: (line: string) => void,
): Promise<MemberMigration> {
  const {name} = entry
  const limitMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
  const deadline = Date.now() + limitMs
  let tunnel: ClusterClient | undefined
  for (;;) {
    const probe = await newTunnel(host, name, direction, facts, options)
    if (typeof probe !== 'string') {
      tunnel = probe
      break
    }
    const last = probe
    if (Date.now() > deadline) {
      return failed(
        name,
        `${RUNTIME_NAMES[direction.to]} agent did not connect within ${formatDuration(limitMs)} (${last}); both agents ` +
          `are on the member, and ${RUNTIME_NAMES[direction.from]} cannot reach the new proxy`,
        [
          `check the new agent on the member: kubectl --context <member> -n ${KUBESPHERE_NAMESPACE} logs deployment/${AGENT_DEPLOYMENTS[direction.to]}`,
          `once it is connected, remove the old one: kubectl --context <member> -n ${KUBESPHERE_NAMESPACE} delete deployment ${AGENT_DEPLOYMENTS[direction.from]}`,
        ],
        entry.changes,
      )
    }
    await delay(POLL_MS)
  }
  say(
    `${name}: ${RUNTIME_NAMES[direction.to]} agent connected; removing ${RUNTIME_NAMES[direction.from]} through it`,
  )
  const changes = [...entry.changes]
  try {
    const manifest = new ManifestObjects(tunnel)
    for (const object of oldAgentObjects(direction.from, facts)) {
      const current = await manifest.find(object)
      if (current === undefined || !(await manifest.remove(object))) continue
      const summary = `delete ${object.kind} ${object.metadata.name}`
      changes.push(compareObjects(tunnel.context, manifest.ref(object), summary, current, undefined))
    }
  } catch (error) {
    return failed(
      name,
      `${RUNTIME_NAMES[direction.to]} agent is connected, but removing ${RUNTIME_NAMES[direction.from]} failed: ${describe(error)}`,
      [
        `remove it on the member: kubectl --context <member> -n ${KUBESPHERE_NAMESPACE} delete deployment ${AGENT_DEPLOYMENTS[direction.from]}`,
      ],
      changes,
    )
  }
  return {name, outcome: 'moved', changes}
}

/**
 * The new runtime's tunnel to the member once it works: the Cluster holds the new proxy's kubeconfig (told by the
 * CA it trusts: ksctl's proxy CA or not), and through it the new agent's Deployment answers. Else why not yet.
 */
async function newTunnel(
  host: ClusterClient,
  name: string,
  direction: Direction,
  facts: HostFacts,
  options: RuntimeMigrationOptions,
): Promise<ClusterClient | string> {
  const cluster = await host.findCustomObject<KubeSphereCluster>(ClusterResource, name).catch(() => undefined)
  const candidate =
    cluster === undefined
      ? undefined
      : tunnelClient(cluster, `${RUNTIME_NAMES[direction.to]} tunnel`, options)
  if (candidate === undefined) return 'the Cluster holds no kubeconfig'
  if (issuedBy(cluster, facts.ksctlCaPem) !== (direction.to === 'ksctl')) {
    return `the Cluster's kubeconfig is still ${RUNTIME_NAMES[direction.from]} proxy's`
  }
  try {
    const agent = await candidate.findDeployment(KUBESPHERE_NAMESPACE, AGENT_DEPLOYMENTS[direction.to])
    return agent === undefined ? 'the new agent is not on the member' : candidate
  } catch (error) {
    return describe(error)
  }
}

/** Nothing was switched: the new agent's objects created on a member are removed again through the old tunnel. */
async function putBack(
  entry: Prepared,
  direction: Direction,
  failedNames: string,
  say: (line: string) => void,
): Promise<MemberMigration> {
  const removed = await removeQuietly(entry.oldTunnel, entry.created)
  const left = entry.created.filter((object) => !removed.includes(object))
  say(`${entry.name}: put back as it was (${RUNTIME_NAMES[direction.to]} agent removed again)`)
  return {
    name: entry.name,
    outcome: left.length === 0 ? 'put-back' : 'failed',
    error:
      `not moved: ${failedNames} could not be moved, so the proxy was not switched` +
      (left.length === 0
        ? ''
        : `; left on the member: ${left.map((o) => `${o.kind} ${o.metadata.name}`).join(', ')}`),
    changes: entry.changes,
  }
}

/** The new runtime's agent for this member: its Cluster's token, the old agent's replicas and egress proxy. */
function newAgentObjects(
  cluster: KubeSphereCluster,
  direction: Direction,
  facts: HostFacts,
  oldAgent: V1Deployment,
): ManifestObject[] {
  const {settings} = facts
  const token = cluster.spec?.connection?.token ?? ''
  redactor.register(token)
  const env = oldAgent.spec?.template.spec?.containers[0]?.env ?? []
  const httpProxy = env.find(
    (variable) => variable.name === 'HTTPS_PROXY' || variable.name === 'HTTP_PROXY',
  )?.value
  const common = {
    clusterName: cluster.metadata?.name ?? '',
    token,
    image: settings.image,
    replicas: oldAgent.spec?.replicas ?? 1,
    httpProxy,
  }
  if (direction.to === 'tower') {
    return renderAgentManifest({...common, edition: settings.edition, proxyAddress: settings.proxyAddress})
  }
  if (facts.trust === undefined) throw new Error("internal error: moving to ksctl's agent without its trust")
  return renderKsctlAgentManifest({
    ...common,
    proxyAddress: ksctlProxyAddress(settings.proxyAddress, settings.proxyAddressSource),
    trust: facts.trust,
  })
}

/**
 * What goes with the old agent once the new one is connected. Tower's: its Deployment (and PodDisruptionBudget);
 * on 4.x its ServiceAccount tower and cluster-admin binding too, which only the agent uses (3.x runs it as
 * KubeSphere's own ServiceAccount, which stays). ksctl's: everything its manifest made but the namespace.
 */
function oldAgentObjects(runtime: TunnelRuntime, facts: HostFacts): ManifestObject[] {
  return runtime === 'tower' ? towerAgentObjectRefs(facts.settings.edition) : ksctlAgentObjectRefs()
}

/** A client of the member through the Cluster's kubeconfig (the tunnel); undefined without one. */
function tunnelClient(
  cluster: KubeSphereCluster,
  what: string,
  options: RuntimeMigrationOptions,
): ClusterClient | undefined {
  const encoded = cluster.spec?.connection?.kubeconfig ?? ''
  if (encoded === '') return undefined
  redactor.register(encoded)
  const config = new KubeConfig()
  try {
    config.loadFromString(Buffer.from(encoded, 'base64').toString('utf8'))
  } catch {
    return undefined
  }
  for (const user of config.users) {
    redactor.register(user.keyData)
    redactor.register(user.token)
  }
  const server = options.tunnelServer?.(cluster)
  if (server !== undefined) {
    const routed = new KubeConfig()
    routed.loadFromOptions({
      clusters: config.clusters.map((entry) => ({...entry, server})),
      users: config.users,
      contexts: config.contexts,
      currentContext: config.currentContext,
    })
    return new ClusterClient(
      `cluster ${cluster.metadata?.name ?? ''} (${what})`,
      routed,
      options.requestTimeoutMs,
    )
  }
  return new ClusterClient(
    `cluster ${cluster.metadata?.name ?? ''} (${what})`,
    config,
    options.requestTimeoutMs,
  )
}

/** Whether the Cluster's kubeconfig trusts `caPem`: ksctl's proxy issued it. */
function issuedBy(cluster: KubeSphereCluster | undefined, caPem: string): boolean {
  try {
    const document = load(
      Buffer.from(cluster?.spec?.connection?.kubeconfig ?? '', 'base64').toString('utf8'),
    ) as {
      clusters?: {cluster?: {'certificate-authority-data'?: unknown}}[]
    }
    const data = document.clusters?.[0]?.cluster?.['certificate-authority-data']
    return typeof data === 'string' && Buffer.from(data, 'base64').toString('utf8').trim() === caPem.trim()
  } catch {
    return false
  }
}

/** Deletes what was created, newest first; returns what is gone (a failure leaves the rest, reported). */
async function removeQuietly(client: ClusterClient, objects: ManifestObject[]): Promise<ManifestObject[]> {
  const manifest = new ManifestObjects(client)
  const removed: ManifestObject[] = []
  for (const object of [...objects].reverse()) {
    try {
      await manifest.remove(object)
      removed.push(object)
    } catch {
      // Reported by the caller as left on the member.
    }
  }
  return removed
}

function failed(
  name: string,
  error: string,
  suggestions: string[],
  changes: EditOutcome[] = [],
): MemberMigration {
  return {name, outcome: 'failed', error, suggestions, changes}
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function suggestionsOf(error: unknown): string[] {
  return error instanceof KsctlError ? error.suggestions : []
}

function sortedReport(report: RuntimeMigrationReport): RuntimeMigrationReport {
  report.members.sort((a, b) => a.name.localeCompare(b.name))
  return report
}

/** `work` on each item, at most `limit` at once; results in the items' order. `work` must not throw. */
async function mapLimited<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = []
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const index = next++
      results[index] = await work(items[index] as T)
    }
  }
  await Promise.all(Array.from({length: Math.max(1, Math.min(limit, items.length))}, worker))
  return results
}
