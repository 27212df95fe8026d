import {setTimeout as sleep} from 'node:timers/promises'

import {formatDuration} from '../cli/duration.js'
import {KsctlError, preconditionFailed} from '../errors.js'
import {interruption} from '../interruption.js'
import {editWrites, requireAccess} from '../k8s/access-review.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {runEdit, type DryRun} from '../k8s/dry-run.js'
import type {ManifestObject} from '../k8s/manifest-objects.js'
import {previewEdit, type EditOutcome} from '../k8s/object-edit.js'
import {clusterHeader} from '../tower/shared/agent-link.js'
import {JoinExchangeRefusal, pinnedRequest, type PinnedProxy} from '../join-token/exchange-client.js'
import {
  CHECK_PATH,
  EXCHANGE_PATH,
  STATUS_PATH,
  type CheckResponse,
  type ExchangeResponse,
  type JoinRequest,
  type StatusResponse,
} from '../join-token/exchange-protocol.js'
import {parseJoinToken} from '../join-token/token.js'
import {log} from '../log.js'
import {redactor} from '../redact.js'
import {renderKsctlAgentManifest} from './agent-manifest.js'
import {ksctlProxyAddress} from './agent-runtime.js'
import {kubeSystemUid} from './cluster-identity.js'
import {KUBESPHERE_NAMESPACE} from './constants.js'
import {detectKubeSphere, requireComplete, type Edition} from './detect.js'
import {requireJoinableMember} from './join-preflight.js'
import {JOIN_WAIT_MS} from './join-wait.js'
import {agentWrites, applyAgent, memberInstallerEdit} from './member-join.js'
import {waitUntil} from './wait.js'

export interface MemberRegisterOptions {
  name: string
  /** `ID.SECRET`, as `ksctl host invite` printed it. */
  token: string
  proxy: PinnedProxy
  agentImage?: string | undefined
  replicas?: number | undefined
  dryRun: DryRun
  /** `--timeout`: each request's time-out, to the proxy as to the member's API server. */
  requestTimeoutMs: number
}

/** What `ksctl member register` did or would do. Part of the `--json` contract. */
export interface MemberRegisterResult {
  name: string
  memberContext: string
  /** The host's edition, as the proxy told it. */
  edition: Edition
  proxyAddress: string
  proxyPin: string
  tokenId: string
  dryRun: boolean
  /** Changes on the member, in the order they were made. */
  changes: EditOutcome[]
  /** Condition type → status of the host's Cluster, as the proxy reports it (with --wait). */
  conditions: Record<string, string>
  ready: boolean
  warnings: string[]
}

const AGENT_TOKEN_PLACEHOLDER = '<the agent token, from the proxy for the join token>'
const JWT_SECRET_PLACEHOLDER = "<the host's jwtSecret, from the proxy for the join token>"
/** How often a refused-for-now exchange (Retry-After, an uninitialized Cluster) is tried again at most. */
const RETRIES = 5

/**
 * The member's half of a two-sided join, with the member's credentials only. In order, so that a bad token, a
 * wrong pin or a member that cannot join changes nothing:
 * 1. the proxy is verified by its pin and the token checked (not used) there: wrong pin, unknown, expired, used,
 *    revoked or another cluster's token stop here;
 * 2. the member is checked as `member join` checks it (edition, role, not joined elsewhere), and every write
 *    the join makes is checked against the user's rights;
 * 3. the token is traded, once, for the agent token (and the host's jwtSecret on 3.x), over the verified link;
 * 4. the member-side steps of `member join`: the jwtSecret and the member role (3.x), the agent.
 * Following the join to Ready is {@link followRegistration}: the member holds no host credentials, so the
 * proxy answers it for the holder of the agent token.
 */
