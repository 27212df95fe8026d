import {createHash} from 'node:crypto'
import type {IncomingMessage} from 'node:http'
import net from 'node:net'
import tls from 'node:tls'

import WebSocket from 'ws'

import {invalidInput, KsctlError} from '../../errors.js'
import type {Logger} from '../../log.js'
import {
  SUBPROTOCOL,
  TunnelSession,
  webSocketOptions,
  webSocketTransport,
  type Transport,
  type TunnelSessionError,
} from '../../tunnel/index.js'
import {serveOpen, type Destination} from './agent-dial.js'
import {clusterHeader, connectPath} from '../shared/agent-link.js'
import {Backoff} from '../shared/backoff.js'
import {openConnectTunnel, proxyAddress} from './http-connect.js'
import type {TowerMetrics} from '../shared/metrics.js'

export interface AgentOptions {
  name: string
  /**
   * The tunnel token, read before every connection attempt and every `tokenCheckMs` while a session is live: a
   * `--token-file` may be rotated, and a changed token is handed over to (see {@link TowerAgent}).
   */
  token: () => Promise<string>
  /** How often a live session's token is read again to notice a rotation; default 10 s. */
  tokenCheckMs?: number
  /**
   * How long the session of the previous token may still serve its open streams after a handover; default 1 h,
   * as kube-apiserver ends a watch within 2 × `--min-request-timeout` (60 min by default).
   */
  handoverGraceMs?: number
  /** `ws://` or `wss://` URL of the proxy's agent listener, as {@link normalizeProxyUrl} returns it. */
  proxyUrl: URL
  /** `--insecure-plain`: the only way a `ws://` proxy URL is taken (see {@link checkPlainLink}). */
  insecurePlain?: boolean
  /** PEM of the CA that signed the proxy's certificate; undefined: the system CAs (or the pin alone). */
  proxyCa?: string
  /** `sha256:<hex>` of the proxy certificate's public key (SPKI). */
  proxyPin?: string
  /** An `http://` proxy to reach the proxy through (CONNECT), as `egressProxyFor` reads it from the environment. */
  egressProxy?: URL
  keepaliveMs: number
  /**
   * Retries after a failed attempt before giving up, as Tower's `--max-retry`: the first attempt and this many
   * retries failing in a row end the agent. A session that opened ends a run of failures. 0: retry for ever.
   */
  maxRetry: number
  /** The longest wait between attempts, a proxy's Retry-After included. */
  maxRetryIntervalMs: number
  destinations: Map<string, Destination>
  log: Logger
  metrics: TowerMetrics
  initialRetryMs?: number
  /** A session that lasted this long was a good connection: the next wait is the initial one again (10 s). */
  goodConnectionMs?: number
  random?: () => number
  goAwayGraceMs?: number
  handshakeTimeoutMs?: number
}

/** A session just opened, and its end (listened for from the start: ws may deliver messages in the tick of 'open'). */
interface OpenedSession {
  session: TunnelSession
  ended: Promise<TunnelSessionError | undefined>
}

type DialOutcome =
  | ({kind: 'open'} & OpenedSession)
  | {kind: 'rejected'; status: number; retryAfterMs: number | undefined}
  | {kind: 'failed'; reason: string}

type AttemptOutcome =
  Exclude<DialOutcome, {kind: 'open'}> | {kind: 'ended'; lastedMs: number; reason: string | undefined}

/** The session that takes new streams, and the token it authenticated with. */
interface LiveSession extends OpenedSession {
  token: string
}

/** A session that lasted this long was a good connection: the next failure starts the backoff again. */
const defaultGoodConnectionMs = 10_000
const defaultTokenCheckMs = 10_000
const defaultHandoverGraceMs = 3_600_000

/**
 * Tower's proxy address, normalised as Tower does: http→ws, https→wss, the default port made explicit, and
 * the path of the agent endpoint added.
 */
export function normalizeProxyUrl(text: string): URL {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw invalidInput(`--proxy-server "${text}" is not a URL`, [
      'e.g. --proxy-server=https://tower.example.com:8080',
    ])
  }
  const schemes: Record<string, string> = {'http:': 'ws:', 'ws:': 'ws:', 'https:': 'wss:', 'wss:': 'wss:'}
  const scheme = schemes[url.protocol]
  if (scheme === undefined)
    throw invalidInput(`--proxy-server must be http(s):// or ws(s)://, got ${url.protocol}`)
  const port = url.port === '' ? (scheme === 'wss:' ? '443' : '80') : url.port
  return new URL(`${scheme}//${url.hostname}:${port}${connectPath}`)
}

