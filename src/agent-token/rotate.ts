import {KsctlError, invalidInput} from '../errors.js'
import {editWrites, requireAccess} from '../k8s/access-review.js'
import type {ClusterClient, DecodedSecret} from '../k8s/cluster-client.js'
import {runEdit, type DryRun} from '../k8s/dry-run.js'
import {previewEdit, type EditOutcome, type ObjectEdit} from '../k8s/object-edit.js'
import {ClusterResource} from '../k8s/resources.js'
import {detectHostRuntime} from '../kubesphere/agent-runtime.js'
import {
  AGENT_TOKEN_SECRET_ANNOTATION,
  AGENT_TOKENS_SECRET,
  agentTokenState,
  lifetimeMs,
  newAgentToken,
  newAgentTokensSecret,
  parseAgentTokenRecords,
  readAgentTokenRecords,
  withAgentTokenRecord,
  type AgentTokenRecord,
} from '../kubesphere/agent-token-secret.js'
import type {KubeSphereCluster} from '../kubesphere/cluster-object.js'
import {KUBESPHERE_NAMESPACE} from '../kubesphere/constants.js'
import {waitUntil} from '../kubesphere/wait.js'
import {redactor} from '../redact.js'
import {isProxyCluster} from '../tower/proxy/kubernetes/cluster-reconcile.js'

/**
 * How long a rotation may take: the kubelet takes up to about a minute to update the agent's token file
 * (its sync period plus its cache), the agent notices within its check interval, and the proxy steps on its passes.
 */
const ROTATION_TIMEOUT_MS = 5 * 60_000

/** What `agent-token rotate` did or would do. Part of the `--json` contract; it never holds a token. */
export interface AgentTokenRotateResult {
  context: string
  cluster: string
  /** requested: the proxy carries it out (no --wait, or a dry run); rotated: the agents are on the new token. */
  state: 'requested' | 'rotated'
  requestedAt: string
  lifetime?: string
  dryRun: boolean
  changes: EditOutcome[]
}

export interface RotateOptions {
  cluster: string
  /** A lifetime for the new token and those after it (`720h`); null: none any more; undefined: as it was. */
  lifetime: string | null | undefined
  wait: boolean
  waitTimeoutMs?: number | undefined
  dryRun: DryRun
  now?: Date
}

/**
 * Asks the host's ksctl proxy to rotate a proxy Cluster's agent token: a new token in Secret ksctl-agent-tokens,
 * referenced from the Cluster; the proxy takes it to the member through the tunnel, waits for the agents to move
 * to it, and only then makes it the Cluster's token. With `wait`, follows it until the old token is refused. A
 * rotation already under way is followed, not replaced (the member may hold its token already).
 */
