import type {BenchPath} from './path.js'

/** The baseline: clients talk to the upstream itself. */
export const directPath: BenchPath = {
  name: 'direct',
  prepare: async () => ({available: true}),
  start: async (upstream) => ({
    endpoint: {baseUrl: `http://127.0.0.1:${upstream.httpPort}`},
    processes: () => [],
    stop: async () => undefined,
  }),
}
