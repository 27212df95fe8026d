import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {execa} from 'execa'

const runJs = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'run.js')

export interface ProcessOutcome {
  stdout: string
  stderr: string
  exitCode: number
}

/**
 * Runs the built `ksctl` as a user would, in its own process, with no terminal and no colour; in `cwd`
 * when given (a test that looks at every file a command writes).
 */
export async function ksctl(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  options: {cwd?: string} = {},
): Promise<ProcessOutcome> {
  const result = await execa(process.execPath, [runJs, ...args], {
    reject: false,
    stdin: 'ignore',
    env: {NO_COLOR: '1', ...env},
    timeout: 60_000,
    ...options,
  })
  return {stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode ?? -1}
}
