import {answers, unboundedAgent} from '../client.js'
import {waitUntil} from '../processes.js'
import {Samples, withRunningPath, type Scenario} from './scenario.js'

const recoveryTimeoutMs = 60_000
const recoveryPollMs = 10

export const reconnectScenario: Scenario = {
  name: 'reconnect',
  title: '6. reconnect: agent side killed (SIGKILL) and restarted, until requests succeed again',
  run: async (path, upstream, settings) =>
    withRunningPath(path, upstream, async (running) => {
      const restart = running.agentRestart
      if (restart === undefined) return {kind: 'not-applicable', reason: 'there is no agent side to restart'}
      const samples = new Samples()
      const agent = unboundedAgent(running.endpoint)
      try {
        for (let repetition = 0; repetition < settings.repetitions; repetition++) {
          await restart.kill()
          const restartedAt = performance.now()
          await restart.start()
          await waitUntil(
            'requests to succeed after the restart',
            recoveryTimeoutMs,
            () => answers(running.endpoint, agent, 1000),
            recoveryPollMs,
          )
          samples.add('restart to first success', 'ms', performance.now() - restartedAt)
        }
      } finally {
        agent.destroy()
      }
      return samples.outcome()
    }),
}
