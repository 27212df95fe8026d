import path from 'node:path'

import {execa, type ResultPromise} from 'execa'

const runJs = path.resolve(import.meta.dirname, '..', '..', 'bin', 'run.js')

/** A long-running `ksctl` process (the tower proxy or agent) and what it has logged so far. */
export interface RunningKsctl {
  process: ResultPromise
  output: () => string
  /** The JSON log lines with message `msg`. */
  logged: (msg: string) => Record<string, unknown>[]
}

/**
 * Starts the built CLI with JSON logs, no terminal and no colour. With `drainsSlowly`, a kill() is not followed
 * by execa's SIGKILL 5 s later, which would hide how long a graceful drain took.
 */
export function startKsctl(args: string[], options: {drainsSlowly?: boolean} = {}): RunningKsctl {
  const child = execa(process.execPath, [runJs, ...args, '--log-format', 'json'], {
    reject: false,
    env: {NO_COLOR: '1'},
    stdin: 'ignore',
    ...(options.drainsSlowly === true && {forceKillAfterDelay: false}),
  })
  let output = ''
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const logged = (msg: string): Record<string, unknown>[] =>
    output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((record) => record.msg === msg)
  return {process: child, output: () => output, logged}
}

/** Polls until `condition` holds; the error names what was awaited, with the tail of `output` when given. */
export async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  options: {timeoutMs?: number; output?: () => string} = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000)
  while (!(await condition())) {
    if (Date.now() > deadline) {
      const tail = options.output === undefined ? '' : `; output:\n${options.output().slice(-3000)}`
      throw new Error(`timed out waiting for ${what}${tail}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}
