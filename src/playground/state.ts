import {existsSync, readdirSync, readFileSync, renameSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {KsctlError} from '../errors.js'

export type Edition = '3' | '4'

/** A process the playground runs, as `status` shows it. */
export interface PlaygroundProcess {
  name: string
  pid: number
  /** What it serves, as a URL or host:port. */
  address: string
  log: string
}

/**
 * DIR/state.json: written when `up` starts (with its pid, which is the lock against a second `up` in DIR) and
 * again once the member has joined; `status` and `down` read it.
 */
export interface PlaygroundState {
  /** The `up` process that owns everything in DIR: stopping it stops the rest and removes DIR's files. */
  pid: number
  edition: Edition
  phase: 'starting' | 'ready'
  startedAt: string
  /** Whether `up` created DIR (then it removes DIR, else only what it put in it). */
  createdDir: boolean
  kubeconfig: string
  /** The member's name on the host. */
  cluster: string
  processes: PlaygroundProcess[]
}

export const STATE_FILE = 'state.json'
/** The supervisor's own output with --detach (up follows it until the member has joined). */
export const LOG_FILE = 'playground.log'
export const DEFAULT_DIR = '.ksctl-playground'

export function statePath(dir: string): string {
  return path.join(dir, STATE_FILE)
}

export function readState(dir: string): PlaygroundState | undefined {
  let text: string
  try {
    text = readFileSync(statePath(dir), 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  try {
    return JSON.parse(text) as PlaygroundState
  } catch {
    throw new KsctlError(`${statePath(dir)} is not a playground's state (not JSON)`, {
      code: 'PRECONDITION_FAILED',
      suggestions: [`remove ${dir} if no playground runs there`],
    })
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it exists, owned by someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The refusal of a second `up` while one runs in DIR. */
export function alreadyRunning(dir: string, state: PlaygroundState): KsctlError {
  return new KsctlError(
    `a playground already runs in ${dir} (pid ${String(state.pid)}, started ${state.startedAt})`,
    {
      code: 'PRECONDITION_FAILED',
      suggestions: [
        `see it: ksctl playground status --dir ${dir}`,
        `stop it: ksctl playground down --dir ${dir}`,
        'or start another one in a directory of its own: --dir OTHER',
      ],
    },
  )
}

/**
 * Checks that `up` may use DIR: no playground runs there, and DIR is new or empty (a playground removes what it
 * made; it must not mix with files of someone else's). Returns whether DIR exists. Only `files` (the detached
 * supervisor's log, made by the `up` that started it) may be there already.
 */
export function checkDirFree(dir: string, allowed: string[] = []): {exists: boolean} {
  if (!existsSync(dir)) return {exists: false}
  const state = readState(dir)
  if (state !== undefined) {
    if (isAlive(state.pid)) throw alreadyRunning(dir, state)
    throw new KsctlError(`a playground that did not stop cleanly left its files in ${dir}`, {
      code: 'PRECONDITION_FAILED',
      suggestions: [`remove them: ksctl playground down --dir ${dir}`],
    })
  }
  const others = readdirSync(dir).filter((entry) => !allowed.includes(entry))
  if (others.length > 0) {
    throw new KsctlError(`${dir} is not empty (it holds ${others.slice(0, 3).join(', ')}…)`, {
      code: 'PRECONDITION_FAILED',
      suggestions: ['give a new or empty directory: --dir DIR (the playground removes what it made there)'],
    })
  }
  return {exists: true}
}

/**
 * Writes state.json: `exclusive` the first time, so that of two `up`s at once only one goes on; later by a rename,
 * so that a reader never sees half of it.
 */
export function writeState(dir: string, state: PlaygroundState, exclusive = false): void {
  const text = `${JSON.stringify(state, undefined, 2)}\n`
  if (!exclusive) {
    const next = `${statePath(dir)}.next`
    writeFileSync(next, text, {mode: 0o600})
    renameSync(next, statePath(dir))
    return
  }
  try {
    writeFileSync(statePath(dir), text, {mode: 0o600, flag: 'wx'})
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    const other = readState(dir)
    if (other !== undefined && isAlive(other.pid)) throw alreadyRunning(dir, other)
    throw error
  }
}
