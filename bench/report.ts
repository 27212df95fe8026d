import {mkdir, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import type {PathName} from './paths/path.js'
import {summarize} from './stats.js'

export interface BenchRecord {
  scenario: string
  path: PathName
  metric: string
  value: number
  unit: string
  runs: number
  min: number
  max: number
}

/** Why a path has no figures for a scenario (or for the whole run). */
export interface BenchNote {
  scenario: string
  path: PathName
  kind: 'unavailable' | 'not applicable' | 'failed'
  reason: string
}

export interface Machine {
  cores: number
  cpuModel: string
  memoryGiB: number
  node: string
  kernel: string
}

export function describeMachine(): Machine {
  return {
    cores: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
  }
}

export class Report {
  readonly records: BenchRecord[] = []
  readonly notes: BenchNote[] = []

  add(scenario: string, pathName: PathName, metric: string, unit: string, samples: number[]): void {
    this.records.push({scenario, path: pathName, metric, unit, ...summarize(samples)})
  }

  note(note: BenchNote): void {
    this.notes.push(note)
  }

  async writeJson(
    file: string,
    context: {machine: Machine; quick: boolean; paths: PathName[]},
  ): Promise<void> {
    await mkdir(path.dirname(file), {recursive: true})
    const document = {
      generatedAt: new Date().toISOString(),
      ...context,
      records: this.records,
      notes: this.notes,
    }
    await writeFile(file, `${JSON.stringify(document, null, 2)}\n`)
  }

  /** One table: per scenario and metric a row per path, with ratios to direct and to every other path. */
  table(scenarios: {name: string; title: string}[], paths: PathName[], machine: Machine): string {
    const lines = [
      `machine: ${machine.cores} cores (${machine.cpuModel}), ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.kernel}`,
      'value: median of the runs, min–max beside it; ×P: this value divided by path P’s',
    ]
    const header = ['path', 'value', 'unit', 'min–max', 'runs', ...paths.map((name) => `×${name}`)]
    for (const scenario of scenarios) {
      lines.push('', scenario.title)
      const rows: string[][] = []
      const records = this.records.filter((record) => record.scenario === scenario.name)
      for (const metric of [...new Set(records.map((record) => record.metric))]) {
        rows.push([`  ${metric}`])
        const byPath = new Map(
          records.filter((record) => record.metric === metric).map((record) => [record.path, record]),
        )
        for (const [pathName, record] of byPath) {
          rows.push([
            `    ${pathName}`,
            format(record.value),
            record.unit,
            `${format(record.min)}–${format(record.max)}`,
            String(record.runs),
            ...paths.map((other) => {
              const reference = byPath.get(other)
              return reference === undefined || reference.value === 0 || other === pathName
                ? ''
                : format(record.value / reference.value)
            }),
          ])
        }
      }
      for (const note of this.notes.filter((candidate) => candidate.scenario === scenario.name)) {
        rows.push([`    ${note.path}`, `${note.kind}, because ${note.reason}`])
      }
      lines.push(...alignColumns([header, ...rows]))
    }
    return lines.join('\n')
  }
}

function format(value: number): string {
  if (value === 0) return '0'
  const magnitude = Math.abs(value)
  if (magnitude >= 100) return value.toFixed(0)
  if (magnitude >= 10) return value.toFixed(1)
  return value.toFixed(magnitude >= 1 ? 2 : 3)
}

/** Rows with a single or two-cell text (metric names, notes) do not widen the columns. */
function alignColumns(rows: string[][]): string[] {
  const tableRows = rows.filter((row) => row.length > 2)
  const widths =
    tableRows[0]?.map((_, column) => Math.max(...tableRows.map((row) => (row[column] ?? '').length))) ?? []
  return rows.map((row) =>
    row.length > 2
      ? row
          .map((cell, column) => cell.padEnd(widths[column] ?? 0))
          .join('  ')
          .trimEnd()
      : row.join('  '),
  )
}
