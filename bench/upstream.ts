import {readFileSync} from 'node:fs'
import http, {type IncomingMessage, type ServerResponse} from 'node:http'
import http2 from 'node:http2'
import type {AddressInfo, Socket} from 'node:net'
import {fileURLToPath} from 'node:url'

import {startProcess, type ManagedProcess} from './processes.js'

/** The upstream every path forwards to: plain HTTP, plus the same handlers over TLS for ksctl-tls-kube. */
export interface Upstream {
  httpPort: number
  tlsPort: number
  /** The CA that signed the TLS port's certificate. */
  caFile: string
  /** Asks the upstream, directly and not through a tunnel, to write one event to every open stream. */
  broadcast(): Promise<number>
  stop(): Promise<void>
}

export interface UpstreamTlsFiles {
  caFile: string
  certFile: string
  keyFile: string
}

const chunkBytes = 64 * 1024
const chunk = Buffer.alloc(chunkBytes, 0x61)
const jsonBody = JSON.stringify({
  items: Array.from({length: 24}, (_, index) => ({index, name: `item-${index}`})),
})
const eventPrefix = 'event '

const openStreams = new Set<ServerResponse>()

function streamBytes(response: ServerResponse, total: number): void {
  response.writeHead(200, {'content-type': 'application/octet-stream', 'content-length': total})
  let remaining = total
  const writeMore = (): void => {
    while (remaining > 0) {
      const size = Math.min(chunkBytes, remaining)
      remaining -= size
      const accepted = response.write(size === chunkBytes ? chunk : chunk.subarray(0, size))
      if (!accepted) {
        response.once('drain', writeMore)
        return
      }
    }
    response.end()
  }
  writeMore()
}

function handle(request: IncomingMessage, response: ServerResponse): void {
  const url = request.url ?? '/'
  const bytes = /^\/bytes\/(\d+)$/.exec(url)
  if (bytes !== null) {
    streamBytes(response, Number(bytes[1]))
  } else if (url === '/json') {
    response.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(jsonBody),
    })
    response.end(jsonBody)
  } else if (url === '/stream') {
    // The first line tells the client its stream reached the upstream through the tunnel.
    response.writeHead(200, {'content-type': 'text/plain', 'cache-control': 'no-store'})
    response.write('open\n')
    openStreams.add(response)
    response.once('close', () => openStreams.delete(response))
  } else if (url === '/broadcast' && request.method === 'POST') {
    const line = `${eventPrefix}${Date.now()}\n`
    for (const stream of openStreams) stream.write(line)
    response.writeHead(200, {'content-type': 'text/plain'})
    response.end(String(openStreams.size))
  } else {
    response.writeHead(404).end()
  }
}

function configure(server: http.Server): http.Server {
  // Streams stay open for minutes in the many-streams scenario; keep-alive clients reuse connections.
  server.requestTimeout = 0
  server.keepAliveTimeout = 60_000
  return server
}

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', 1024, resolve))
  return (server.address() as AddressInfo).port
}

async function serve(tls: Omit<UpstreamTlsFiles, 'caFile'>): Promise<void> {
  const httpPort = await listen(configure(http.createServer(handle)))
  // As kube-apiserver: HTTP/2 (Go's 250 streams on a connection), HTTP/1.1 for clients without it. The
  // compatibility API gives the same handler what it uses of Node's HTTP/1.1 request and response.
  const tlsServer = http2.createSecureServer(
    {
      cert: readFileSync(tls.certFile),
      key: readFileSync(tls.keyFile),
      allowHTTP1: true,
      settings: {maxConcurrentStreams: 250},
    },
    handle as unknown as (request: http2.Http2ServerRequest, response: http2.Http2ServerResponse) => void,
  )
  // Go (kube-apiserver) turns Nagle's algorithm off on every connection; Node's HTTP/2 server does not.
  tlsServer.on('connection', (socket: Socket) => socket.setNoDelay(true))
  const tlsPort = await listen(configure(tlsServer as unknown as http.Server))
  process.stdout.write(`${JSON.stringify({httpPort, tlsPort})}\n`)
}

/** Starts the upstream in its own process, so that its work does not share the harness's event loop. */
export async function startUpstream(tls: UpstreamTlsFiles): Promise<Upstream> {
  const child = startProcess('upstream', process.execPath, [
    '--import',
    'tsx',
    fileURLToPath(import.meta.url),
    tls.certFile,
    tls.keyFile,
  ])
  const ports = await readPorts(child)
  return {
    ...ports,
    caFile: tls.caFile,
    broadcast: async () => {
      const response = await fetch(`http://127.0.0.1:${ports.httpPort}/broadcast`, {method: 'POST'})
      return Number(await response.text())
    },
    stop: () => child.stop(),
  }
}

async function readPorts(child: ManagedProcess): Promise<{httpPort: number; tlsPort: number}> {
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    const line = /^\{.*\}$/m.exec(child.output())
    if (line !== null) return JSON.parse(line[0]) as {httpPort: number; tlsPort: number}
    if (!child.running) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  await child.stop()
  throw new Error(`the upstream did not start: ${child.output()}`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [certFile, keyFile] = process.argv.slice(2)
  if (certFile === undefined || keyFile === undefined)
    throw new Error('usage: upstream.ts CERT_FILE KEY_FILE')
  await serve({certFile, keyFile})
}
