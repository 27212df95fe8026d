import {type ChildProcess, spawn} from 'node:child_process'
import {closeSync, existsSync, openSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {setTimeout as delay} from 'node:timers/promises'

export interface ManagedProcess {
  name: string
  pid: number
  logPath: string
  /** Settles when the process has exited; never rejects. */
  exited: Promise<void>
  hasExited(): boolean
  /** SIGTERM, then SIGKILL once the grace period is over; resolves when the process is gone. */
  stop(gracePeriodMs?: number): Promise<void>
  logTail(lineCount?: number): Promise<string>
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv
  /**
   * In a process group of its own, so that a terminal's Ctrl-C reaches this process alone, which then stops its
   * children in order (the playground). It still dies with this process.
   */
  ownProcessGroup?: boolean
}

const liveChildren = new Set<ChildProcess>()
const exitCleanups = new Set<() => void>()
let exitHandlersInstalled = false
// A parent-death signal kills the children even when this process is SIGKILLed and no handler can run.
const setprivPath = '/usr/bin/setpriv'
const canSetParentDeathSignal = process.platform === 'linux' && existsSync(setprivPath)

/**
 * Starts a long-running child, its stdout and stderr into `logPath`, that is killed when this process exits,
 * however it exits: by the handlers installed here, or by the kernel (a parent-death signal) when this process
 * is killed outright.
 */
export function startProcess(
  name: string,
  command: string,
  args: string[],
  logPath: string,
  options: StartOptions = {},
): ManagedProcess {
  installExitHandlers()
  const [executable, fullArgs] = canSetParentDeathSignal
    ? [setprivPath, ['--pdeathsig', 'SIGKILL', '--', command, ...args]]
    : [command, args]
  const logFd = openSync(logPath, 'w')
  let child: ChildProcess
  try {
    child = spawn(executable, fullArgs, {
      stdio: ['ignore', logFd, logFd],
      detached: options.ownProcessGroup === true,
      ...(options.env !== undefined && {env: options.env}),
    })
  } finally {
    closeSync(logFd)
  }
  liveChildren.add(child)
  let exitedFlag = false
  const exited = new Promise<void>((resolve) => {
    const settle = () => {
      exitedFlag = true
      liveChildren.delete(child)
      resolve()
    }
    child.once('exit', settle)
    child.once('error', settle)
  })
  const hasExited = () => exitedFlag
  return {
    name,
    pid: child.pid ?? -1,
    logPath,
    exited,
    hasExited,
    async stop(gracePeriodMs = 5000) {
      if (hasExited()) return
      child.kill('SIGTERM')
      const stoppedInTime = await Promise.race([exited.then(() => true), delay(gracePeriodMs, false)])
      if (!stoppedInTime) child.kill('SIGKILL')
      await exited
    },
    async logTail(lineCount = 25) {
      const text = await readFile(logPath, 'utf8').catch(() => '')
      return text.trimEnd().split('\n').slice(-lineCount).join('\n')
    },
  }
}

/**
 * Runs `cleanup` synchronously if this process exits, or is ended by SIGINT, SIGTERM or SIGHUP, before the
 * returned function is called. Cleanups run after every child has been killed.
 */
export function onExitOrSignal(cleanup: () => void): () => void {
  installExitHandlers()
  exitCleanups.add(cleanup)
  return () => exitCleanups.delete(cleanup)
}

function killEverythingNow(): void {
  for (const child of liveChildren) child.kill('SIGKILL')
  liveChildren.clear()
  for (const cleanup of exitCleanups) {
    try {
      cleanup()
    } catch {
      // Exiting anyway: one failed cleanup must not prevent the others.
    }
  }
  exitCleanups.clear()
}

function installExitHandlers(): void {
  if (exitHandlersInstalled) return
  exitHandlersInstalled = true
  process.on('exit', killEverythingNow)
  const terminatingSignals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
  let interrupted = false
  const onSignal = (signal: NodeJS.Signals) => {
    // Ctrl-C reaches us twice (from the terminal and from mocha's wrapper process), and the wrapper adds a
    // SIGTERM; our listeners must stay until cleanup is done so that no signal kills us half way through.
    if (interrupted) return
    interrupted = true
    killEverythingNow()
    for (const terminatingSignal of terminatingSignals) process.removeListener(terminatingSignal, onSignal)
    // With our listeners gone, re-raising gives the default behaviour (or whoever else listens).
    process.kill(process.pid, signal)
  }
  for (const signal of terminatingSignals) process.on(signal, onSignal)
}
