import {ExitCode, KsctlError} from '../../errors.js'
import type {Logger} from '../../log.js'

/**
 * Runs a long-lived process until SIGTERM or SIGINT, then awaits its graceful `stop`; SIGHUP calls `reload`.
 * A failure of `running` (e.g. the agent gave up) is thrown.
 */
export async function runUntilSignalled(
  running: Promise<void>,
  stop: () => Promise<void>,
  reload: () => void,
): Promise<void> {
  let requestStop = (): void => undefined
  const stopRequested = new Promise<void>((resolve) => (requestStop = resolve))
  const onStop = (): void => requestStop()
  process.on('SIGTERM', onStop)
  process.on('SIGINT', onStop)
  process.on('SIGHUP', reload)
  try {
    await Promise.race([running, stopRequested])
    await stop()
  } finally {
    process.off('SIGTERM', onStop)
    process.off('SIGINT', onStop)
    process.off('SIGHUP', reload)
  }
}

/**
 * A long-running tower process that meets an error no handler caught ends the way a failed command does: one log
 * line with the message, in the log's format (the stack only at --log-level debug), and exit code 1. Node's
 * default would print the stack and, for an error as client-node makes them, every header of the response.
 */
export function exitOnEscapedError(log: Logger): void {
  const fail = (error: unknown): void => {
    const message = error instanceof Error ? error.message : String(error)
    const stack = error instanceof Error ? error.stack : undefined
    log.error(error instanceof KsctlError ? message : `unexpected error: ${message}`, {
      ...(log.enabled('debug') && stack !== undefined && {stack}),
      suggestions: ['run again with --log-level debug, and report it if it persists'],
    })
    process.exit(error instanceof KsctlError ? error.exitCode : ExitCode.Failure)
  }
  process.once('uncaughtException', fail)
  process.once('unhandledRejection', fail)
}
