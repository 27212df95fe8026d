import {formatDuration} from '../cli/duration.js'
import {preconditionFailed} from '../errors.js'
import {editWrites, requireAccess} from '../k8s/access-review.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {runEdit, type DryRun} from '../k8s/dry-run.js'
import {previewEdit, type EditOutcome} from '../k8s/object-edit.js'
import {ClusterResource} from '../k8s/resources.js'
import {hashJoinToken, generateJoinToken} from '../join-token/token.js'
import type {JoinTokenRecord} from '../join-token/records.js'
import {addJoinTokenEdit} from '../join-token/store.js'
import {log} from '../log.js'
import {certificateFingerprint} from '../pki/certificates.js'
import {SERVING_SECRET} from '../tower/proxy/kubernetes/serving-secret.js'
import {planClusterApply} from './cluster-apply.js'
import type {KubeSphereCluster} from './cluster-object.js'
import {KUBESPHERE_NAMESPACE} from './constants.js'
import {detectKubeSphere, requireComplete, type Edition} from './detect.js'
import {detectHostRuntime} from './agent-runtime.js'
import {requireHost, resolveProxyAddress} from './join-preflight.js'
import {desiredCluster, waitForToken} from './member-join.js'

export const DEFAULT_JOIN_TOKEN_TTL_MS = 60 * 60 * 1000
/** A join token is a short-lived invitation; a day is the longest it may live (Karmada's default). */
export const MAX_JOIN_TOKEN_TTL_MS = 24 * 60 * 60 * 1000

export interface HostInviteOptions {
  name: string
  labels: Record<string, string>
  provider?: string | undefined
  description?: string | undefined
  creator: string
  /** Where members reach the proxy, instead of the host's published address. */
  proxyAddress?: string | undefined
  ttlMs: number
  dryRun: DryRun
  /** The user's `--timeout`, when given: the limit of the wait for the proxy. */
  waitTimeoutMs?: number | undefined
  now?: () => Date
}

/** The member-side command, and what it is made of. The token is in it: it is what the user asked for. */
export interface Invitation {
  /** `ID.SECRET`; a placeholder on a dry run. */
  token: string
  registerCommand: string
}

/** What `ksctl host invite` did or would do. Part of the `--json` contract. */
export interface HostInviteResult {
  name: string
  hostContext: string
  edition: Edition
  /** Where the member reaches ksctl's proxy (https). */
  proxyAddress: string
  /** `sha256:<hex>` of the proxy's serving key. */
  proxyPin: string
  /** The join token's public ID (for `join-token list` and `revoke`); undefined on a dry run. */
  tokenId?: string
  expiresAt?: string
  dryRun: boolean
  changes: EditOutcome[]
  invitation: Invitation
  warnings: string[]
}

const TOKEN_PLACEHOLDER = '<made-by-the-real-run>'

/**
 * The host's half of a two-sided join: checks the host (a KubeSphere host running ksctl's proxy, with an address
 * members can reach and the proxy's kept serving key), registers the proxy Cluster (or keeps the one registered
 * before), waits until the proxy initialized it, and makes a join token for it. What the member needs besides the
 * token is public: the proxy's address and the pin of its key. The agent token and the jwtSecret never leave
 * the host here; the member gets them from the proxy, once, for the token.
 */
export async function hostInvite(host: ClusterClient, options: HostInviteOptions): Promise<HostInviteResult> {
  const now = options.now ?? (() => new Date())
  const info = await detectKubeSphere(host)
  requireComplete(info)
  const edition = requireHost(host, info)
  await requireKsctlProxy(host)
  const warnings: string[] = []
  const proxyAddress = memberProxyAddress(resolveProxyAddress(host, info, options.proxyAddress), warnings)
  const proxyPin = await servingPin(host)
  const existing = await host.findCustomObject<KubeSphereCluster>(ClusterResource, options.name)
  if (existing !== undefined) requireProxyCluster(host, existing)

  // The plan, before any write: a new Cluster (tried as a server dry run) and the token's record.
  const clusterApply =
    existing === undefined
      ? planClusterApply(host, desiredCluster(options, undefined), undefined, '<the member>')
      : undefined
  const placeholder = tokenRecord(
    generateJoinToken(),
    options.name,
    existing,
    edition,
    info.hostClusterName,
    host,
    now(),
    options.ttlMs,
  )
  const tokenPreview = await previewEdit(addJoinTokenEdit(host, placeholder, now()))
  await requireAccess([...(clusterApply?.writes ?? []), ...editWrites(host, tokenPreview)], options.dryRun)
  await clusterApply?.validate()

  const changes: EditOutcome[] = []
  if (clusterApply !== undefined) {
    changes.push(await clusterApply.apply(options.dryRun))
    if (!options.dryRun) log.info(`host: Cluster "${options.name}" is registered (connection type proxy)`)
  } else {
    log.info(`host: Cluster "${options.name}" is registered already; inviting its member again`)
  }
  const base = {name: options.name, hostContext: host.context, edition, proxyAddress, proxyPin}
  if (options.dryRun !== false) {
    changes.push(
      options.dryRun === 'server'
        ? await runEdit(addJoinTokenEdit(host, placeholder, now()), 'server')
        : tokenPreview,
    )
    return {
      ...base,
      dryRun: true,
      changes,
      invitation: {
        token: TOKEN_PLACEHOLDER,
        registerCommand: registerCommand(options.name, TOKEN_PLACEHOLDER, proxyAddress, proxyPin),
      },
      warnings,
    }
  }

  const cluster = await waitForToken(host, options.name, options.waitTimeoutMs, 'ksctl')
  const token = generateJoinToken()
  const record = tokenRecord(
    token,
    options.name,
    cluster,
    edition,
    info.hostClusterName,
    host,
    now(),
    options.ttlMs,
  )
  changes.push(await runEdit(addJoinTokenEdit(host, record, now()), false))
  log.info(
    `host: join token ${record.id} for "${options.name}" expires at ${record.expiresAt} (in ${formatDuration(options.ttlMs)}) and is good for one join`,
  )
  return {
    ...base,
    tokenId: record.id,
    expiresAt: record.expiresAt,
    dryRun: false,
    changes,
    invitation: {
      token: token.text,
      registerCommand: registerCommand(options.name, token.text, proxyAddress, proxyPin),
    },
    warnings,
  }
}

