import {ApiException} from '@kubernetes/client-node'

import type {KsctlError} from '../../../errors.js'
import {isTransient} from '../../../k8s/api-errors.js'
import type {Logger} from '../../../log.js'
import {Backoff} from '../../shared/backoff.js'

/** The longest wait between attempts, a Retry-After included: what a controller's work queue allows (client-go). */
const longestWaitMs = 30_000

/**
 * Whether an API failure is one to wait out ({@link isTransient}: HTTP 429, as API Priority and Fairness answers
 * or a new CRD's storage while it is "(re)initializing", 5xx, a time-out, an unreachable server), and how long the
 * server asked to wait. Anything else (unauthorized, forbidden, not found, invalid) stays wrong until someone
 * changes it.
 */
export function transientFailure(error: unknown): {retryAfterMs: number | undefined} | undefined {
  if (!isTransient(error)) return undefined
  const cause = (error as KsctlError).cause
  const headers = (cause instanceof ApiException ? cause.headers : {}) as Record<string, string | undefined>
  const seconds = Number(headers['retry-after'])
  return {retryAfterMs: Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined}
}

export interface RetryOptions {
  log: Logger
  /** What is being done, for the log line: "list Clusters". */
  what: string
  backoff?: Backoff
  sleep?: (ms: number) => Promise<void>
}

/**
 * Runs `attempt` until it succeeds, as a controller does: a transient failure (see {@link transientFailure}) is
 * retried after an exponential backoff with jitter (0.5 s up to 30 s), or after the server's Retry-After when
 * that is longer, up to 30 s; any other failure is thrown at once.
 */
export async function retryTransient<T>(attempt: () => Promise<T>, options: RetryOptions): Promise<T> {
  const backoff = options.backoff ?? new Backoff({initialMs: 500, maxMs: longestWaitMs, factor: 2})
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)))
  for (;;) {
    try {
      return await attempt()
    } catch (error) {
      const transient = transientFailure(error)
      if (transient === undefined) throw error
      const waitMs = Math.min(Math.max(transient.retryAfterMs ?? 0, backoff.next()), longestWaitMs)
      options.log.warn(`cannot ${options.what} yet; retrying`, {
        inMs: waitMs,
        reason: error instanceof Error ? error.message : String(error),
      })
      await sleep(waitMs)
    }
  }
}
