import {chiselBinary, chiselVersion, ensureChisel} from '../install.js'
import {freePort, startProcess, type ManagedProcess} from '../processes.js'
import type {BenchPath} from './path.js'
import {waitForEndpoint} from './tunnel-process.js'

/** chisel at a pinned version: `chisel server --reverse` on the host side, `chisel client R:…` next to the upstream. */
export const chiselPath: BenchPath = {
  name: 'chisel',
  prepare: ensureChisel,
  start: async (upstream) => {
    const serverPort = await freePort()
    const tunnelPort = await freePort()
    const server = startProcess(`chisel ${chiselVersion} server`, chiselBinary, [
      'server',
      '--host',
      '127.0.0.1',
      '--port',
      String(serverPort),
      '--reverse',
    ])
    const startClient = (): ManagedProcess =>
      startProcess(`chisel ${chiselVersion} client`, chiselBinary, [
        'client',
        `http://127.0.0.1:${serverPort}`,
        `R:127.0.0.1:${tunnelPort}:127.0.0.1:${upstream.httpPort}`,
      ])
    let client = startClient()
    const endpoint = {baseUrl: `http://127.0.0.1:${tunnelPort}`}
    try {
      await waitForEndpoint(endpoint, [server, client])
    } catch (error) {
      await Promise.all([client.stop(), server.stop()])
      throw error
    }
    return {
      endpoint,
      processes: () => [
        {side: 'server', label: 'chisel server', pid: server.pid},
        {side: 'agent', label: 'chisel client', pid: client.pid},
      ],
      agentRestart: {
        kill: () => client.kill(),
        start: async () => {
          client = startClient()
        },
      },
      stop: async () => {
        await client.stop()
        await server.stop()
      },
    }
  },
}
