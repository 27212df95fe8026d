import type {BenchPath, RunningPath} from '../paths/path.js'
import type {Upstream} from '../upstream.js'

export interface Settings {
  repetitions: number
  bulkBytes: number
  smallRequestSeconds: number
  concurrencies: number[]
  /** Size of the bulk transfer that competes with the small requests; cut off when they are done. */
  competingBulkBytes: number
  streams: number
  fleetAgents: number
  idleCpuSeconds: number
}

export interface Measurement {
  metric: string
  unit: string
  samples: number[]
}

export type Outcome =
  {kind: 'measured'; measurements: Measurement[]} | {kind: 'not-applicable'; reason: string}

export interface Scenario {
  name: string
  title: string
  run(path: BenchPath, upstream: Upstream, settings: Settings): Promise<Outcome>
}

export async function withRunningPath<T>(
  path: BenchPath,
  upstream: Upstream,
  use: (running: RunningPath) => Promise<T>,
): Promise<T> {
  const running = await path.start(upstream)
  try {
    return await use(running)
  } finally {
    await running.stop()
  }
}

/** Collects samples under metric names in the order they were first seen. */
export class Samples {
  private readonly byMetric = new Map<string, Measurement>()

  add(metric: string, unit: string, value: number): void {
    let measurement = this.byMetric.get(metric)
    if (measurement === undefined) {
      measurement = {metric, unit, samples: []}
      this.byMetric.set(metric, measurement)
    }
    measurement.samples.push(value)
  }

  outcome(): Outcome {
    return {kind: 'measured', measurements: [...this.byMetric.values()]}
  }
}

export const mebibyte = 1024 * 1024
