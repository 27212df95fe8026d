import {applyEdit, previewEdit, type EditOutcome, type ObjectEdit} from './object-edit.js'

/**
 * How a changing command runs, in kubectl's words: for real (`false`); `client`, ksctl's own preview, which
 * reads and computes every change and writes nothing; `server`, every write of the plan sent in order with
 * `dryRun=All`, so that the API server validates and admits it (webhooks and admission policies included)
 * and stores nothing.
 */
export type DryRun = false | 'client' | 'server'

/** Previews, applies, or server-dry-runs one edit, as `dryRun` says. */
export function runEdit<T extends object>(edit: ObjectEdit<T>, dryRun: DryRun): Promise<EditOutcome> {
  return dryRun === 'client' ? previewEdit(edit) : applyEdit(edit, {dryRun: dryRun === 'server'})
}
