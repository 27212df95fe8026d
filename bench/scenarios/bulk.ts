import {bulkDownload} from './load.js'
import {Samples, withRunningPath, type Scenario} from './scenario.js'

// Generous: even a tunnel at 5 MB/s moves 1 GiB in time.
const bulkMaxSeconds = 300

export const bulkScenario: Scenario = {
  name: 'bulk',
  title: '1. bulk throughput: one large response (curl, discarded)',
  run: (path, upstream, settings) =>
    withRunningPath(path, upstream, async (running) => {
      const samples = new Samples()
      for (let repetition = 0; repetition < settings.repetitions; repetition++) {
        const bytesPerSecond = await bulkDownload(running.endpoint, settings.bulkBytes, bulkMaxSeconds)
        samples.add(`throughput ${settings.bulkBytes / 1024 ** 2} MiB`, 'MB/s', bytesPerSecond / 1e6)
      }
      return samples.outcome()
    }),
}
