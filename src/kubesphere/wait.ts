import {KsctlError} from '../errors.js'
import {log} from '../log.js'

export interface WaitOptions {
  /** What is awaited, for the timeout message: "the installer to enable multicluster". */
  what: string
  timeoutMs: number
  /** The longest pause between polls; polling starts at a tenth of it and backs off to it. */
  intervalMs?: number
  /** One poll: `done`, and a short state line that is printed to stderr whenever it changes. */
  poll: () => Promise<{done: boolean; state: string}>
  /** Turns the timeout into the error the user sees (what to look at next). */
  onTimeout: (lastState: string) => KsctlError
}

const DEFAULT_INTERVAL_MS = 1000
const BACKOFF_FACTOR = 1.5

/** Polls until done or the deadline, reporting each new state on stderr: the waiting paths' one loop. */
export async function waitUntil(options: WaitOptions): Promise<string> {
  const deadline = Date.now() + options.timeoutMs
  let lastState = ''
  const longest = options.intervalMs ?? DEFAULT_INTERVAL_MS
  let pause = longest / 10
  for (;;) {
    const {done, state} = await options.poll()
    if (state !== lastState) {
      log.info(state)
      lastState = state
    }
    if (done) return state
    if (Date.now() >= deadline) throw options.onTimeout(lastState)
    await new Promise((resolve) => setTimeout(resolve, Math.min(pause, Math.max(0, deadline - Date.now()))))
    pause = Math.min(longest, pause * BACKOFF_FACTOR)
  }
}
