import {formatDuration} from '../cli/duration.js'
import {invalidInput, KsctlError} from '../errors.js'
import {applyWrites, editWrites, requireAccess, type PlannedWrite} from '../k8s/access-review.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {runEdit, type DryRun} from '../k8s/dry-run.js'
import {applyManifest, ManifestObjects, type ManifestObject} from '../k8s/manifest-objects.js'
import {compareObjects, previewEdit, type EditOutcome} from '../k8s/object-edit.js'
import {ClusterResource, apiVersionOf} from '../k8s/resources.js'
import {log} from '../log.js'
import {fingerprint} from '../redact.js'
import {
  defaultKsctlAgentImage,
  KSCTL_AGENT_NAME,
  renderAgentManifest,
  renderKsctlAgentManifest,
  type ProxyTrust,
} from './agent-manifest.js'
import {chooseRuntime, ksctlProxyAddress, type TunnelRuntime} from './agent-runtime.js'
import {previewAgentSettings, readAgentSettings, readProxyTrust} from './agent-settings.js'
import {
  CREATOR_ANNOTATION,
  DESCRIPTION_ANNOTATION,
  MEMBER_UID_ANNOTATION,
  isConditionTrue,
  type KubeSphereCluster,
} from './cluster-object.js'
import {KUBESPHERE_NAMESPACE} from './constants.js'
import type {Edition} from './detect.js'
import {installerSpecEdit, setIn} from './edits.js'
import {planClusterApply} from './cluster-apply.js'
import {checkRegistration, joinPreflight, type JoinPreflight} from './join-preflight.js'
import {joinLock} from './join-lock.js'
import {waitForJoin} from './join-wait.js'
import {waitUntil} from './wait.js'

export interface MemberJoinOptions {
  name: string
  labels: Record<string, string>
  provider?: string | undefined
  description?: string | undefined
  creator: string
  proxyAddress?: string | undefined
  agentImage?: string | undefined
  replicas?: number | undefined
  /** `--runtime`: whose agent; when absent, the runtime the host runs. */
  runtime?: TunnelRuntime | undefined
  /** `--proxy-pin`: ksctl's agent trusts the proxy by this pin instead of the CA the host keeps. */
  proxyPin?: string | undefined
  /** Apply the agent manifest to the member; otherwise it is the command's output (file or stdout). */
  apply: boolean
  dryRun: DryRun
  /** `--timeout`, each API request's time-out (0: none): the join lock outlives one request. */
  requestTimeoutMs: number
  /** The user's `--timeout`, when given: the limit of the wait for the token instead of its default. */
  waitTimeoutMs?: number | undefined
}

/** What `ksctl member join` did or would do. Part of the `--json` contract. */
export interface MemberJoinResult {
  name: string
  hostContext: string
  memberContext: string
  edition: Edition
  proxyAddress: string
  /** Whose agent: `tower` (KubeSphere's) or `ksctl`, and why (what the host's tower Service selects). */
  runtime: TunnelRuntime
  runtimeWhy: string
  /** What the agent dials: proxyAddress, for ksctl's agent as `wss://`. */
  agentAddress: string
  hostJwtSecretFingerprint: string
  dryRun: boolean
  /** Changes on both clusters, in the order they were made. */
  changes: EditOutcome[]
  /** The agent manifest, when it is the output (not applied); it holds the connection token. */
  agentManifest?: ManifestObject[]
  /** Condition type → status of the host's Cluster at the end. */
  conditions: Record<string, string>
  ready: boolean
  warnings: string[]
}

const TOKEN_PLACEHOLDER = '<issued by the proxy when the Cluster is created>'

/**
 * How long the tower proxy may take to initialize a new Cluster (ports, Service, token) without `--timeout`:
 * it does so as soon as it sees the Cluster, so this covers a proxy that is restarting or busy.
 */
export const TOKEN_WAIT_MS = 2 * 60_000

/**
 * Joins a member to a host through the proxy: preflight, jwtSecret (3.x), the Cluster on the host, the
 * proxy's token, the agent manifest (applied or handed out). Following the Cluster until Ready is
 * {@link followJoin}, once the agent is on its way. Every step is an idempotent edit, so running the
 * command again after a failure continues where it stopped, and after success changes nothing.
 */
