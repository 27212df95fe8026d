import {execa, type Options} from 'execa'

/**
 * Runs a build tool and returns its stdout; a failure throws with the command and what it printed, which is
 * the only way to tell why apt-get, npm or umoci refused.
 */
export async function run(command: string, args: string[], options: Options = {}): Promise<string> {
  const result = await execa(command, args, {reject: false, all: true, stdin: 'ignore', ...options})
  if (result.failed) {
    const output = typeof result.all === 'string' ? result.all.trim() : ''
    throw new Error(
      `${[command, ...args].join(' ')} failed (${result.exitCode ?? result.signal ?? 'not started'})` +
        (output === '' ? '' : `:\n${output.split('\n').slice(-30).join('\n')}`),
    )
  }
  return typeof result.stdout === 'string' ? result.stdout : ''
}

/** Logs a step of the build on stderr with how long it took; stdout stays for the result. */
export async function step<T>(what: string, action: () => Promise<T>): Promise<T> {
  const startedAt = performance.now()
  process.stderr.write(`==> ${what}\n`)
  const result = await action()
  process.stderr.write(`    ${((performance.now() - startedAt) / 1000).toFixed(1)} s\n`)
  return result
}
