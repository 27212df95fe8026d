import {once} from 'node:events'
import type {AddressInfo} from 'node:net'
import type {Readable} from 'node:stream'

import WebSocket, {WebSocketServer} from 'ws'

import {decodeFrame, encodeFrame} from '../../../src/tunnel/codec.js'
import {SUBPROTOCOL} from '../../../src/tunnel/constants.js'
import type {TunnelSessionError} from '../../../src/tunnel/errors.js'
import type {Frame} from '../../../src/tunnel/frame.js'
import {MemoryTransport} from '../../../src/tunnel/memory-transport.js'
import {
  TunnelSession,
  type AgentSessionOptions,
  type OpenRequest,
  type ProxySessionOptions,
} from '../../../src/tunnel/session.js'
import type {TunnelStream} from '../../../src/tunnel/stream.js'
import {
  selectSubprotocol,
  webSocketOptions,
  webSocketTransport,
  type SendCallback,
  type Transport,
} from '../../../src/tunnel/transport.js'

/** Two connected transports: `proxy` is the server end, `agent` the client end, as in production. */
export interface Link {
  proxy: Transport
  agent: Transport
  /** Only over ws: the agent's socket, to send what a session never would (text). */
  agentSocket?: WebSocket
  dispose(): Promise<void>
}

export interface LinkKind {
  name: string
  create(): Promise<Link>
}

export const memoryLink: LinkKind = {
  name: 'memory',
  create: async () => {
    const [proxy, agent] = MemoryTransport.pair()
    return {proxy, agent, dispose: async () => undefined}
  },
}

export const webSocketLink: LinkKind = {
  name: 'ws on 127.0.0.1',
  create: async () => {
    const server = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      handleProtocols: selectSubprotocol,
      ...webSocketOptions,
    })
    await once(server, 'listening')
    const {port} = server.address() as AddressInfo
    // Adapters are created where the sockets appear, so that no early message can slip past them.
    const accepted = new Promise<[WebSocket, Transport]>((resolve) =>
      server.once('connection', (socket: WebSocket) => resolve([socket, webSocketTransport(socket)])),
    )
    const client = new WebSocket(`ws://127.0.0.1:${port}`, SUBPROTOCOL, webSocketOptions)
    const agent = webSocketTransport(client)
    await once(client, 'open')
    const [serverSocket, proxy] = await accepted
    const closed = Promise.all([closedPromise(client), closedPromise(serverSocket)])
    return {
      proxy,
      agent,
      agentSocket: client,
      dispose: async () => {
        client.terminate()
        serverSocket.terminate()
        await closed
        await new Promise<void>((resolve, reject) =>
          server.close((error) => (error ? reject(error) : resolve())),
        )
      },
    }
  },
}

export const linkKinds = [memoryLink, webSocketLink]

function closedPromise(socket: WebSocket): Promise<void> {
  if (socket.readyState === WebSocket.CLOSED) return Promise.resolve()
  return new Promise((resolve) => socket.once('close', () => resolve()))
}

/** Wraps a transport so a test can cut it silently, like a link that black-holes packets. */
export class SeveredTransport implements Transport {
  dropOutgoing = false
  dropIncoming = false

  constructor(private readonly inner: Transport) {}

  get bufferedAmount(): number {
    return this.inner.bufferedAmount
  }

  send(message: Uint8Array, callback: SendCallback): void {
    if (this.dropOutgoing) process.nextTick(callback)
    else this.inner.send(message, callback)
  }

  close(code: number, reason: string): void {
    this.inner.close(code, reason)
  }

  onMessage(handler: (message: Buffer, isBinary: boolean) => void): void {
    this.inner.onMessage((message, isBinary) => {
      if (!this.dropIncoming) handler(message, isBinary)
    })
  }

  /** A black hole swallows the peer's close frame too. */
  onClose(handler: (code: number, reason: string) => void): void {
    this.inner.onClose((code, reason) => {
      if (!this.dropIncoming) handler(code, reason)
    })
  }

  sever(): void {
    this.dropOutgoing = true
    this.dropIncoming = true
  }
}

/** A hand-driven peer: sends whatever frames (or bytes) a test wants and records what comes back. */
export class RawPeer {
  readonly frames: Frame[] = []
  closedWith: {code: number; reason: string} | undefined
  private readonly waiters: (() => void)[] = []

  constructor(readonly transport: Transport) {
    transport.onMessage((message) => {
      this.frames.push(decodeFrame(message))
      this.notify()
    })
    transport.onClose((code, reason) => {
      this.closedWith = {code, reason}
      this.notify()
    })
  }