export async function memberJoin(
  hostClient: ClusterClient,
  memberClient: ClusterClient,
  options: MemberJoinOptions,
): Promise<MemberJoinResult> {
  const preflight = await joinPreflight(hostClient, memberClient, options.name, options.proxyAddress)
  const agentPlan = await planAgent(hostClient, preflight, options)
  log.info(`runtime ${agentPlan.runtime}: ${agentPlan.why}`)
  const warnings: string[] = []
  const changes: EditOutcome[] = []
  const record = (outcome: EditOutcome) => {
    changes.push(outcome)
    if (outcome.changed && !options.dryRun)
      log.info(`${memberOrHost(outcome.context, preflight)}: ${outcome.summary}`)
  }

  const installerEdit =
    preflight.edition === '3.x' ? memberInstallerEdit(memberClient, preflight.host.jwtSecret) : undefined
  if (preflight.edition === '4.x') {
    const memberFingerprint = preflight.member.info.jwtSecretFingerprint
    if (memberFingerprint !== undefined && memberFingerprint !== fingerprint(preflight.host.jwtSecret)) {
      warnings.push(
        `the member already runs KubeSphere with jwtSecret ${memberFingerprint}, the host's is ${fingerprint(preflight.host.jwtSecret)}: ` +
          "the host reinstalls ks-core on the member with the host's secret once the agent connects; until then users " +
          'signed in on the host are rejected by the member',
      )
    }
  }

  // The plan, before any write: every write it makes is checked with the API servers, the Cluster's apply
  // is tried as a server dry run, and a new registration is locked against joins of the member under
  // other names.
  const installerPreview = installerEdit === undefined ? undefined : await previewEdit(installerEdit)
  const clusterApply = planClusterApply(
    hostClient,
    desiredCluster(options, preflight.member.uid),
    preflight.existing,
    memberClient.context,
  )
  const lock =
    preflight.existing === undefined
      ? joinLock(
          hostClient,
          {name: options.name, memberUid: preflight.member.uid, memberContext: memberClient.context},
          {dryRun: options.dryRun, requestTimeoutMs: options.requestTimeoutMs},
        )
      : undefined
  await requireAccess(
    [
      ...(installerPreview === undefined ? [] : editWrites(memberClient, installerPreview)),
      ...(lock?.writes ?? []),
      ...clusterApply.writes,
      ...(options.apply
        ? await agentWrites(memberClient, renderAgent(preflight, agentPlan, options, TOKEN_PLACEHOLDER))
        : []),
    ],
    options.dryRun,
  )
  await clusterApply.validate()

  await lock?.acquire(() => checkRegistration(hostClient, memberClient, options.name, preflight.member.uid))
  try {
    if (installerEdit !== undefined && installerPreview !== undefined) {
      record(options.dryRun === 'client' ? installerPreview : await runEdit(installerEdit, options.dryRun))
    }
    await lock?.confirm()
    changes.push(await clusterApply.apply(options.dryRun))
  } finally {
    await lock?.release()
  }
  if (!options.dryRun) log.info(`host: Cluster "${options.name}" is registered (connection type proxy)`)

  const cluster = options.dryRun
    ? undefined
    : await waitForToken(hostClient, options.name, options.waitTimeoutMs, agentPlan.runtime)
  const overrides = {proxyAddress: preflight.proxyAddress, image: agentPlan.image}
  // A dry run renders the agent the real run would: with the token the proxy has issued, if it has.
  const settings = options.dryRun
    ? await previewAgentSettings(hostClient, options.name, overrides, TOKEN_PLACEHOLDER)
    : await readAgentSettings(hostClient, options.name, overrides)
  const agent = renderAgent(preflight, agentPlan, options, settings.token, settings.image)

  let agentManifest: ManifestObject[] | undefined
  if (options.apply) {
    changes.push(...(await applyAgent(memberClient, agent, options.dryRun, warnings)))
    if (!options.dryRun) {
      log.info(
        agentPlan.runtime === 'ksctl'
          ? `member: ksctl's agent applied (deployment ${KUBESPHERE_NAMESPACE}/${KSCTL_AGENT_NAME}, its token in a Secret)`
          : `member: agent applied in namespace ${KUBESPHERE_NAMESPACE}`,
      )
    }
  } else {
    agentManifest = agent
  }

  return {
    name: options.name,
    hostContext: hostClient.context,
    memberContext: memberClient.context,
    edition: preflight.edition,
    proxyAddress: preflight.proxyAddress,
    runtime: agentPlan.runtime,
    runtimeWhy: agentPlan.why,
    agentAddress: agentPlan.agentAddress,
    hostJwtSecretFingerprint: fingerprint(preflight.host.jwtSecret),
    dryRun: options.dryRun !== false,
    changes,
    ...(agentManifest === undefined ? {} : {agentManifest}),
    ...joinState(cluster),
    warnings: [...warnings, ...settings.warnings],
  }
}

