import type http from 'node:http'
import {TLSSocket} from 'node:tls'

import {
  CHECK_PATH,
  EXCHANGE_PATH,
  JOIN_PATH_PREFIX,
  joinErrorCodes,
  MAX_REQUEST_BYTES,
  STATUS_PATH,
  type CheckResponse,
  type ExchangeResponse,
  type JoinErrorCode,
  type JoinRequest,
  type StatusResponse,
} from '../../join-token/exchange-protocol.js'
import {verifyPresented, type JoinTokenRecord, type Refusal} from '../../join-token/records.js'
import {readJoinTokens, verifyJoinToken, type StoredJoinTokens} from '../../join-token/store.js'
import type {ClusterClient} from '../../k8s/cluster-client.js'
import {ClusterResource} from '../../k8s/resources.js'
import {memberUidOf, type KubeSphereCluster} from '../../kubesphere/cluster-object.js'
import {readJwtSecret} from '../../kubesphere/join-preflight.js'
import type {Logger} from '../../log.js'
import {clusterHeader} from '../shared/agent-link.js'
import type {AgentListenerRequests} from './agent-listener.js'
import {FailureLimiter, tokensEqual} from './auth.js'
import type {ClusterRegistry} from './registry.js'

export interface JoinExchangeOptions {
  /** The host, where the join tokens, the Clusters and (3.x) kubesphere-config are. */
  client: ClusterClient
  registry: ClusterRegistry
  /** Where the join-token Secret is (the proxy's namespace, kubesphere-system). */
  namespace: string
  log: Logger
  limiter?: FailureLimiter
  now?: () => Date
}

/**
 * The join exchange (src/tunnel/JOIN-EXCHANGE.md), on the agent listener, which a member reaches and verifies by
 * the proxy's pin: a member presents a join token and gets the cluster's agent token (and on 3.x the host's
 * jwtSecret); with that agent token it may then ask for its Cluster's status. A token is used at most once
 * (see verifyJoinToken). Neither a token nor what the exchange answers is ever logged: only the token's public ID.
 */
export class JoinExchange implements AgentListenerRequests {
  private readonly limiter: FailureLimiter
  private readonly now: () => Date
  /** The join tokens as last read for a blocked source, and when (ms): see knownToBlockedSource. */
  private recordsForBlocked: {readAtMs: number; stored: StoredJoinTokens} | undefined

  constructor(private readonly options: JoinExchangeOptions) {
    this.limiter = options.limiter ?? new FailureLimiter()
    this.now = options.now ?? (() => new Date())
  }

  handles(path: string): boolean {
    return path.startsWith(JOIN_PATH_PREFIX)
  }

  serve(request: http.IncomingMessage, response: http.ServerResponse): void {
    this.route(request, response).catch((error: unknown) => {
      this.options.log.warn('the join exchange could not read or write the host', {
        reason: error instanceof Error ? error.message : String(error),
      })
      fail(
        response,
        'host_error',
        'the proxy could not read or write what the join needs on the host; try again',
      )
    })
  }

  private async route(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const path = (request.url ?? '').split('?')[0]
    if (!(request.socket instanceof TLSSocket)) {
      fail(
        response,
        'tls_required',
        'the join exchange is served over TLS only; this proxy serves agents over plain ws://',
      )
      return
    }
    if (path === STATUS_PATH && request.method === 'GET') {
      await this.status(request, response)
      return
    }
    if ((path === CHECK_PATH || path === EXCHANGE_PATH) && request.method === 'POST') {
      await this.join(request, response, path === EXCHANGE_PATH)
      return
    }
    fail(response, 'bad_request', `no ${request.method ?? ''} ${path ?? ''} here`)
  }