export async function rotateAgentToken(
  host: ClusterClient,
  options: RotateOptions,
): Promise<AgentTokenRotateResult> {
  const now = options.now ?? new Date()
  const {cluster: name} = options
  if (options.lifetime !== undefined && options.lifetime !== null) {
    try {
      lifetimeMs(options.lifetime)
    } catch (error) {
      throw invalidInput(error instanceof Error ? error.message : String(error), ['e.g. --lifetime 720h'])
    }
  }
  const cluster = await requireProxyCluster(host, name)
  const runtime = await detectHostRuntime(host)
  if (runtime.runtime !== 'ksctl') {
    throw new KsctlError(
      `the host of context "${host.context}" runs KubeSphere's Tower proxy (${runtime.evidence}), which takes one token per cluster and cannot rotate it without cutting the agent off: nothing was changed`,
      {
        code: 'PRECONDITION_FAILED',
        context: host.context,
        suggestions: [
          `install ksctl's proxy first: ksctl proxy install --context ${host.context}`,
          `or replace the token by hand and re-apply the agent: set spec.connection.token of cluster ${name}, then ksctl member join ${name} --apply`,
        ],
      },
    )
  }
  const {records} = await readAgentTokenRecords(host)
  const underWay = records.get(name)
  const underWayState = underWay === undefined ? undefined : agentTokenState(name, underWay)
  const referenced = cluster.metadata?.annotations?.[AGENT_TOKEN_SECRET_ANNOTATION] === AGENT_TOKENS_SECRET
  const following = underWayState?.next !== undefined && referenced
  const next = following ? (underWayState.next ?? '') : newAgentToken()
  redactor.register(next)
  // A rotation under way keeps its token and progress; a --lifetime given now is taken into it all the same.
  const record: AgentTokenRecord = {
    ...(following ? withoutLifetime(underWay) : recordKept(underWay)),
    ...lifetimeOf(underWay, options.lifetime),
    ...(!following && {next, requestedAt: now.toISOString()}),
  }
  const edits: ObjectEdit<object>[] = [
    agentTokenRecordEdit(host, name, record),
    clusterReferenceEdit(host, name),
  ]
  for (const edit of edits) await requireAccess(editWrites(host, await previewEdit(edit)), options.dryRun)
  const changes: EditOutcome[] = []
  for (const edit of edits) changes.push(await runEdit(edit, options.dryRun))
  const result: AgentTokenRotateResult = {
    context: host.context,
    cluster: name,
    state: 'requested',
    requestedAt: record.requestedAt ?? now.toISOString(),
    ...(record.lifetime !== undefined && {lifetime: record.lifetime}),
    dryRun: options.dryRun !== false,
    changes,
  }
  if (!options.wait || options.dryRun !== false) return result
  await waitForRotation(host, name, next, options.waitTimeoutMs)
  return {...result, state: 'rotated'}
}

/** What a new request keeps of the record: the current token's start (the lifetime is {@link lifetimeOf}'s). */
function recordKept(record: AgentTokenRecord | undefined): AgentTokenRecord {
  return record?.issuedAt === undefined ? {} : {issuedAt: record.issuedAt}
}

function withoutLifetime(record: AgentTokenRecord | undefined): AgentTokenRecord {
  return Object.fromEntries(Object.entries(record ?? {}).filter(([key]) => key !== 'lifetime'))
}

/** The lifetime from now on: as it was (undefined), removed (null), or the one given. */
function lifetimeOf(
  record: AgentTokenRecord | undefined,
  lifetime: string | null | undefined,
): AgentTokenRecord {
  const kept = lifetime === undefined ? record?.lifetime : (lifetime ?? undefined)
  return kept === undefined ? {} : {lifetime: kept}
}

async function requireProxyCluster(host: ClusterClient, name: string): Promise<KubeSphereCluster> {
  const cluster = await host.findCustomObject<KubeSphereCluster>(ClusterResource, name)
  const object = {resource: 'clusters', group: 'cluster.kubesphere.io', name}
  if (cluster === undefined) {
    throw new KsctlError(
      `cluster ${name} is not on the host of context "${host.context}": nothing was changed`,
      {
        code: 'NOT_FOUND',
        context: host.context,
        object,
        suggestions: [`the clusters there: kubectl get clusters --context ${host.context}`],
      },
    )
  }
  if (!isProxyCluster(cluster)) {
    throw new KsctlError(
      `cluster ${name} does not connect through an agent (spec.connection.type ${cluster.spec?.connection?.type ?? 'unset'}, joinFederation ${String(cluster.spec?.joinFederation ?? false)}): it has no agent token to rotate; nothing was changed`,
      {code: 'PRECONDITION_FAILED', context: host.context, object},
    )
  }
  return cluster
}

