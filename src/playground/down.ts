import {existsSync, readFileSync} from 'node:fs'
import {setTimeout as delay} from 'node:timers/promises'

import {isAlive, readState} from './state.js'
import {removeWhatWasMade} from './up.js'

export interface PlaygroundDownResult {
  dir: string
  /** The pid of the `up` that was stopped; absent when none ran. */
  stopped?: number
  /** Whether files of a playground were found in DIR (and removed). */
  removed: boolean
}

const STOP_GRACE_MS = 20_000

/**
 * Stops the playground of DIR: SIGTERM to its `up` (foreground or detached), which kills what it started and
 * removes its files on the way out; SIGKILL after a grace period. Then makes sure: kills any of its processes
 * still there (one whose command line names DIR, so that a reused pid is left alone) and removes what is left.
 */
export async function playgroundDown(dir: string): Promise<PlaygroundDownResult> {
  const state = readState(dir)
  if (state === undefined) return {dir, removed: false}
  let stopped: number | undefined
  if (isAlive(state.pid)) {
    stopped = state.pid
    process.kill(state.pid, 'SIGTERM')
    const deadline = Date.now() + STOP_GRACE_MS
    while (isAlive(state.pid) && Date.now() < deadline) await delay(100)
    if (isAlive(state.pid)) process.kill(state.pid, 'SIGKILL')
    while (isAlive(state.pid)) await delay(50)
  }
  for (const child of state.processes) {
    if (isAlive(child.pid) && commandLine(child.pid).includes(dir)) process.kill(child.pid, 'SIGKILL')
  }
  if (existsSync(dir)) removeWhatWasMade(dir, state.createdDir)
  return {dir, ...(stopped === undefined ? {} : {stopped}), removed: true}
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${String(pid)}/cmdline`, 'utf8').replaceAll('\0', ' ')
  } catch {
    return ''
  }
}