  private async join(
    request: http.IncomingMessage,
    response: http.ServerResponse,
    use: boolean,
  ): Promise<void> {
    const {log} = this.options
    const source = request.socket.remoteAddress ?? 'unknown'
    const body = await readJoinRequest(request)
    if (typeof body === 'string') {
      fail(response, 'bad_request', body)
      return
    }
    // A correct token is never refused for what others at the same address did (issue 12's rule for agent
    // tokens holds for join tokens too: behind one NAT, five bad attempts would keep every member out). What a
    // blocked source is denied is the work a failure makes: its tokens are matched against records read at most
    // once a second, and only a token that matches one goes on to the API server.
    const blockedMs = this.limiter.blockedFor(source)
    if (blockedMs > 0 && !(await this.knownToBlockedSource(body))) {
      fail(response, 'rate_limited', 'too many failed join attempts from this address', {
        'Retry-After': String(Math.ceil(blockedMs / 1000)),
      })
      return
    }
    // Not registered with the redactor: nothing here logs it, and a long-running process would keep every string
    // a caller sent (and have it redacted from every later line).
    const tokenId = /^[a-z2-7]{6}(?=\.)/.exec(body.token)?.[0]
    let agentToken = ''
    let jwtSecret: string | undefined
    const verified = await verifyJoinToken(this.options.client, body, {
      use,
      now: this.now,
      namespace: this.options.namespace,
      precheck: async (record) => {
        const refusal = await this.precheck(record, body.memberUid)
        if (refusal !== undefined || !use) return refusal
        // Read before the token is used: a failure here leaves it usable.
        agentToken = this.options.registry.get(record.cluster)?.token ?? ''
        jwtSecret = record.edition === '3.x' ? await readJwtSecret(this.options.client, '3.x') : undefined
        return undefined
      },
    })
    if ('refusal' in verified) {
      const {code, message} = verified.refusal
      if (code === 'token_malformed' || code === 'token_invalid') this.limiter.recordFailure(source)
      log.warn(use ? 'refused a join token' : 'a join token check failed', {
        code,
        ...(tokenId !== undefined && {tokenId}),
        cluster: sanitize(body.cluster),
        source,
      })
      fail(response, code, message)
      return
    }
    const {record} = verified
    if (!use) {
      sendJson(response, 200, {
        cluster: record.cluster,
        edition: record.edition,
        ...(record.hostClusterName !== undefined && {hostClusterName: record.hostClusterName}),
        expiresAt: record.expiresAt,
      } satisfies CheckResponse)
      return
    }
    log.info('a member used a join token', {
      tokenId: record.id,
      cluster: record.cluster,
      memberUid: body.memberUid,
      source,
    })
    sendJson(response, 200, {
      cluster: record.cluster,
      edition: record.edition,
      ...(record.hostClusterName !== undefined && {hostClusterName: record.hostClusterName}),
      agentToken,
      ...(jwtSecret !== undefined && {jwtSecret}),
    } satisfies ExchangeResponse)
  }

  /** What must hold besides the token: its Cluster as it was, initialized, and this member's or nobody's. */
  private async precheck(record: JoinTokenRecord, memberUid: string): Promise<Refusal | undefined> {
    const {client, registry} = this.options
    const clusters = await client.listCustomObjects<KubeSphereCluster>(ClusterResource)
    const cluster = clusters.find((candidate) => candidate.metadata?.name === record.cluster)
    if (cluster === undefined || cluster.metadata?.uid !== record.clusterUid) {
      return {
        code: 'cluster_not_found',
        message: `cluster "${record.cluster}", which join token ${record.id} was issued for, is no longer registered on the host`,
      }
    }
    const recorded = memberUidOf(cluster)
    if (recorded !== undefined && recorded !== memberUid) {
      return {
        code: 'member_mismatch',
        message: `cluster "${record.cluster}" on the host stands for another member (kube-system UID ${recorded}), not this one (${memberUid})`,
      }
    }
    const other = clusters.find(
      (candidate) => candidate.metadata?.name !== record.cluster && memberUidOf(candidate) === memberUid,
    )
    if (other !== undefined) {
      return {
        code: 'member_mismatch',
        message: `this member (kube-system UID ${memberUid}) is already registered on the host as "${other.metadata?.name ?? '?'}"`,
      }
    }
    const token = registry.get(record.cluster)?.token
    if (token === undefined || token === '') {
      return {
        code: 'cluster_not_initialized',
        message: `the proxy has not initialized cluster "${record.cluster}" yet; try again in a few seconds`,
      }
    }
    return undefined
  }