/**
 * Plain `ws://` carries the token and every request (the client identities with them) unencrypted, and no one can
 * tell the proxy from an impostor: the agent takes it only when started with `--insecure-plain`, as the proxy serves
 * it only with its own `--insecure-plain`, so that both sides say so. The flag with a `wss://` URL is refused too,
 * rather than mean nothing.
 */
export function checkPlainLink(proxyUrl: URL, insecurePlain: boolean): void {
  const plain = proxyUrl.protocol === 'ws:'
  if (plain && !insecurePlain) {
    throw invalidInput(
      `--proxy-server http://${proxyUrl.host} is plain ws://: the tunnel token and every request would cross the network unencrypted, to a proxy no one verified`,
      [
        "give the proxy's https:// address with --proxy-ca or --proxy-pin",
        'or, on a network you trust, start both ksctl tower proxy and ksctl tower agent with --insecure-plain',
      ],
    )
  }
  if (!plain && insecurePlain) {
    throw invalidInput('--insecure-plain is for an http:// (ws://) --proxy-server; this one is https://', [
      'drop --insecure-plain',
    ])
  }
}

/** `sha256:<hex>` of a certificate's SubjectPublicKeyInfo, the form `--proxy-pin` takes. */
export function publicKeyPin(certificate: {
  publicKey: {export(options: {type: 'spki'; format: 'der'}): Buffer}
}): string {
  const der = certificate.publicKey.export({type: 'spki', format: 'der'})
  return `sha256:${createHash('sha256').update(der).digest('hex')}`
}

/**
 * The agent's connect loop: dial the proxy, serve streams while the session lives, and on any failure try
 * again with exponential backoff and jitter. It never exits on a transient error; only `--max-retry`
 * consecutive failures, or `stop()`, end it.
 *
 * While a session lives, the agent reads its token again every `tokenCheckMs` (and at a SIGHUP). When the token
 * changed (the proxy rotated it), the agent HANDS OVER: it dials a new session with the new token while the old
 * one keeps serving, makes the new one live once it is open, and sends GO_AWAY on the old one with a grace long
 * enough for its watches to end on their own. A new token the proxy refuses, or a dial that fails, leaves the old
 * session live until the next check. The connection never went down, so none of this is a reconnect.
 */
export class TowerAgent {
  private readonly backoff: Backoff
  /** The live session: it takes new streams, and `ready` speaks of it. */
  private session: TunnelSession | undefined
  /** Sessions of previous tokens, draining their streams after a handover. */
  private readonly handedOver = new Set<TunnelSession>()
  private connecting: WebSocket | undefined
  private tunnelling: AbortController | undefined
  private stopping = false
  private wake: (() => void) | undefined
  /** SIGHUP came while an attempt was under way: if it fails, retry without a wait. */
  private retryRequested = false
  private loop: Promise<void> | undefined

  constructor(private readonly options: AgentOptions) {
    checkPlainLink(options.proxyUrl, options.insecurePlain === true)
    this.backoff = new Backoff({
      initialMs: options.initialRetryMs ?? 1000,
      maxMs: options.maxRetryIntervalMs,
      random: options.random,
    })
    if (options.proxyUrl.protocol === 'ws:') {
      options.log.warn(
        'connecting to the proxy over plain ws:// (--insecure-plain): the tunnel and its token are not encrypted',
      )
    }
    if (options.egressProxy !== undefined) {
      options.log.info('connecting to the proxy through an HTTP proxy', {
        httpProxy: proxyAddress(options.egressProxy),
      })
    }
  }

  /** Starts the loop; the promise settles when the agent stopped (rejects when --max-retry ran out). */
  start(): Promise<void> {
    this.loop ??= this.run()
    return this.loop
  }

  /** Holds a live session whose proxy answers its PINGs in time. */
  get ready(): boolean {
    return this.session !== undefined && !this.session.closed && this.session.responsive
  }

  /**
   * SIGHUP: connect now. A backoff wait ends at once. An attempt under way is not cut short (it is the retry
   * asked for, and ends within the handshake timeout); if it fails, the next one starts without a wait. With a
   * live session, the token is checked now (a handover under way is left to finish).
   */
  retryNow(): void {
    if (this.wake !== undefined) this.wake()
    else if (!this.ready) this.retryRequested = true
  }