export async function memberRegister(
  member: ClusterClient,
  options: MemberRegisterOptions,
): Promise<{result: MemberRegisterResult; agentToken: string | undefined}> {
  const token = parseJoinToken(options.token)
  if (token === undefined) {
    throw new KsctlError(
      'the join token (--token) is not of the form ID.SECRET that ksctl host invite prints',
      {
        code: 'INVALID_INPUT',
        suggestions: ['copy the whole command ksctl host invite printed on the host'],
      },
    )
  }
  redactor.register(token.text)
  const [info, memberUid] = await Promise.all([detectKubeSphere(member), kubeSystemUid(member)])
  requireComplete(info)
  if (info.role === 'host') {
    throw preconditionFailed(
      `context "${member.context}" is a KubeSphere host; a host cannot join another host as a member`,
      member.context,
      ["run it with the member cluster's context: --context <member>"],
    )
  }
  const request: JoinRequest = {cluster: options.name, token: token.text, memberUid}
  const check = await askProxy<CheckResponse>(options, CHECK_PATH, request)
  log.info(
    `proxy ${options.proxy.url.origin}: verified by its pin; join token ${token.id} is good for "${options.name}" until ${check.expiresAt}`,
  )
  requireJoinableMember(member, info, check.edition, {hostClusterName: check.hostClusterName}, options.name)

  // The plan, before the token is used: every write on the member, checked against the user's rights.
  const installerPreview =
    check.edition === '3.x'
      ? await previewEdit(memberInstallerEdit(member, JWT_SECRET_PLACEHOLDER))
      : undefined
  const placeholderAgent = registerAgentManifest(options, AGENT_TOKEN_PLACEHOLDER)
  await requireAccess(
    [
      ...(installerPreview === undefined ? [] : editWrites(member, installerPreview)),
      ...(await agentWrites(member, placeholderAgent)),
    ],
    options.dryRun,
  )
  const base = {
    name: options.name,
    memberContext: member.context,
    edition: check.edition,
    proxyAddress: options.proxy.url.origin,
    proxyPin: options.proxy.pin,
    tokenId: token.id,
    conditions: {},
    ready: false,
    warnings: [] as string[],
  }
  if (options.dryRun !== false) {
    // The token is not used on a dry run: the member's writes are shown with placeholders for what it brings.
    const changes: EditOutcome[] = []
    if (installerPreview !== undefined) {
      changes.push(
        options.dryRun === 'client'
          ? installerPreview
          : await runEdit(memberInstallerEdit(member, JWT_SECRET_PLACEHOLDER), 'server'),
      )
    }
    changes.push(...(await applyAgent(member, placeholderAgent, options.dryRun, base.warnings)))
    return {result: {...base, dryRun: true, changes}, agentToken: undefined}
  }

  const exchanged = await askProxy<ExchangeResponse>(options, EXCHANGE_PATH, request)
  redactor.register(exchanged.agentToken)
  redactor.register(exchanged.jwtSecret)
  log.info(
    `proxy: join token ${token.id} used; the member got its agent token${exchanged.jwtSecret === undefined ? '' : " and the host's jwtSecret"}`,
  )
  const changes: EditOutcome[] = []
  try {
    if (check.edition === '3.x') {
      if (exchanged.jwtSecret === undefined) {
        throw new KsctlError("the proxy's answer holds no jwtSecret for a KubeSphere 3.x host", {
          code: 'INTERNAL',
        })
      }
      const outcome = await runEdit(memberInstallerEdit(member, exchanged.jwtSecret), false)
      changes.push(outcome)
      if (outcome.changed) log.info(`member: ${outcome.summary}`)
    }
    changes.push(
      ...(await applyAgent(
        member,
        registerAgentManifest(options, exchanged.agentToken),
        false,
        base.warnings,
      )),
    )
    log.info(`member: agent applied in namespace ${KUBESPHERE_NAMESPACE}`)
  } catch (error) {
    throw afterExchange(error, options.name)
  }
  return {result: {...base, dryRun: false, changes}, agentToken: exchanged.agentToken}
}

/**
 * The agent manifest of a registered member: ksctl's agent (the exchange exists only on ksctl's proxy), dialling
 * the address the member verified, and trusting the proxy by the pin it verified (not by a CA it never saw).
 */
function registerAgentManifest(options: MemberRegisterOptions, agentToken: string): ManifestObject[] {
  return renderKsctlAgentManifest({
    clusterName: options.name,
    token: agentToken,
    proxyAddress: ksctlProxyAddress(options.proxy.url.origin, '--proxy'),
    trust: {pin: options.proxy.pin},
    image: options.agentImage,
    replicas: options.replicas,
  })
}

/**
 * `--wait`: asks the proxy, with the agent token the member just got, for the host's view of the Cluster until it
 * is Ready: Ready is set once the host reached the member through the tunnel this agent opened.
 */
