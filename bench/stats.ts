/** The value below which `fraction` of the sorted samples fall, interpolating between neighbours. */
export function percentile(samples: readonly number[], fraction: number): number {
  if (samples.length === 0) throw new Error('percentile of no samples')
  const sorted = [...samples].sort((a, b) => a - b)
  const position = (sorted.length - 1) * fraction
  const lower = Math.floor(position)
  const upper = Math.ceil(position)
  const lowerValue = sorted[lower] ?? 0
  const upperValue = sorted[upper] ?? lowerValue
  return lowerValue + (upperValue - lowerValue) * (position - lower)
}

export interface Summary {
  value: number
  runs: number
  min: number
  max: number
}

/** Median with the spread of the repetitions, the form every record of the report takes. */
export function summarize(samples: readonly number[]): Summary {
  return {
    value: percentile(samples, 0.5),
    runs: samples.length,
    min: Math.min(...samples),
    max: Math.max(...samples),
  }
}