/**
 * `--wait`: follows the Cluster until Ready, once the agent is applied or in the user's hands, within the
 * user's `--timeout` or else the wait's default; returns the conditions it ended with.
 */
export async function followJoin(
  hostClient: ClusterClient,
  memberClient: ClusterClient,
  name: string,
  waitTimeoutMs: number | undefined,
): Promise<Pick<MemberJoinResult, 'conditions' | 'ready'>> {
  return joinState(await waitForJoin(hostClient, memberClient, name, waitTimeoutMs))
}

function joinState(cluster: KubeSphereCluster | undefined): Pick<MemberJoinResult, 'conditions' | 'ready'> {
  return {
    conditions: Object.fromEntries((cluster?.status?.conditions ?? []).map((c) => [c.type, c.status])),
    ready: isConditionTrue(cluster, 'Ready'),
  }
}

/** Whose agent the join renders, and what that runtime's manifest needs besides the token. */
interface AgentPlan {
  runtime: TunnelRuntime
  why: string
  /** What the agent dials. */
  agentAddress: string
  /** The image the user chose; for ksctl's agent, its default when none was chosen. */
  image: string | undefined
  /** ksctl's agent: how it trusts the proxy. */
  trust?: ProxyTrust
}

/**
 * The runtime (the host's, or `--runtime` when the host agrees) and what its agent needs from the host, read
 * before anything changes, so that a host that cannot take this agent fails the join with nothing changed.
 */
async function planAgent(
  host: ClusterClient,
  preflight: JoinPreflight,
  options: MemberJoinOptions,
): Promise<AgentPlan> {
  const {runtime, why} = await chooseRuntime(host, options.runtime)
  if (runtime === 'tower') {
    if (options.proxyPin !== undefined) {
      throw invalidInput(`--proxy-pin is for ksctl's agent, and ${why}`, [
        "leave out --proxy-pin: Tower's agent dials the proxy without TLS",
      ])
    }
    return {runtime, why, agentAddress: preflight.proxyAddress, image: options.agentImage}
  }
  return {
    runtime,
    why,
    agentAddress: ksctlProxyAddress(preflight.proxyAddress, 'the proxy address'),
    image: options.agentImage ?? defaultKsctlAgentImage(),
    trust: await readProxyTrust(host, {pin: options.proxyPin}),
  }
}

function renderAgent(
  preflight: JoinPreflight,
  plan: AgentPlan,
  options: MemberJoinOptions,
  token: string,
  image?: string,
): ManifestObject[] {
  const common = {
    clusterName: options.name,
    token,
    image: image ?? plan.image,
    replicas: options.replicas,
  }
  return plan.trust === undefined
    ? renderAgentManifest({...common, edition: preflight.edition, proxyAddress: plan.agentAddress})
    : renderKsctlAgentManifest({...common, proxyAddress: plan.agentAddress, trust: plan.trust})
}

/**
 * The member's side of a 3.x join (ks-installer's ClusterConfiguration): the host's jwtSecret, so that tokens
 * the host issues hold on the member, and the member role. Shared by `member join` and `member register`.
 */
export function memberInstallerEdit(memberClient: ClusterClient, hostJwtSecret: string) {
  return installerSpecEdit(
    memberClient,
    "copy the host's jwtSecret and set clusterRole to member",
    (spec) => {
      setIn(spec, ['authentication', 'jwtSecret'], hostJwtSecret)
      setIn(spec, ['multicluster', 'clusterRole'], 'member')
    },
  )
}

/** The agent's server-side applies: a patch each, and a create for each object not on the member yet. */
export async function agentWrites(member: ClusterClient, objects: ManifestObject[]): Promise<PlannedWrite[]> {
  const manifest = new ManifestObjects(member)
  const writes: PlannedWrite[] = []
  for (const object of objects) {
    writes.push(...applyWrites(member, manifest, object, (await manifest.find(object)) !== undefined))
  }
  return writes
}

/**
 * The host's Cluster of a proxy member. `memberUid` marks which member it stands for, when it is known (the
 * one-machine join); `host invite` registers a Cluster before its member is known.
 */