  /**
   * Whether a blocked source's token is one the host issued (in any state: the normal path then says which). The
   * records are read again only when the last read is a second old, so a blocked source's guesses cost the API
   * server one read a second at most; a token issued within that second is answered `rate_limited` with a
   * Retry-After, which the member side waits out, and then found.
   */
  private async knownToBlockedSource(body: JoinRequest): Promise<boolean> {
    const nowMs = this.now().getTime()
    if (this.recordsForBlocked === undefined || nowMs - this.recordsForBlocked.readAtMs >= 1000) {
      this.recordsForBlocked = {
        readAtMs: nowMs,
        stored: await readJoinTokens(this.options.client, this.options.namespace),
      }
    }
    const verified = verifyPresented(
      this.recordsForBlocked.stored.records,
      body.token,
      body.cluster,
      this.now(),
    )
    return !('refusal' in verified && ['token_malformed', 'token_invalid'].includes(verified.refusal.code))
  }

  /** The Cluster's conditions, for the holder of its agent token: how a member follows its join to Ready. */
  private async status(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const source = request.socket.remoteAddress ?? 'unknown'
    const name = headerValue(request, clusterHeader) ?? ''
    const presented = /^Bearer (.+)$/.exec(headerValue(request, 'authorization') ?? '')?.[1] ?? ''
    const expected = this.options.registry.get(name)?.token
    // A correct token is always served; only failures count, and only failures are slowed down.
    if (
      !tokensEqual(presented, expected ?? '\0no such cluster') ||
      expected === undefined ||
      presented === ''
    ) {
      this.limiter.recordFailure(source)
      const blockedMs = this.limiter.blockedFor(source)
      if (blockedMs > 0) {
        fail(response, 'rate_limited', 'too many failed requests from this address', {
          'Retry-After': String(Math.ceil(blockedMs / 1000)),
        })
      } else {
        fail(response, 'unauthorized', 'unknown cluster or wrong agent token')
      }
      return
    }
    const cluster = await this.options.client.findCustomObject<KubeSphereCluster>(ClusterResource, name)
    const conditions = Object.fromEntries(
      (cluster?.status?.conditions ?? []).map((condition) => [condition.type, condition.status]),
    )
    sendJson(response, 200, {
      cluster: name,
      conditions,
      ready: conditions.Ready === 'True',
    } satisfies StatusResponse)
  }
}

/** The request body as a JoinRequest, or what is wrong with it. */
async function readJoinRequest(request: http.IncomingMessage): Promise<JoinRequest | string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_REQUEST_BYTES) return `the request body is larger than ${MAX_REQUEST_BYTES} bytes`
    chunks.push(chunk)
  }
  let body: unknown
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    return 'the request body is not JSON'
  }
  const fields = body as Partial<Record<keyof JoinRequest, unknown>> | null
  if (
    typeof fields !== 'object' ||
    fields === null ||
    typeof fields.cluster !== 'string' ||
    typeof fields.token !== 'string' ||
    typeof fields.memberUid !== 'string'
  ) {
    return 'the request body must be {"cluster": string, "token": string, "memberUid": string}'
  }
  return {cluster: fields.cluster, token: fields.token, memberUid: fields.memberUid}
}

function fail(
  response: http.ServerResponse,
  code: JoinErrorCode,
  message: string,
  headers: Record<string, string> = {},
): void {
  sendJson(response, joinErrorCodes[code], {error: {code, message}}, headers)
}

function sendJson(
  response: http.ServerResponse,
  status: number,
  body: object,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body)
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  })
  response.end(text)
}

function headerValue(request: http.IncomingMessage, name: string): string | undefined {
  const value = request.headers[name]
  return Array.isArray(value) ? value[0] : value
}

function sanitize(value: string): string {
  return value.replace(/[^a-z0-9.-]/gi, '?').slice(0, 64)
}
