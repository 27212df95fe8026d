import {parseDuration} from '../../cli/duration.js'
import {invalidInput} from '../../errors.js'
import {KEEPALIVE_MISSED_INTERVALS, PING_INTERVAL_MS} from '../../tunnel/index.js'

/**
 * `--keepalive` of the proxy and the agent: how often each side PINGs the other (PROTOCOL.md §7). A link silent
 * for three intervals is dead, so the default finds a dead link within 30 s on both sides, whichever side
 * stopped hearing first; a PING unanswered for 2 s (or the interval, if shorter) already takes the peer out of
 * service.
 */
export const defaultKeepalive = `${PING_INTERVAL_MS / 1000}s`

const shortestMs = 100
const longestMs = 10 * 60_000

export function parseKeepalive(text: string): number {
  const ms = parseDuration(text, '--keepalive')
  if (ms < shortestMs || ms > longestMs) {
    throw invalidInput(`--keepalive "${text}" must be from 100ms to 10m`, [
      `the default, ${defaultKeepalive}, finds a dead link within ${(KEEPALIVE_MISSED_INTERVALS * PING_INTERVAL_MS) / 1000}s`,
    ])
  }
  return ms
}
