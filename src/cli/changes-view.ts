import type {EditOutcome} from '../k8s/object-edit.js'

/** What a changing command prints about its changes: a line each, and the diffs on a dry run. */
export function renderChanges(changes: EditOutcome[], dryRun: boolean): string {
  const changed = changes.filter((change) => change.changed)
  if (changed.length === 0) return ''
  const lines = changed.map(
    (change) =>
      `${dryRun ? 'would change' : 'changed'} ${change.context}: ${change.object.resource} ` +
      `${change.object.namespace === undefined ? '' : change.object.namespace + '/'}${change.object.name ?? ''} (${change.summary})`,
  )
  const diffs = dryRun ? changed.map((change) => change.diff) : []
  return [...lines, ...diffs].join('\n') + (dryRun ? '\ndry run: nothing was changed\n' : '\n')
}
