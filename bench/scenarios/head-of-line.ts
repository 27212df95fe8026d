import {smallRequestLoad, startBulkDownload, warmUp} from './load.js'
import {Samples, withRunningPath, type Scenario} from './scenario.js'

/** The small-request load on the lowest concurrency while one bulk download runs on the same tunnel. */
export const headOfLineScenario: Scenario = {
  name: 'head-of-line',
  title: '3. head-of-line: small requests while a bulk transfer runs on the same tunnel',
  run: (path, upstream, settings) =>
    withRunningPath(path, upstream, async (running) => {
      const samples = new Samples()
      const connections = Math.min(...settings.concurrencies)
      await warmUp(running.endpoint, connections)
      for (let repetition = 0; repetition < settings.repetitions; repetition++) {
        // Sized to outlast the load on any path; it is cut off as soon as the load is done.
        const bulk = startBulkDownload(
          running.endpoint,
          settings.competingBulkBytes,
          settings.smallRequestSeconds + 30,
        )
        try {
          const result = await smallRequestLoad(running.endpoint, connections, settings.smallRequestSeconds)
          if (!bulk.running) {
            throw new Error(`the competing bulk transfer ended before the small requests: ${bulk.output()}`)
          }
          samples.add(`latency p99 @${connections} conns + bulk`, 'ms', result.p99Ms)
          samples.add(`latency p50 @${connections} conns + bulk`, 'ms', result.p50Ms)
          samples.add(`requests @${connections} conns + bulk`, 'req/s', result.requestsPerSecond)
        } finally {
          await bulk.kill()
        }
      }
      return samples.outcome()
    }),
}