/** Sets the Cluster's record in Secret ksctl-agent-tokens (made when it does not exist), every other key kept. */
function agentTokenRecordEdit(
  host: ClusterClient,
  cluster: string,
  record: AgentTokenRecord,
): ObjectEdit<DecodedSecret> {
  return {
    client: host,
    object: {resource: 'secrets', name: AGENT_TOKENS_SECRET, namespace: KUBESPHERE_NAMESPACE},
    summary: `ask for a new agent token of cluster ${cluster}`,
    read: () => host.findSecret(KUBESPHERE_NAMESPACE, AGENT_TOKENS_SECRET),
    change(current) {
      const data = withAgentTokenRecord(current?.data ?? {}, cluster, record)
      return current === undefined ? newAgentTokensSecret(KUBESPHERE_NAMESPACE, data) : {...current, data}
    },
    async write(desired, current, dryRun) {
      const stored =
        current === undefined
          ? dryRun
            ? undefined
            : await host.createSecret(desired)
          : await host.replaceSecret(desired, dryRun)
      return {...desired, metadata: stored?.metadata ?? desired.metadata}
    },
  }
}

/** The Cluster's reference to the Secret, the annotation ksctl's proxy acts on. */
function clusterReferenceEdit(host: ClusterClient, name: string): ObjectEdit<KubeSphereCluster> {
  return {
    client: host,
    object: {resource: 'clusters', group: 'cluster.kubesphere.io', name},
    summary: `reference Secret ${KUBESPHERE_NAMESPACE}/${AGENT_TOKENS_SECRET} from cluster ${name}`,
    read: () => host.findCustomObject<KubeSphereCluster>(ClusterResource, name),
    change(current) {
      if (current === undefined) return undefined
      const metadata = current.metadata ?? {}
      return {
        ...current,
        metadata: {
          ...metadata,
          annotations: {...metadata.annotations, [AGENT_TOKEN_SECRET_ANNOTATION]: AGENT_TOKENS_SECRET},
        },
      }
    },
    write: (desired, _current, dryRun) => host.replaceCustomObject(ClusterResource, desired, dryRun),
  }
}

/**
 * Follows the rotation until the Cluster holds the next token and the record has no next one: then every agent is
 * on it and the proxy refuses the old one. Shows what the proxy last found when it cannot go on.
 */
async function waitForRotation(
  host: ClusterClient,
  name: string,
  next: string,
  timeoutMs: number | undefined,
): Promise<void> {
  await waitUntil({
    what: `the agents of cluster ${name} to move to the new token`,
    defaultTimeoutMs: ROTATION_TIMEOUT_MS,
    timeoutMs,
    intervalMs: 2000,
    poll: async () => {
      const [cluster, secret] = await Promise.all([
        host.findCustomObject<KubeSphereCluster>(ClusterResource, name),
        host.findSecret(KUBESPHERE_NAMESPACE, AGENT_TOKENS_SECRET),
      ])
      const record = parseAgentTokenRecords(secret?.data ?? {}).get(name)
      const state = record === undefined ? undefined : agentTokenState(name, record)
      const done = cluster?.spec?.connection?.token === next && state?.next === undefined
      if (done) return {done, state: 'rotated: the old token is refused'}
      if (state?.next !== next) {
        throw new KsctlError(
          `the rotation of cluster ${name} was replaced by another one (ksctl agent-token rotate ran again): follow it with ksctl agent-token list`,
          {code: 'CONFLICT', context: host.context},
        )
      }
      const phase =
        state.deliveredAt === undefined
          ? "requested; the proxy writes the new token into the member's agent Secret"
          : 'the new token is on the member; waiting for its agents to reconnect with it'
      return {done, state: state.error === undefined ? phase : `${phase} (${state.error})`}
    },
    onTimeout: (last, limitMs) =>
      new KsctlError(
        `the agents of cluster ${name} did not move to the new token within ${String(Math.round(limitMs / 1000))}s: ${last}`,
        {
          code: 'TIMEOUT',
          context: host.context,
          suggestions: [
            'the rotation goes on in the proxy; the old token stays accepted until every agent is on the new one',
            `follow it: ksctl agent-token list --context ${host.context}`,
          ],
        },
      ),
  })
}