export async function followRegistration(
  proxy: PinnedProxy,
  name: string,
  agentToken: string,
  timeouts: {requestTimeoutMs: number; waitTimeoutMs: number | undefined},
): Promise<Pick<MemberRegisterResult, 'conditions' | 'ready'>> {
  let status: StatusResponse | undefined
  await waitUntil({
    what: `cluster "${name}" to become Ready on the host`,
    defaultTimeoutMs: JOIN_WAIT_MS,
    timeoutMs: timeouts.waitTimeoutMs,
    poll: async () => {
      status = (await pinnedRequest(
        proxy,
        {
          method: 'GET',
          path: STATUS_PATH,
          headers: {[clusterHeader]: name, authorization: `Bearer ${agentToken}`},
        },
        timeouts.requestTimeoutMs,
      ).catch((error: unknown) => {
        throw error instanceof JoinExchangeRefusal ? refusalError(error, name, proxy) : error
      })) as StatusResponse
      const reached = ['Initialized', 'AgentAvailable', 'Ready'].filter(
        (type) => status?.conditions[type] === 'True',
      )
      return {
        done: status.ready,
        state: status.ready
          ? `host: cluster "${name}" is Ready`
          : `host: cluster "${name}" ${reached.length === 0 ? 'registered' : reached.join(', ')}; waiting for ${reached.includes('AgentAvailable') ? 'Ready' : 'the agent to connect'}`,
      }
    },
    onTimeout: (last, limitMs) =>
      new KsctlError(`cluster "${name}" did not become Ready within ${formatDuration(limitMs)} (${last})`, {
        code: 'TIMEOUT',
        suggestions: [
          `the agent on this cluster: kubectl -n ${KUBESPHERE_NAMESPACE} get deployment,pods; and its log`,
          'on the host: ksctl doctor NAME shows what the host sees',
        ],
      }),
  })
  return {conditions: status?.conditions ?? {}, ready: status?.ready === true}
}

/** A check or an exchange; what the proxy asks to be tried again later (Retry-After, not initialized) is. */
async function askProxy<T>(options: MemberRegisterOptions, path: string, body: JoinRequest): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await pinnedRequest(options.proxy, {method: 'POST', path, body}, options.requestTimeoutMs)) as T
    } catch (error) {
      if (!(error instanceof JoinExchangeRefusal)) throw error
      const again = error.code === 'rate_limited' || error.code === 'cluster_not_initialized'
      if (!again || attempt > RETRIES) throw refusalError(error, options.name, options.proxy)
      const waitMs = Math.min(error.retryAfterMs ?? 2000 * attempt, 60_000)
      log.info(`proxy: ${error.message}; trying again in ${formatDuration(waitMs)}`)
      await sleep(waitMs, undefined, {signal: interruption.signal}).catch(() => undefined)
      interruption.throwIfInterrupted()
    }
  }
}

/** The proxy's refusal in the user's words: what it means for them and what to do; nothing was changed. */
function refusalError(refusal: JoinExchangeRefusal, name: string, proxy: PinnedProxy): KsctlError {
  const newToken = `ask the host's admin for a new one: ksctl host invite ${name} --context <host>`
  const suggestions: Partial<Record<JoinExchangeRefusal['code'], string[]>> = {
    token_malformed: ['copy the whole command ksctl host invite printed on the host'],
    token_invalid: ['compare the token (--token) with what ksctl host invite printed', newToken],
    token_wrong_cluster: [
      'register under the name the token was issued for (the name in the printed command)',
      newToken,
    ],
    token_expired: [newToken, 'a longer life: ksctl host invite NAME --ttl 4h'],
    token_used: [newToken],
    token_revoked: [newToken],
    cluster_not_found: ['the Cluster was removed from the host after the token was made', newToken],
    member_mismatch: [
      'on the host: ksctl status --context <host> shows which member each Cluster stands for',
    ],
    tls_required: ["the host's proxy runs with --insecure-plain; run it with TLS (its default)"],
    rate_limited: ['wait a minute and run the same command again'],
    cluster_not_initialized: ["is ksctl's proxy running on the host? then run the same command again"],
  }
  return new KsctlError(
    `the proxy at ${proxy.url.origin} refused: ${refusal.message} (${refusal.code}); nothing was changed on this cluster`,
    {
      code:
        refusal.code === 'host_error' || refusal.code === 'rate_limited'
          ? 'API_ERROR'
          : 'PRECONDITION_FAILED',
      suggestions: suggestions[refusal.code] ?? [
        "run the same command again; if it persists, look at the proxy's log on the host",
      ],
    },
  )
}

/** A member write that failed once the token was used: the token is gone, and a re-run needs a new one. */
function afterExchange(error: unknown, name: string): unknown {
  if (!(error instanceof KsctlError)) return error
  return new KsctlError(`${error.message}; the join token is used now`, {
    code: error.code,
    exitCode: error.exitCode,
    ...(error.context === undefined ? {} : {context: error.context}),
    ...(error.object === undefined ? {} : {object: error.object}),
    cause: error,
    suggestions: [
      ...error.suggestions,
      `then ask the host's admin for a new join token (ksctl host invite ${name} --context <host>) and run register again: it continues where it stopped`,
    ],
  })
}
