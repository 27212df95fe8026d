import {setTimeout as sleep} from 'node:timers/promises'

import {treeCpuSeconds, treeRssBytes} from '../processes.js'
import {mebibyte, Samples, type Scenario} from './scenario.js'

export const manyAgentsScenario: Scenario = {
  name: 'many-agents',
  title: '5. many agents: agent connections (standalone mode) to one proxy',
  run: async (path, upstream, settings) => {
    if (path.startAgentFleet === undefined) {
      return {
        kind: 'not-applicable',
        reason:
          path.name === 'direct'
            ? 'there is no tunnel without a proxy'
            : 'it has no multi-agent proxy: each reverse tunnel is its own client and its own listener',
      }
    }
    const samples = new Samples()
    for (let repetition = 0; repetition < settings.repetitions; repetition++) {
      const fleet = await path.startAgentFleet(upstream, settings.fleetAgents)
      try {
        samples.add(`connect ${settings.fleetAgents} agents`, 's', fleet.connectAllMs / 1000)
        samples.add(
          `proxy RSS with ${settings.fleetAgents} agents`,
          'MiB',
          treeRssBytes(fleet.proxy.pid) / mebibyte,
        )
        const cpuBefore = treeCpuSeconds(fleet.proxy.pid)
        await sleep(settings.idleCpuSeconds * 1000)
        const cpuSeconds = treeCpuSeconds(fleet.proxy.pid) - cpuBefore
        samples.add(
          `proxy idle CPU over ${settings.idleCpuSeconds} s`,
          '% of a core',
          (100 * cpuSeconds) / settings.idleCpuSeconds,
        )
      } finally {
        await fleet.stop()
      }
    }
    return samples.outcome()
  },
}
