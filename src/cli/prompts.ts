import {confirm, select} from '@inquirer/prompts'

import {usageError} from '../errors.js'

/** Prompts need a person at a terminal: never in CI, never when stdin or stderr is not a TTY. */
export function canPrompt(): boolean {
  const ci = process.env.CI
  return process.stdin.isTTY && process.stderr.isTTY && (ci === undefined || ci === '' || ci === 'false')
}

/** Asks for a value the user did not pass, or fails naming the flag when no one can be asked. */
export async function chooseOrFail<T>(
  flag: string,
  message: string,
  choices: {name: string; value: T}[],
  example: string,
): Promise<T> {
  if (!canPrompt() || choices.length === 0) {
    throw usageError(`${flag} is required (no terminal to ask on)`, [`for example: ${example}`])
  }
  return select({message, choices}, {output: process.stderr})
}

/** Confirms a destructive step; `--yes` skips it, and without a terminal `--yes` is required. */
export async function confirmOrFail(message: string, yes: boolean): Promise<boolean> {
  if (yes) return true
  if (!canPrompt())
    throw usageError(`confirmation needed: ${message}`, ['pass --yes to go ahead without asking'])
  return confirm({message, default: false}, {output: process.stderr})
}
