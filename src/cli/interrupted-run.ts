import {KsctlError} from '../errors.js'

export interface InterruptedRun {
  signal: NodeJS.Signals
  /** The wait under way when the signal came ("cluster "member1" to become Ready (waited 5s of 15m)"). */
  waitingFor: string | undefined
  /** Writes the API servers accepted, in order ("created … in context "host""). */
  changes: string[]
  /** Writes sent but not answered when ksctl stopped: their outcome is unknown. */
  pending: string[]
  /** The command line as the user typed it: `ksctl` and its arguments. */
  commandLine: string[]
}

/**
 * The report of an interrupted run: what it was doing, what it had changed on which cluster, and the command
 * that continues from there, which is the same command, since every step of every command is idempotent.
 */
export function interruptedError(run: InterruptedRun): KsctlError {
  const lines = [
    `interrupted by ${run.signal}${run.waitingFor === undefined ? '' : ` while waiting for ${run.waitingFor}`}`,
  ]
  if (run.changes.length === 0) lines.push('nothing was changed')
  else lines.push('changed so far (kept):', ...run.changes.map((change) => `  - ${change}`))
  if (run.pending.length > 0) {
    lines.push('sent, outcome unknown:', ...run.pending.map((write) => `  - ${write}`))
  }
  return new KsctlError(lines.join('\n'), {
    code: 'INTERRUPTED',
    suggestions: [
      `every step is safe to repeat: to continue, run the same command again: ${run.commandLine.map(shellWord).join(' ')}`,
    ],
  })
}

/** A word as a POSIX shell reads it back: bare when it is plain, else single-quoted. */
export function shellWord(word: string): string {
  if (/^[\w@%+=:,./-]+$/.test(word)) return word
  return `'${word.replaceAll("'", `'"'"'`)}'`
}
