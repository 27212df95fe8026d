import {spawn} from 'node:child_process'
import {closeSync, mkdirSync, openSync, readSync} from 'node:fs'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import {KsctlError} from '../errors.js'
import {packageRoot} from '../package-root.js'
import {checkDirFree, LOG_FILE, readState, type PlaygroundState} from './state.js'

/**
 * `up --detach`: starts `up` again as a supervisor of its own session (so that it outlives this process and the
 * terminal), its output into DIR/playground.log, and follows that log on stderr until the member has joined
 * (then returns the supervisor's state, leaving it running) or the supervisor ends (then fails).
 */
export async function upDetached(dir: string, upArgs: string[]): Promise<PlaygroundState> {
  const {exists} = checkDirFree(dir)
  if (!exists) mkdirSync(dir, {recursive: true, mode: 0o700})
  const logPath = path.join(dir, LOG_FILE)
  const logFd = openSync(logPath, 'wx', 0o600)
  const runJs = path.join(packageRoot(), 'bin', 'run.js')
  const supervisor = spawn(
    process.execPath,
    [runJs, 'playground', 'up', ...upArgs, '--supervise', exists ? 'existing-dir' : 'new-dir'],
    {detached: true, stdio: ['ignore', logFd, logFd]},
  )
  closeSync(logFd)
  // Kept open: once the supervisor fails it removes the log, and its last lines are still read through this.
  const reader = openSync(logPath, 'r')
  let exitCode: number | null | undefined
  supervisor.once('exit', (code) => (exitCode = code))
  const stopSupervisor = () => supervisor.kill('SIGTERM')
  // Interrupted while it starts: the playground is not wanted any more.
  process.once('SIGINT', stopSupervisor)
  try {
    for (;;) {
      const exited = exitCode !== undefined
      copyNewOutput(reader)
      if (exited) {
        throw new KsctlError(
          `the playground stopped before the member joined (exit code ${String(exitCode)}); its output is above`,
          {
            code: 'INTERNAL',
            suggestions: ['run it in the foreground (without --detach) to see it as it happens'],
          },
        )
      }
      const state = readStateQuietly(dir)
      if (state?.phase === 'ready' && state.pid === supervisor.pid) {
        copyNewOutput(reader)
        supervisor.unref()
        return state
      }
      await delay(100)
    }
  } finally {
    process.removeListener('SIGINT', stopSupervisor)
    closeSync(reader)
  }
}

function copyNewOutput(fd: number): void {
  const buffer = Buffer.alloc(64 * 1024)
  for (;;) {
    const read = readSync(fd, buffer, 0, buffer.length, null)
    if (read === 0) return
    process.stderr.write(buffer.subarray(0, read))
  }
}

/** The state file may be half written at the moment it is read: that is "not yet". */
function readStateQuietly(dir: string): PlaygroundState | undefined {
  try {
    return readState(dir)
  } catch {
    return undefined
  }
}
