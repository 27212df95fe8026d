import {dump} from 'js-yaml'

import {renderChanges} from '../cli/changes-view.js'
import type {OutputFormat} from '../cli/flags.js'
import type {ManifestObject} from '../k8s/manifest-objects.js'
import {redact, redactObject} from '../redact.js'
import type {ProxyInstallResult} from './install.js'
import type {ProxyUninstallResult} from './uninstall.js'

/** `-o yaml`: one document per object, ready for `kubectl apply -f -` or a GitOps repository; `-o json`: a List. */
export function renderObjects(objects: ManifestObject[], format: Exclude<OutputFormat, 'text'>): string {
  const redacted = redactObject(objects) as ManifestObject[]
  const text =
    format === 'json'
      ? JSON.stringify({apiVersion: 'v1', kind: 'List', items: redacted}, null, 2) + '\n'
      : redacted.map((object) => dump(object, {noRefs: true, lineWidth: -1})).join('---\n')
  return redact(text)
}

export function renderInstall(result: ProxyInstallResult): string {
  const lines: string[] = []
  const changes = renderChanges(result.changes, result.dryRun).trimEnd()
  if (changes !== '') lines.push(changes)
  if (!result.dryRun) {
    lines.push(
      result.changes.some((change) => change.changed)
        ? `ksctl's proxy (${result.image}) replaces Tower's on context ${result.context} (KubeSphere ${result.edition})`
        : `ksctl's proxy already replaces Tower's on context ${result.context}; nothing to change`,
    )
  } else if (changes === '') {
    lines.push(`ksctl's proxy already replaces Tower's on context ${result.context}; nothing would change`)
  }
  if (result.servingPin !== undefined)
    lines.push(`serving key pin (agents' --proxy-pin): ${result.servingPin}`)
  if (result.migrated.length > 0) lines.push(`members moved to ksctl's agent: ${result.migrated.join(', ')}`)
  return lines.join('\n') + '\n'
}

export function renderUninstall(result: ProxyUninstallResult): string {
  if (!result.installed) return `context ${result.context}: ksctl's proxy is not installed; nothing to undo\n`
  const changes = renderChanges(result.changes, result.dryRun).trimEnd()
  const lines = changes === '' ? [] : [changes]
  if (!result.dryRun)
    lines.push(`Tower's proxy is back on context ${result.context}, as it was before ksctl proxy install`)
  return lines.join('\n') + '\n'
}
