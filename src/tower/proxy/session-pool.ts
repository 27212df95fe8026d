import {createHash} from 'node:crypto'

import type {Logger} from '../../log.js'
import type {TunnelSession, TunnelStream} from '../../tunnel/index.js'
import {OpenRefusedError, TunnelError, WireErrorCode} from '../../tunnel/index.js'

/** No session of the cluster could take a new stream: none is connected, or none answers. */
export class NoSessionError extends Error {
  override readonly name = 'NoSessionError'

  constructor(
    readonly cluster: string,
    /** Agents are connected, but none answers its PINGs in time. */
    readonly unresponsive = false,
  ) {
    super(
      unresponsive
        ? `the agent of cluster ${cluster} is connected but does not answer (a PING went unanswered): the member may be overloaded or cut off`
        : `no agent of cluster ${cluster} is connected`,
    )
  }
}

/** What the pool keeps of the token a session authenticated with: its SHA-256, so the token itself is not kept. */
export function credentialOf(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

/** Failures of a whole session: another session may do, and the caller hears "no agent" if none does. */
const sessionFailureCodes = new Set([
  'TUNNEL_ERR_GOING_AWAY',
  'TUNNEL_ERR_STREAM_LIMIT',
  'TUNNEL_ERR_SESSION_CLOSED',
  'TUNNEL_ERR_STREAM_IDS_EXHAUSTED',
  'TUNNEL_ERR_UNRESPONSIVE',
])

/** Refusals that say the agent is leaving or full, not that it cannot serve the destination. */
const loadRefusals = new Set<number>([WireErrorCode.RefusedStream, WireErrorCode.StreamLimit])

export interface PoolEvents {
  /** The number of live sessions of `cluster` changed. */
  changed(cluster: string, sessions: number): void
}

export interface SessionPoolOptions {
  log?: Logger
  /** The first time out of the rotation after a failed open; it doubles with each failure in a row. */
  ejectionBaseMs?: number
  ejectionMaxMs?: number
  now?: () => number
}

interface Ejection {
  failures: number
  until: number
}

/**
 * The live agent sessions of every cluster. Several agents of one cluster each have a session; a new stream goes
 * to the session with the fewest open streams among those in the rotation, and an open that is refused or goes
 * unanswered is tried on the next session. Nothing of the request has left the proxy before the agent accepts a
 * stream (PROTOCOL.md §5.1), so any request can be opened again elsewhere.
 *
 * A session is out of the rotation while its agent does not answer a PING in time (unresponsive, PROTOCOL.md §7),
 * until it is heard from again: no stream is opened on it, and when no other is left the open fails at once. For
 * one destination, a session is also out of the rotation after an open to it failed, for a time that doubles with
 * each failure in a row (1 s, 2 s, … 30 s: outlier ejection, as Envoy does it) until an open succeeds; such a
 * session is still tried, last, when no other is left. Without that, an agent whose destination refuses at once
 * always had the fewest open streams and got every new stream.
 */
export class SessionPool {
  private readonly sessions = new Map<string, Set<TunnelSession>>()
  private readonly ejections = new WeakMap<TunnelSession, Map<string, Ejection>>()
  private readonly credentials = new WeakMap<TunnelSession, string>()
  private readonly ejectionBaseMs: number
  private readonly ejectionMaxMs: number
  private readonly now: () => number

  constructor(
    private readonly events: PoolEvents,
    private readonly options: SessionPoolOptions = {},
  ) {
    this.ejectionBaseMs = options.ejectionBaseMs ?? 1000
    this.ejectionMaxMs = options.ejectionMaxMs ?? 30_000
    this.now = options.now ?? (() => performance.now())
  }

  /**
   * A session of `cluster` that authenticated with `credential` (a digest of its token, never the token: see
   * {@link credentialOf}), which {@link presence} and {@link closeSessionsExcept} tell sessions apart by.
   */
  add(cluster: string, session: TunnelSession, credential: string): void {
    const set = this.sessions.get(cluster) ?? new Set()
    this.sessions.set(cluster, set)
    set.add(session)
    this.credentials.set(session, credential)
    const onUnresponsive = (): void =>
      this.options.log?.warn('an agent stopped answering: its session is out of the rotation', {cluster})
    const onResponsive = (): void =>
      this.options.log?.info('an agent answers again: its session is back in the rotation', {cluster})
    // An agent that hands its tunnel over to a new token sends GO_AWAY on the old session, which then only
    // finishes its streams: the cluster's presence changes although no session ended yet.
    const onGoingAway = (): void => this.events.changed(cluster, set.size)
    session.on('unresponsive', onUnresponsive)
    session.on('responsive', onResponsive)
    session.on('goingAway', onGoingAway)
    session.once('close', () => {
      session.off('unresponsive', onUnresponsive)
      session.off('responsive', onResponsive)
      session.off('goingAway', onGoingAway)
      set.delete(session)
      if (set.size === 0 && this.sessions.get(cluster) === set) this.sessions.delete(cluster)
      this.events.changed(cluster, set.size)
    })
    this.events.changed(cluster, set.size)
  }

  /**
   * The live sessions of `cluster`: how many, and of those that still take new streams (not going away), how many
   * authenticated with `nextCredential` and how many with another.
   */
  presence(
    cluster: string,
    nextCredential: string | undefined,
  ): {sessions: number; servingOnNext: number; servingOnOthers: number} {
    const live = this.live(cluster)
    const serving = live.filter((session) => !session.peerGoingAway)
    const onNext = serving.filter((session) => this.credentials.get(session) === nextCredential).length
    return {sessions: live.length, servingOnNext: onNext, servingOnOthers: serving.length - onNext}
  }

  count(cluster: string): number {
    return this.sessions.get(cluster)?.size ?? 0
  }

  clusters(): string[] {
    return [...this.sessions.keys()]
  }

  /** Open streams of a cluster, over all its sessions. */
  streamsOpen(cluster: string): number {
    let total = 0
    for (const session of this.sessions.get(cluster) ?? []) total += session.stats.streamsActive
    return total
  }

  /**
   * The order in which a new stream to `destination` tries the cluster's live, responsive sessions: those in the
   * rotation for it, fewest open streams first; then those out of it, the soonest back first.
   */
  candidates(cluster: string, destination?: string): TunnelSession[] {
    const now = this.now()
    const live = this.live(cluster).filter((session) => session.responsive && !session.peerGoingAway)
    const ejectedUntil = (session: TunnelSession): number =>
      destination === undefined ? 0 : (this.ejections.get(session)?.get(destination)?.until ?? 0)
    const rotation = live
      .filter((session) => ejectedUntil(session) <= now)
      .sort((a, b) => a.stats.streamsActive - b.stats.streamsActive)
    const ejected = live
      .filter((session) => ejectedUntil(session) > now)
      .sort((a, b) => ejectedUntil(a) - ejectedUntil(b))
    return [...rotation, ...ejected]
  }

  async openStream(cluster: string, destination: string, signal?: AbortSignal): Promise<TunnelStream> {
    const noSession = (): NoSessionError =>
      new NoSessionError(
        cluster,
        this.live(cluster).some((session) => !session.responsive),
      )
    let lastError: unknown = noSession()
    for (const session of this.candidates(cluster, destination)) {
      try {
        const stream = await session.openStream(destination, {signal})
        this.ejections.get(session)?.delete(destination)
        return stream
      } catch (error) {
        if (signal?.aborted === true || !(error instanceof TunnelError)) throw error
        if (!sessionFailureCodes.has(error.code)) this.eject(cluster, session, destination, error)
        lastError = error
      }
    }
    // The last agent's own refusal (not allowed, cannot dial) says more than "no agent".
    const sessionFailure = lastError instanceof TunnelError && sessionFailureCodes.has(lastError.code)
    throw sessionFailure ? noSession() : lastError
  }

  /**
   * Ends now every session of a cluster whose credential is not among `accepted` (the cluster was removed, or its
   * token was replaced), but for those whose agent is already going away: it handed its tunnel over to a new token
   * and takes no new stream on the old one, whose open streams (a watch) finish as they would have.
   */
  closeSessionsExcept(cluster: string, accepted: ReadonlySet<string>): void {
    for (const session of [...(this.sessions.get(cluster) ?? [])]) {
      const credential = this.credentials.get(session)
      if (!session.peerGoingAway && (credential === undefined || !accepted.has(credential))) session.close()
    }
  }

  /** Graceful shutdown of every session; resolves when all ended (each within its grace period). */
  async goAwayAll(): Promise<void> {
    const all = [...this.sessions.values()].flatMap((set) => [...set])
    await Promise.all(all.map((session) => session.goAway()))
  }

  private live(cluster: string): TunnelSession[] {
    return [...(this.sessions.get(cluster) ?? [])].filter((session) => !session.closed)
  }

  /** After an open to `destination` failed on `session`: out of the rotation for it, for longer each time. */
  private eject(cluster: string, session: TunnelSession, destination: string, error: TunnelError): void {
    if (error instanceof OpenRefusedError && loadRefusals.has(error.wireCode)) return
    const entries = this.ejections.get(session) ?? new Map<string, Ejection>()
    this.ejections.set(session, entries)
    const entry = entries.get(destination) ?? {failures: 0, until: 0}
    entry.failures++
    const forMs = Math.min(this.ejectionBaseMs * 2 ** (entry.failures - 1), this.ejectionMaxMs)
    entry.until = this.now() + forMs
    entries.set(destination, entry)
    this.options.log?.warn('an agent failed to open a stream: its session is out of the rotation for it', {
      cluster,
      destination,
      forMs,
      reason: error.message,
    })
  }
}