  /**
   * SIGTERM: no new streams (GO_AWAY), open ones finish within the grace period, then the loop ends. A dial under
   * way (a handover's too) is cut short, and sessions handed over drain within the same grace, not their long one.
   */
  async stop(): Promise<void> {
    this.stopping = true
    this.wake?.()
    this.tunnelling?.abort()
    this.connecting?.terminate()
    const sessions = [...this.handedOver, ...(this.session === undefined ? [] : [this.session])]
    await Promise.all(sessions.map((session) => session.goAway()))
    await this.loop?.catch(() => undefined)
  }

  /** Read through a method: `stop()` may flip the flag while the loop awaits, which narrowing cannot see. */
  private stopRequested(): boolean {
    return this.stopping
  }

  private async run(): Promise<void> {
    const {log, metrics, maxRetry} = this.options
    let first = true
    // Attempts that failed in a row, for --max-retry. A session that opened resets the count however short it
    // was (the attempt did not fail), while the backoff keeps growing after short sessions (see delayAfter).
    let failures = 0
    while (!this.stopping) {
      if (!first) metrics.reconnects.inc()
      first = false
      const outcome = await this.attempt()
      if (this.stopRequested()) return
      failures = outcome.kind === 'ended' ? 0 : failures + 1
      const backoffMs = this.delayAfter(outcome)
      if (maxRetry > 0 && failures > maxRetry) {
        throw new KsctlError(
          `gave up after ${failures} failed connection attempts in a row (the first and --max-retry ${maxRetry} retries)`,
          {
            code: 'UNREACHABLE',
            suggestions: ['check --proxy-server, the proxy, and the network between them'],
          },
        )
      }
      // A SIGHUP during an attempt that failed asked for a retry now; one during a session is void.
      const delayMs = this.retryRequested && outcome.kind !== 'ended' ? 0 : backoffMs
      this.retryRequested = false
      log.info('reconnecting to the proxy', {inMs: delayMs, attempt: this.backoff.attempts})
      await this.sleep(delayMs)
    }
  }

  private delayAfter(outcome: AttemptOutcome): number {
    const {log} = this.options
    switch (outcome.kind) {
      case 'ended':
        if (outcome.lastedMs >= (this.options.goodConnectionMs ?? defaultGoodConnectionMs))
          this.backoff.reset()
        log.warn('session with the proxy ended', {reason: outcome.reason ?? 'graceful'})
        return this.backoff.next()
      case 'rejected':
        if (outcome.status === 401 || outcome.status === 403) {
          log.error('the proxy rejected this agent (401): the token or the cluster name is wrong', {
            cluster: this.options.name,
          })
          return this.backoff.longest()
        }
        log.warn('the proxy refused the connection', {status: outcome.status})
        // No wait is longer than --max-retry-interval, not even one Retry-After asks for: the operator set that
        // bound on how long a member stays cut off once the proxy is back, while Retry-After comes from whatever
        // answers the address (a load balancer or ingress in front of the proxy, a misconfigured proxy) and
        // could park the agent for hours. Below the bound it is obeyed (our proxy sends its rate-limit block).
        return Math.min(
          Math.max(outcome.retryAfterMs ?? 0, this.backoff.next()),
          this.options.maxRetryIntervalMs,
        )
      case 'failed':
        log.warn('cannot connect to the proxy', {reason: outcome.reason})
        return this.backoff.next()
    }
  }

