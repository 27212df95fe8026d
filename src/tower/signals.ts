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