/** The member-side command, ready to run with the member's kubeconfig. */
export function registerCommand(name: string, token: string, proxyAddress: string, pin: string): string {
  return `ksctl member register ${name} --proxy ${proxyAddress} --pin ${pin} --token ${token} --wait`
}

function tokenRecord(
  token: ReturnType<typeof generateJoinToken>,
  name: string,
  cluster: KubeSphereCluster | undefined,
  edition: Edition,
  hostClusterName: string | undefined,
  host: ClusterClient,
  now: Date,
  ttlMs: number,
): JoinTokenRecord {
  return {
    id: token.id,
    hash: hashJoinToken(token),
    cluster: name,
    clusterUid: cluster?.metadata?.uid ?? '',
    edition,
    ...(hostClusterName !== undefined && {hostClusterName}),
    createdAt: toSeconds(now),
    expiresAt: toSeconds(new Date(now.getTime() + ttlMs)),
    createdBy: `context ${host.context}`,
  }
}

/**
 * The exchange is ksctl's proxy's: a host whose tower Service still sends agents to Tower's proxy cannot trade a
 * join token, and the safe ways that remain are said.
 */
async function requireKsctlProxy(host: ClusterClient): Promise<void> {
  const {runtime, evidence} = await detectHostRuntime(host)
  if (runtime === 'ksctl') return
  throw preconditionFailed(
    `the host of context "${host.context}" runs KubeSphere's Tower proxy (${evidence}), which has no join exchange: ` +
      'a member cannot trade a join token for its agent token there',
    host.context,
    [
      `install ksctl's proxy on the host, then invite again: ksctl proxy install --context ${host.context}`,
      `or, from a machine with both kubeconfigs: ksctl member join NAME --host-context ${host.context} --member-context <member> --apply`,
      `or render the agent here and carry the file to the member over a channel you trust (it holds the agent token): ` +
        `ksctl member join NAME --host-context ${host.context} --member-context <member> --output agent.yaml`,
    ],
  )
}

/**
 * ksctl's proxy serves agents over TLS, and the member pins its key: the address is https. A published
 * `http://` address (Tower's convention) names the same host and port.
 */
function memberProxyAddress(address: string, warnings: string[]): string {
  const url = new URL(address)
  if (url.protocol === 'https:') return url.origin
  const https = `https://${url.host}`
  warnings.push(
    `the host publishes ${address}; ksctl's proxy serves agents over TLS there, so members are given ${https} ` +
      `(set it where KubeSphere reads it: ksctl proxy set-address ${https})`,
  )
  return https
}

/** The pin of the proxy's kept serving key: what the member checks the proxy by before it sends the token. */
async function servingPin(host: ClusterClient): Promise<string> {
  const secret = await host.findSecret(KUBESPHERE_NAMESPACE, SERVING_SECRET)
  const certificate = secret?.data['tls.crt']
  if (certificate === undefined || certificate.trim() === '') {
    throw preconditionFailed(
      `secret ${KUBESPHERE_NAMESPACE}/${SERVING_SECRET} in context "${host.context}" holds no serving certificate: ` +
        "ksctl's proxy has not started on this host yet, so there is no key for the member to pin",
      host.context,
      [
        `is ksctl's proxy running? kubectl --context ${host.context} -n ${KUBESPHERE_NAMESPACE} get deployment ksctl-tower-proxy`,
        'then run the same command again',
      ],
    )
  }
  return certificateFingerprint(certificate)
}

function requireProxyCluster(host: ClusterClient, cluster: KubeSphereCluster): void {
  const name = cluster.metadata?.name ?? ''
  if (cluster.spec?.joinFederation === true && cluster.spec.connection?.type === 'proxy') return
  throw preconditionFailed(
    `cluster "${name}" is registered on the host of context "${host.context}" with connection type ` +
      `${cluster.spec?.connection?.type ?? 'none'}; a join token registers a member through the proxy`,
    host.context,
    [`choose another name, or look at it: kubectl --context ${host.context} get cluster ${name} -o yaml`],
  )
}

/** RFC 3339 to the second: what a person reads in the list and in messages. */
function toSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z')
}