  /**
   * Waits `ms`, or until `retryNow()`/`stop()` wake it, or until `session` (if given) closes; `wake` is set only
   * while a wait is under way.
   */
  private sleep(ms: number, session?: TunnelSession): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        session?.off('close', done)
        this.wake = undefined
        resolve()
      }
      const timer = setTimeout(done, ms)
      session?.once('close', done)
      this.wake = done
    })
  }

  private async attempt(): Promise<AttemptOutcome> {
    const token = await this.readToken()
    if (token === undefined) return {kind: 'failed', reason: 'cannot read the token file'}
    const outcome = await this.dial(token)
    if (outcome.kind !== 'open') return outcome
    this.options.log.info('connected to the proxy', {cluster: this.options.name})
    return this.hold(this.goLive(outcome, token))
  }

  private readToken(): Promise<string | undefined> {
    return this.options.token().catch(() => undefined)
  }

  /**
   * Serves until the live session ends, checking the token meanwhile and handing over when it changed. However
   * many handovers it saw, this was one connection: it lasted from the first session's start to the last's end.
   */
  private async hold(first: LiveSession): Promise<AttemptOutcome> {
    const openedAt = performance.now()
    let live = first
    const holding = (): boolean => !this.stopRequested() && !live.session.closed
    while (holding()) {
      await this.sleep(this.options.tokenCheckMs ?? defaultTokenCheckMs, live.session)
      if (holding()) live = await this.handOver(live)
    }
    const reason = await live.ended
    return {kind: 'ended', lastedMs: performance.now() - openedAt, reason: reason?.message}
  }

  /**
   * One token check: when the token changed, a new session with it replaces `live`, which drains. Returns the
   * session that is live afterwards. A refusal or a failure leaves `live` as it is, until the next check.
   */
  private async handOver(live: LiveSession): Promise<LiveSession> {
    const {log, metrics} = this.options
    const token = await this.readToken()
    if (token === undefined) {
      log.warn('cannot read the token file: the tunnel stays on the token it has')
      return live
    }
    if (token === live.token) return live
    const outcome = await this.dial(token)
    if (outcome.kind === 'open') {
      const next = this.goLive(outcome, token)
      this.drain(live.session)
      metrics.tokenHandover('succeeded')
      return next
    }
    // stop() cut the dial short: nothing failed.
    if (this.stopRequested()) return live
    if (outcome.kind === 'rejected') {
      metrics.tokenHandover('refused')
      log.warn(
        'the proxy refused the new token: the tunnel stays on the previous one, the handover is tried again at the next check',
        {status: outcome.status},
      )
    } else {
      metrics.tokenHandover('failed')
      log.warn(
        'cannot connect with the new token: the tunnel stays on the previous one, the handover is tried again at the next check',
        {reason: outcome.reason},
      )
    }
    return live
  }

  /** Makes the session the one that takes new streams and that readiness speaks of, for as long as it lives. */
  private goLive(opened: OpenedSession, token: string): LiveSession {
    const {metrics} = this.options
    const {session} = opened
    // One the proxy ended in the tick it opened in (a protocol error) never goes live; its `ended` has settled.
    if (!session.closed) {
      this.session = session
      metrics.agentConnected.set(1)
      session.once('close', () => {
        if (this.session !== session) return
        this.session = undefined
        metrics.agentConnected.set(0)
      })
    }
    return {...opened, token}
  }

  /** GO_AWAY on the session of the previous token, with a grace as long as its streams (watches) may last. */
  private drain(session: TunnelSession): void {
    const {log, handoverGraceMs = defaultHandoverGraceMs} = this.options
    log.info('handed the tunnel over to a new token: the previous session drains its open streams', {
      streams: session.stats.streamsActive,
      graceSeconds: Math.round(handoverGraceMs / 1000),
    })
    this.handedOver.add(session)
    session.once('close', (reason) => {
      this.handedOver.delete(session)
      log.info('the session of the previous token closed', {reason: reason?.message ?? 'graceful'})
    })
    void session.goAway({graceMs: handoverGraceMs})
  }

  /** Connects and authenticates with `token`: an open session, or why there is none. */
  private async dial(token: string): Promise<DialOutcome> {
    const {options} = this
    let tunnel: net.Socket | undefined
    try {
      tunnel = await this.tunnel()
    } catch (error) {
      return {kind: 'failed', reason: error instanceof Error ? error.message : String(error)}
    }
    if (this.stopRequested()) {
      tunnel?.destroy()
      return {kind: 'failed', reason: 'stopping'}
    }
    return new Promise((resolve) => {
      const socket = new WebSocket(options.proxyUrl, SUBPROTOCOL, {
        ...webSocketOptions,
        headers: {authorization: `Bearer ${token}`, [clusterHeader]: options.name},
        handshakeTimeout: options.handshakeTimeoutMs ?? 15_000,
        followRedirects: false,
        ...this.connector(tunnel),
        ...(options.proxyUrl.protocol === 'wss:' && {generateMask: unmaskedOverTls}),
      })
      this.connecting = socket
      const transport = webSocketTransport(socket)
      let failure = 'connection closed'
      let rejected: {status: number; retryAfterMs: number | undefined} | undefined
      socket.on('error', (error) => (failure = error.message))
      socket.once('unexpected-response', (_request, response: IncomingMessage) => {
        rejected = {status: response.statusCode ?? 0, retryAfterMs: retryAfterMs(response)}
        response.resume()
        // Aborts the handshake; ws then reports 'close', which settles this dial.
        socket.terminate()
      })
      const closedBeforeOpen = (): void => {
        this.connecting = undefined
        resolve(rejected === undefined ? {kind: 'failed', reason: failure} : {kind: 'rejected', ...rejected})
      }
      socket.once('close', closedBeforeOpen)
      socket.once('open', () => {
        // From now on the session reports the end of the connection.
        socket.off('close', closedBeforeOpen)
        this.connecting = undefined
        const session = this.newSession(transport)
        const ended = new Promise<TunnelSessionError | undefined>((settle) => session.once('close', settle))
        resolve({kind: 'open', session, ended})
      })
    })
  }

  private newSession(transport: Transport): TunnelSession {
    const {options} = this
    const session = new TunnelSession(transport, {
      role: 'agent',
      pingIntervalMs: options.keepaliveMs,
      ...(options.goAwayGraceMs !== undefined && {goAwayGraceMs: options.goAwayGraceMs}),
      onOpen: (request) => serveOpen(request, {cluster: options.name, ...options}),
    })
    session.on('bufferLimit', (stream, heldBytes) =>
      options.log.warn(
        'reset a stream whose upstream stopped reading: the session held more than its budget',
        {
          destination: stream.destination,
          heldBytes,
        },
      ),
    )
    return session
  }

  /** The CONNECT tunnel through the egress proxy; undefined when the agent dials the proxy directly. */
  private async tunnel(): Promise<net.Socket | undefined> {
    const {egressProxy, proxyUrl, handshakeTimeoutMs = 15_000} = this.options
    // A stop() that came while the token was read had no tunnel to abort: do not open one now.
    if (egressProxy === undefined || this.stopRequested()) return undefined
    // normalizeProxyUrl made the port explicit, but URL drops a scheme's default port again.
    const port = proxyUrl.port || (proxyUrl.protocol === 'wss:' ? '443' : '80')
    this.tunnelling = new AbortController()
    try {
      return await openConnectTunnel({
        proxy: egressProxy,
        target: `${proxyUrl.hostname}:${port}`,
        timeoutMs: handshakeTimeoutMs,
        signal: this.tunnelling.signal,
      })
    } finally {
      this.tunnelling = undefined
    }
  }

  /** ws's createConnection: our verified TLS for wss://, over the tunnel if any; for ws:// the tunnel itself. */
  private connector(tunnel: net.Socket | undefined): {createConnection?: typeof net.createConnection} {
    if (this.options.proxyUrl.protocol === 'wss:') return {createConnection: this.secureConnector(tunnel)}
    return tunnel === undefined ? {} : {createConnection: () => tunnel}
  }

  /**
   * Connects TLS ourselves and checks the proxy (CA and/or pin) before the WebSocket client may write: the
   * socket stays corked until the check passed, so the upgrade request, and the token in it, is only ever
   * written to a verified proxy.
   */
  private secureConnector(tunnel: net.Socket | undefined): typeof net.createConnection {
    const {proxyCa, proxyPin, handshakeTimeoutMs = 15_000} = this.options
    // Typed as net.createConnection for ws; the WebSocket client only ever calls it with an options object.
    return (options: net.NetConnectOpts | number | string): net.Socket => {
      if (typeof options !== 'object') throw new TypeError('expected connection options')
      const host = 'host' in options && typeof options.host === 'string' ? options.host : 'localhost'
      const socket = tls.connect({
        // Over a tunnel, host still names the peer the certificate must match: without it Node would check
        // the name the tunnel's socket dialled (the HTTP proxy's) or localhost.
        ...(tunnel !== undefined && {socket: tunnel}),
        host,
        port: 'port' in options ? options.port : 443,
        servername: net.isIP(host) === 0 ? host : undefined,
        ALPNProtocols: ['http/1.1'],
        ...(proxyCa !== undefined && {ca: proxyCa}),
        // With a pin alone the pin is the proxy's identity; with a CA (or neither) the chain must verify too.
        rejectUnauthorized: proxyPin === undefined || proxyCa !== undefined,
      })
      socket.setNoDelay(true)
      socket.cork()
      socket.setTimeout(handshakeTimeoutMs, () => socket.destroy(new Error('tls handshake timed out')))
      socket.once('secureConnect', () => {
        socket.setTimeout(0)
        const certificate = socket.getPeerX509Certificate()
        if (proxyPin !== undefined && (certificate === undefined || publicKeyPin(certificate) !== proxyPin)) {
          socket.destroy(new Error('the proxy certificate does not match --proxy-pin'))
          return
        }
        socket.uncork()
      })
      return socket
    }
  }
}

/**
 * A zero WebSocket mask, which ws then skips, over TLS only. Masking (RFC 6455 §10.3) keeps a client's bytes
 * from being read as HTTP by an intermediary that sees them; TLS already hides them from any intermediary.
 * Copying and XOR-ing every byte the agent sends cost it a third of its time in bulk transfers.
 */
function unmaskedOverTls(mask: Buffer): void {
  mask.fill(0)
}

function retryAfterMs(response: IncomingMessage): number | undefined {
  const seconds = Number(response.headers['retry-after'])
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined
}
