import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {Config, type Command} from '@oclif/core'

export interface CommandOutcome<T> {
  stdout: string
  stderr: string
  exitCode: number
  /** What run() returned (the `--json` document), when it returned. */
  result: T | undefined
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
let config: Config | undefined

/**
 * Runs a command class in this process, as oclif would from the command line, capturing stdout, stderr
 * and the exit code the user would see. The command's TypeScript source is used, no build needed.
 */
export async function runCommand<T>(command: Command.Class, argv: string[]): Promise<CommandOutcome<T>> {
  config ??= await Config.load(root)
  const stdout: string[] = []
  const stderr: string[] = []
  const originalOut = process.stdout.write.bind(process.stdout)
  const originalErr = process.stderr.write.bind(process.stderr)
  process.stdout.write = (chunk: string | Uint8Array): boolean => stdout.push(String(chunk)) > 0
  process.stderr.write = (chunk: string | Uint8Array): boolean => stderr.push(String(chunk)) > 0
  let exitCode: number
  let result: T | undefined
  const previousExitCode = process.exitCode
  try {
    result = (await command.run(argv, config)) as T
    exitCode = typeof process.exitCode === 'number' ? process.exitCode : 0
  } catch (error) {
    const exit = (error as {oclif?: {exit?: number}}).oclif?.exit
    if (exit === undefined) throw error
    exitCode = exit
  } finally {
    process.exitCode = previousExitCode
    process.stdout.write = originalOut
    process.stderr.write = originalErr
  }
  return {stdout: stdout.join(''), stderr: stderr.join(''), exitCode, result}
}
