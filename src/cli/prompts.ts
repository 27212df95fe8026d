import {confirm, select} from '@inquirer/prompts'

import {usageError} from '../errors.js'

/** Prompts need a person at a terminal: never in CI, never when stdin or stderr is not a TTY. */
export function canPrompt(): boolean {
  const ci = process.env.CI
  return process.stdin.isTTY && process.stderr.isTTY && (ci === undefined || ci === '' || ci === 'false')
}

/** What to offer at a prompt for a value the user did not pass. */
export interface Offer<T> {
  message: string
  choices: {name: string; value: T}[]
  /** Why there is nothing to offer, when `choices` is empty: the reason the user is told. */
  whyNone: string
  /** A command line with the value filled in, shown when no one can be asked. */
  example: string
}

/**
 * Asks for a value the user did not pass, or fails naming the flag, with the real reason: no terminal to ask
 * on, or a terminal but nothing to offer.
 */
export async function chooseOrFail<T>(flag: string, offer: Offer<T>): Promise<T> {
  const reason = !canPrompt()
    ? 'no terminal to ask on'
    : offer.choices.length === 0
      ? offer.whyNone
      : undefined
  if (reason !== undefined) {
    throw usageError(`${flag} is required (${reason})`, [`for example: ${offer.example}`])
  }
  return select({message: offer.message, choices: offer.choices}, {output: process.stderr})
}

/** Confirms a destructive step; `--yes` skips it, and without a terminal `--yes` is required. */
export async function confirmOrFail(message: string, yes: boolean): Promise<boolean> {
  if (yes) return true
  if (!canPrompt())
    throw usageError(`confirmation needed: ${message}`, ['pass --yes to go ahead without asking'])
  return confirm({message, default: false}, {output: process.stderr})
}