  send(frame: Frame): void {
    this.sendBytes(encodeFrame(frame))
  }

  sendBytes(message: Uint8Array): void {
    this.transport.send(message, () => undefined)
  }

  async frame<T extends Frame>(predicate: (frame: Frame) => frame is T): Promise<T> {
    await this.until(() => this.frames.some(predicate))
    return this.frames.find(predicate) as T
  }

  async closed(): Promise<{code: number; reason: string}> {
    await this.until(() => this.closedWith !== undefined)
    return this.closedWith!
  }

  private async until(condition: () => boolean): Promise<void> {
    while (!condition()) await new Promise<void>((resolve) => this.waiters.push(resolve))
  }

  private notify(): void {
    for (const resolve of this.waiters.splice(0)) resolve()
  }
}

/** Timers shrunk so that edge cases run in milliseconds (yamux's testConf). */
export const fastTimers = {
  pingIntervalMs: 1000,
  streamOpenTimeoutMs: 2000,
  streamCloseTimeoutMs: 2000,
  goAwayGraceMs: 2000,
}

export interface SessionPair {
  proxy: TunnelSession
  agent: TunnelSession
  /** Every open request the agent received, in order. */
  requests: OpenRequest[]
  /** The agent's end of every stream it accepted by default, in order. */
  agentStreams: TunnelStream[]
  /** The proxy's end of every stream opened through `openPair`. */
  proxyStreams: TunnelStream[]
}

export interface PairOptions {
  proxy?: Omit<ProxySessionOptions, 'role'>
  agent?: Omit<AgentSessionOptions, 'role' | 'onOpen'>
  /** What the agent does with each open; default: accept, and keep the stream in `agentStreams`. */
  onOpen?: (request: OpenRequest) => void
  wrapProxy?: (transport: Transport) => Transport
  wrapAgent?: (transport: Transport) => Transport
}

export function connect(link: Link, options: PairOptions = {}): SessionPair {
  const requests: OpenRequest[] = []
  const agentStreams: TunnelStream[] = []
  const onOpen = options.onOpen ?? ((request: OpenRequest) => agentStreams.push(request.accept()))
  const proxy = new TunnelSession(options.wrapProxy?.(link.proxy) ?? link.proxy, {
    role: 'proxy',
    ...fastTimers,
    ...options.proxy,
  })
  const agent = new TunnelSession(options.wrapAgent?.(link.agent) ?? link.agent, {
    role: 'agent',
    ...fastTimers,
    ...options.agent,
    onOpen: (request) => {
      requests.push(request)
      onOpen(request)
    },
  })
  return {proxy, agent, requests, agentStreams, proxyStreams: []}
}

/** Opens a stream and returns both ends: the proxy's and the agent's. */
export async function openPair(
  pair: SessionPair,
  destination = 'kubernetes',
): Promise<[TunnelStream, TunnelStream]> {
  const index = pair.agentStreams.length
  const proxyEnd = await pair.proxy.openStream(destination)
  pair.proxyStreams.push(proxyEnd)
  await waitFor(() => pair.agentStreams.length > index)
  return [proxyEnd, pair.agentStreams[index]!]
}

export async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

/**
 * Reads a stream's readable side to its end. Not with `for await`: finishing that loop destroys the whole
 * Duplex, which for a tunnel stream means an RST, and the writable side is often still in use.
 */
export function readAll(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.once('end', () => resolve(Buffer.concat(chunks)))
    stream.once('error', reject)
  })
}

/** Resolves with the error a stream emits (and keeps it from being unhandled). */
export function streamError(stream: NodeJS.EventEmitter): Promise<Error> {
  return new Promise((resolve) => stream.once('error', resolve))
}

/** Ends both sessions; streams a test left open get their SessionClosedError swallowed. */
export function closeAll(pair: SessionPair | undefined): void {
  if (pair === undefined) return
  for (const stream of [...pair.agentStreams, ...pair.proxyStreams]) stream.on('error', () => undefined)
  pair.proxy.close()
  pair.agent.close()
}

/** Registers for the session's 'close' right away, so the reason is not missed. */
export function whenClosed(session: TunnelSession): Promise<TunnelSessionError | undefined> {
  return new Promise((resolve) => session.once('close', resolve))
}

/** mulberry32: a tiny seeded PRNG, so a failing fuzz run can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function randomBytes(random: () => number, length: number): Buffer {
  const bytes = Buffer.allocUnsafe(length)
  for (let index = 0; index < length; index++) bytes[index] = Math.floor(random() * 256)
  return bytes
}