export function desiredCluster(
  options: Pick<MemberJoinOptions, 'name' | 'labels' | 'provider' | 'description' | 'creator'>,
  memberUid: string | undefined,
): ManifestObject {
  const annotations: Record<string, string> = {
    [CREATOR_ANNOTATION]: options.creator,
    ...(memberUid === undefined ? {} : {[MEMBER_UID_ANNOTATION]: memberUid}),
    ...(options.description === undefined ? {} : {[DESCRIPTION_ANNOTATION]: options.description}),
  }
  return {
    apiVersion: apiVersionOf(ClusterResource),
    kind: ClusterResource.kind,
    metadata: {
      name: options.name,
      ...(Object.keys(options.labels).length === 0 ? {} : {labels: options.labels}),
      annotations,
    },
    spec: {
      joinFederation: true,
      ...(options.provider === undefined ? {} : {provider: options.provider}),
      connection: {type: 'proxy'},
    },
  }
}

/** The proxy fills the token and sets Initialized once it has allocated the Cluster's ports and Service. */
export async function waitForToken(
  client: ClusterClient,
  name: string,
  timeoutMs: number | undefined,
  runtime: TunnelRuntime,
): Promise<KubeSphereCluster> {
  const proxy = runtime === 'ksctl' ? 'ksctl-tower-proxy' : 'tower'
  const what = runtime === 'ksctl' ? "ksctl's proxy" : 'the tower proxy'
  let cluster: KubeSphereCluster | undefined
  await waitUntil({
    what: `the proxy to initialize cluster "${name}"`,
    defaultTimeoutMs: TOKEN_WAIT_MS,
    timeoutMs,
    poll: async () => {
      cluster = await client.findCustomObject<KubeSphereCluster>(ClusterResource, name)
      const ready =
        cluster?.spec?.connection?.token !== undefined &&
        cluster.spec.connection.token !== '' &&
        isConditionTrue(cluster, 'Initialized')
      return {
        done: ready,
        state: ready
          ? `host: the proxy initialized "${name}" and issued its token`
          : `host: waiting for the proxy to initialize "${name}"`,
      }
    },
    onTimeout: (_last, limitMs) =>
      new KsctlError(
        `${what} did not initialize cluster "${name}" within ${formatDuration(limitMs)} in context "${client.context}"`,
        {
          code: 'TIMEOUT',
          context: client.context,
          object: {resource: 'clusters.cluster.kubesphere.io', name},
          suggestions: [
            `is the proxy running? kubectl --context ${client.context} -n ${KUBESPHERE_NAMESPACE} get deployment ${proxy}`,
            `its log: kubectl --context ${client.context} -n ${KUBESPHERE_NAMESPACE} logs deployment/${proxy}`,
            'then run the same command again: it continues from here',
          ],
        },
      ),
  })
  if (cluster === undefined) throw new Error('internal error: waited for a cluster that was not read')
  return cluster
}

/**
 * Server-side applies the agent, or dry-runs it. A dry run creates no namespace, and the API server cannot
 * dry-run objects in a namespace that does not exist: those are shown as they would be created, unchecked
 * by the server, and a server dry run says so.
 */
export async function applyAgent(
  client: ClusterClient,
  objects: ManifestObject[],
  dryRun: DryRun,
  warnings: string[],
): Promise<EditOutcome[]> {
  if (!dryRun) return applyManifest(client, objects, false)
  if ((await client.findNamespace(KUBESPHERE_NAMESPACE)) !== undefined)
    return applyManifest(client, objects, true)
  const unchecked = objects.filter((object) => object.metadata.namespace === KUBESPHERE_NAMESPACE)
  if (dryRun === 'server' && unchecked.length > 0) {
    warnings.push(
      `namespace ${KUBESPHERE_NAMESPACE} does not exist yet in context "${client.context}" and a dry run does not create ` +
        `it, so the API server could not check ${unchecked.map((object) => `${object.kind} ${object.metadata.name}`).join(', ')}`,
    )
  }
  const outcomes: EditOutcome[] = []
  for (const object of objects) {
    if (dryRun === 'server' && object.metadata.namespace === undefined) {
      outcomes.push(...(await applyManifest(client, [object], true)))
      continue
    }
    outcomes.push(
      compareObjects(
        client.context,
        {
          resource: `${object.kind.toLowerCase()}s`,
          name: object.metadata.name,
          ...(object.metadata.namespace === undefined ? {} : {namespace: object.metadata.namespace}),
        },
        `create ${object.kind} ${object.metadata.name}`,
        undefined,
        object,
      ),
    )
  }
  return outcomes
}

function memberOrHost(context: string, preflight: JoinPreflight): string {
  return context === preflight.host.client.context ? 'host' : 'member'
}
