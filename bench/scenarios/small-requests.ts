import {smallRequestLoad, warmUp} from './load.js'
import {Samples, withRunningPath, type Scenario} from './scenario.js'

export const smallRequestsScenario: Scenario = {
  name: 'small-requests',
  title: '2. small requests: keep-alive GETs of ~1 KiB JSON (autocannon)',
  run: (path, upstream, settings) =>
    withRunningPath(path, upstream, async (running) => {
      const samples = new Samples()
      await warmUp(running.endpoint, Math.max(...settings.concurrencies))
      for (const connections of settings.concurrencies) {
        for (let repetition = 0; repetition < settings.repetitions; repetition++) {
          const result = await smallRequestLoad(running.endpoint, connections, settings.smallRequestSeconds)
          samples.add(`requests @${connections} conns`, 'req/s', result.requestsPerSecond)
          samples.add(`latency p50 @${connections} conns`, 'ms', result.p50Ms)
          samples.add(`latency p99 @${connections} conns`, 'ms', result.p99Ms)
        }
      }
      return samples.outcome()
    }),
}
