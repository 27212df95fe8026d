import {setTimeout as sleep} from 'node:timers/promises'

import {progress} from '../cli/progress.js'
import type {KsctlError} from '../errors.js'
import {interruption} from '../interruption.js'
import {isTransient} from '../k8s/api-errors.js'

export interface WaitOptions {
  /** What is awaited, for the progress display and an interruption report: "the installer to enable multicluster". */
  what: string
  /** How long the awaited thing may take in practice: the limit when the user gave no `--timeout`. */
  defaultTimeoutMs: number
  /** The user's `--timeout`, when given: the limit instead of the default; 0 waits until done or interrupted. */
  timeoutMs?: number | undefined
  /** The longest pause between polls; polling starts at a tenth of it and backs off to it. */
  intervalMs?: number
  /** One poll: `done`, and a short state line, shown whenever it changes. */
  poll: () => Promise<{done: boolean; state: string}>
  /** Turns the timeout into the error the user sees (what to look at next); `limitMs` is the limit applied. */
  onTimeout: (lastState: string, limitMs: number) => KsctlError
}

const DEFAULT_INTERVAL_MS = 1000
const BACKOFF_FACTOR = 1.5

/** The limit a wait applies: the user's `--timeout` when given, else the wait's own default. */
export function waitLimitMs(options: Pick<WaitOptions, 'defaultTimeoutMs' | 'timeoutMs'>): number {
  return options.timeoutMs ?? options.defaultTimeoutMs
}

/**
 * Polls until done or the deadline, showing each new state (a spinner on a terminal, else a line on stderr):
 * the waiting paths' one loop. A poll that fails transiently (429, 5xx, no connection, one request's time-out)
 * is a state, retried until the deadline; any other failure ends the wait. An interruption ends it at once.
 */
export async function waitUntil(options: WaitOptions): Promise<string> {
  const limitMs = waitLimitMs(options)
  const deadline = limitMs === 0 ? Infinity : Date.now() + limitMs
  const longest = options.intervalMs ?? DEFAULT_INTERVAL_MS
  let pause = longest / 10
  /** What the last successful poll said, and what is shown: that, or a transient failure after it. */
  let answered = ''
  let shown: string
  progress.begin(options.what, limitMs)
  try {
    for (;;) {
      let done = false
      try {
        ;({done, state: answered} = await options.poll())
        shown = answered
      } catch (error) {
        if (!isTransient(error)) throw error
        const failure = `retrying after: ${(error as KsctlError).message}`
        shown = answered === '' ? failure : `${answered}; ${failure}`
      }
      progress.update(shown)
      if (done) {
        progress.end(shown)
        return shown
      }
      if (Date.now() >= deadline) throw options.onTimeout(shown, limitMs)
      await sleep(Math.min(pause, deadline - Date.now()), undefined, {signal: interruption.signal}).catch(
        () => undefined,
      )
      interruption.throwIfInterrupted()
      pause = Math.min(longest, pause * BACKOFF_FACTOR)
    }
  } finally {
    progress.stop()
  }
}
