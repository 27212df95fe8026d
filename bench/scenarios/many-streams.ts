import type {Readable} from 'node:stream'

import {get, Http2Client, unboundedAgent} from '../client.js'
import type {Endpoint, RunningPath, TunnelSide} from '../paths/path.js'
import {treeRssBytes} from '../processes.js'
import {mebibyte, Samples, withRunningPath, type Scenario} from './scenario.js'

// Opening in batches keeps the listeners' accept backlogs from overflowing into SYN retries.
const openBatch = 250
const openTimeoutMs = 30_000
const eventTimeoutMs = 60_000
const broadcastsPerRepetition = 3

class OpenStream {
  private text = ''
  private waiting: {marker: string; resolve: () => void} | undefined

  constructor(readonly response: Readable) {
    response.setEncoding('utf8')
    response.on('data', (chunk: string) => {
      this.text += chunk
      if (this.waiting !== undefined && this.text.includes(this.waiting.marker)) {
        this.waiting.resolve()
        this.waiting = undefined
      }
    })
  }

  /** Resolves once `marker` has arrived; the text seen so far is dropped when it does. */
  until(marker: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no "${marker.trim()}" within ${timeoutMs} ms`)),
        timeoutMs,
      )
      const done = (): void => {
        clearTimeout(timer)
        this.text = ''
        resolve()
      }
      if (this.text.includes(marker)) done()
      else this.waiting = {marker, resolve: done}
    })
  }
}

interface StreamingClient {
  open(): Promise<{status: number; body: Readable}>
  close(): void
}

/**
 * A client for long-lived requests that behaves as a kube client: HTTP/2 where the endpoint offers it (many
 * streams share a connection), else one HTTP/1.1 connection each.
 */
async function streamingClient(endpoint: Endpoint): Promise<StreamingClient> {
  const http2Client = new Http2Client(endpoint)
  if (await http2Client.offered()) {
    return {
      open: async () => {
        const {status, stream} = await http2Client.get('/stream', openTimeoutMs)
        return {status, body: stream}
      },
      // The streams are destroyed one by one; the connections, idle then, close with the proxy.
      close: () => undefined,
    }
  }
  const agent = unboundedAgent(endpoint)
  return {
    open: async () => {
      const response = await get(endpoint, '/stream', agent, openTimeoutMs)
      return {status: response.statusCode ?? 0, body: response}
    },
    close: () => agent.destroy(),
  }
}

async function openStreams(client: StreamingClient, count: number, streams: OpenStream[]): Promise<void> {
  while (streams.length < count) {
    const batch = Math.min(openBatch, count - streams.length)
    await Promise.all(
      Array.from({length: batch}, async () => {
        const {status, body} = await client.open()
        if (status !== 200) throw new Error(`/stream answered ${status}`)
        const stream = new OpenStream(body)
        streams.push(stream)
        await stream.until('open\n', openTimeoutMs)
      }),
    )
  }
}

function rssBySide(running: RunningPath): Map<TunnelSide, number> {
  const bySide = new Map<TunnelSide, number>()
  for (const process of running.processes()) {
    bySide.set(process.side, (bySide.get(process.side) ?? 0) + treeRssBytes(process.pid))
  }
  return bySide
}

function sum(values: Iterable<number>): number {
  return [...values].reduce((total, value) => total + value, 0)
}

export const manyStreamsScenario: Scenario = {
  name: 'many-streams',
  title: '4. many streams: long-lived streaming requests held open through one tunnel',
  run: async (path, upstream, settings) => {
    const samples = new Samples()
    for (let repetition = 0; repetition < settings.repetitions; repetition++) {
      await withRunningPath(path, upstream, async (running) => {
        const idle = rssBySide(running)
        for (const [side, bytes] of idle) samples.add(`${side}-side RSS idle`, 'MiB', bytes / mebibyte)
        const streams: OpenStream[] = []
        const client = await streamingClient(running.endpoint)
        try {
          const openedAt = performance.now()
          await openStreams(client, settings.streams, streams)
          samples.add(`open ${settings.streams} streams`, 's', (performance.now() - openedAt) / 1000)
          const loaded = rssBySide(running)
          for (const [side, bytes] of loaded) {
            samples.add(`${side}-side RSS with ${settings.streams} streams`, 'MiB', bytes / mebibyte)
          }
          if (loaded.size > 0) {
            const growth = sum(loaded.values()) - sum(idle.values())
            samples.add('RSS growth per stream, both sides', 'KiB', growth / 1024 / settings.streams)
          }
          for (let broadcast = 0; broadcast < broadcastsPerRepetition; broadcast++) {
            const sentAt = performance.now()
            const arrivals = Promise.all(streams.map((stream) => stream.until('event ', eventTimeoutMs)))
            // Awaited below; handled here too, so that a failed broadcast does not leave it unhandled.
            arrivals.catch(() => undefined)
            const reached = await upstream.broadcast()
            if (reached < settings.streams)
              throw new Error(`the upstream holds ${reached} of ${settings.streams} streams`)
            await arrivals
            samples.add(`one event to all ${settings.streams} streams`, 'ms', performance.now() - sentAt)
          }
        } finally {
          for (const stream of streams) stream.response.destroy()
          client.close()
        }
      })
    }
    return samples.outcome()
  },
}
