import {invalidInput} from '../errors.js'

const units: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000}

/**
 * Parses a Go-style duration as kubectl and Tower flags take them (`90s`, `5m`, `1h30m`, `500ms`); a bare
 * number means seconds. Returns milliseconds.
 */
export function parseDuration(text: string, flag: string): number {
  const trimmed = text.trim()
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000)
  const parts = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)]
  const consumed = parts.map((part) => part[0]).join('')
  if (parts.length === 0 || consumed !== trimmed) {
    throw invalidInput(`${flag} "${text}" is not a duration`, [
      `use a number with a unit, e.g. ${flag}=90s or ${flag}=5m`,
    ])
  }
  return Math.round(
    parts.reduce((total, part) => total + Number(part[1]) * (units[part[2] ?? 's'] ?? 1000), 0),
  )
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}

/** Time waited so far, as a clock-like reading that keeps its width while it ticks: `7s`, `1m05s`, `1h02m`. */
export function formatElapsed(ms: number): string {
  const seconds = Math.floor(ms / 1000)
  const pad = (value: number): string => String(value).padStart(2, '0')
  if (seconds >= 3600) return `${Math.floor(seconds / 3600)}h${pad(Math.floor(seconds / 60) % 60)}m`
  if (seconds >= 60) return `${Math.floor(seconds / 60)}m${pad(seconds % 60)}s`
  return `${seconds}s`
}
