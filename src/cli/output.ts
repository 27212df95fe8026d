import {dump} from 'js-yaml'

import {redact, redactObject} from '../redact.js'
import type {OutputFormat} from './flags.js'

/** A result as YAML or JSON for `-o`; redacted like every other output, objects by their schema. */
export function renderStructured(value: unknown, format: Exclude<OutputFormat, 'text'>): string {
  const redacted = redactObject(value)
  const text =
    format === 'json'
      ? JSON.stringify(redacted, null, 2) + '\n'
      : dump(redacted, {noRefs: true, lineWidth: -1})
  return redact(text)
}

/** `label: value` lines with the values aligned; rows whose value is undefined are left out. */
export function renderFields(rows: [label: string, value: string | undefined][]): string {
  const present = rows.filter((row): row is [string, string] => row[1] !== undefined)
  const width = Math.max(0, ...present.map(([label]) => label.length)) + 2
  return redact(present.map(([label, value]) => `${(label + ':').padEnd(width)}${value}`).join('\n') + '\n')
}

/** A plain table with a header row, columns padded to their widest cell, as kubectl prints lists. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  )
  const line = (cells: string[]): string =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd((widths[column] ?? 0) + 3)))
      .join('')
      .trimEnd()
  return redact([line(header), ...rows.map(line)].join('\n') + '\n')
}
