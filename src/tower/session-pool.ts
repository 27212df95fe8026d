import type {TunnelSession, TunnelStream} from '../tunnel/index.js'
import {TunnelError} from '../tunnel/index.js'

/** No session of the cluster could take a new stream. */
export class NoSessionError extends Error {
  override readonly name = 'NoSessionError'

  constructor(readonly cluster: string) {
    super(`no agent of cluster ${cluster} is connected`)
  }
}

/** Failures after which another session of the same cluster may still succeed. */
const tryNextCodes = new Set([
  'TUNNEL_ERR_GOING_AWAY',
  'TUNNEL_ERR_STREAM_LIMIT',
  'TUNNEL_ERR_SESSION_CLOSED',
  'TUNNEL_ERR_STREAM_IDS_EXHAUSTED',
])

export interface PoolEvents {
  /** The number of live sessions of `cluster` changed. */
  changed(cluster: string, sessions: number): void
}

/**
 * The live agent sessions of every cluster. Several agents of one cluster each have a session; a new stream
 * goes to the live session with the fewest open streams, and falls over to the next one if that session is
 * going away or full.
 */
export class SessionPool {
  private readonly sessions = new Map<string, Set<TunnelSession>>()

  constructor(private readonly events: PoolEvents) {}

  add(cluster: string, session: TunnelSession): void {
    const set = this.sessions.get(cluster) ?? new Set()
    this.sessions.set(cluster, set)
    set.add(session)
    session.once('close', () => {
      set.delete(session)
      if (set.size === 0 && this.sessions.get(cluster) === set) this.sessions.delete(cluster)
      this.events.changed(cluster, set.size)
    })
    this.events.changed(cluster, set.size)
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

  /** The cluster's live sessions, fewest open streams first. */
  candidates(cluster: string): TunnelSession[] {
    return [...(this.sessions.get(cluster) ?? [])]
      .filter((session) => !session.closed)
      .sort((a, b) => a.stats.streamsActive - b.stats.streamsActive)
  }

  async openStream(cluster: string, destination: string, signal?: AbortSignal): Promise<TunnelStream> {
    let lastError: unknown = new NoSessionError(cluster)
    for (const session of this.candidates(cluster)) {
      try {
        return await session.openStream(destination, signal === undefined ? {} : {signal})
      } catch (error) {
        if (!(error instanceof TunnelError) || !tryNextCodes.has(error.code)) throw error
        lastError = error
      }
    }
    throw lastError instanceof TunnelError ? new NoSessionError(cluster) : lastError
  }

  /** Ends every session of a cluster now (it was removed or its token changed). */
  closeCluster(cluster: string): void {
    for (const session of [...(this.sessions.get(cluster) ?? [])]) session.close()
  }

  /** Graceful shutdown of every session; resolves when all ended (each within its grace period). */
  async goAwayAll(): Promise<void> {
    const all = [...this.sessions.values()].flatMap((set) => [...set])
    await Promise.all(all.map((session) => session.goAway()))
  }
}
