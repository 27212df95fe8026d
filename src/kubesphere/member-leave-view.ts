import {describeObject} from '../errors.js'
import type {MemberLeaveResult} from './member-leave.js'

/**
 * What `ksctl member leave` prints: a line per step (`unchanged` ones say why, e.g. already removed), on a
 * dry run the diff of each change, then the notes and the outcome.
 */
export function renderMemberLeave(result: MemberLeaveResult): string {
  const lines = result.changes.map((change) => {
    const state = change.changed ? (result.dryRun ? 'would change' : 'changed') : 'unchanged'
    return `${state} ${change.context}: ${describeObject(change.object)} (${change.summary})`
  })
  if (result.dryRun) {
    lines.push(...result.changes.filter((change) => change.changed).map((change) => change.diff.trimEnd()))
  }
  lines.push(...result.notes.map((note) => `note: ${note}`))
  lines.push(outcome(result))
  return lines.join('\n') + '\n'
}

function outcome(result: MemberLeaveResult): string {
  if (result.dryRun) return 'dry run: nothing was changed'
  if (result.changes.some((change) => change.changed)) {
    return `cluster "${result.name}" was removed from the host of context "${result.hostContext}"`
  }
  return `cluster "${result.name}" had already left the host of context "${result.hostContext}": nothing to change`
}
