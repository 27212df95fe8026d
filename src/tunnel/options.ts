/** Options of a session, with the defaults of constants.ts and their allowed ranges. */
import {
  DATA_FRAME_BYTES,
  GO_AWAY_GRACE_MS,
  INITIAL_WINDOW_BYTES,
  MAX_CONCURRENT_STREAMS,
  MAX_DATA_PAYLOAD_BYTES,
  MAX_WINDOW_BYTES,
  PING_ANSWER_DEADLINE_MS,
  SESSION_BUFFER_BUDGET_BYTES,
  PING_INTERVAL_MS,
  STREAM_CLOSE_TIMEOUT_MS,
  STREAM_OPEN_TIMEOUT_MS,
} from './constants.js'
import type {OpenRequest} from './open.js'

export type SessionRole = 'proxy' | 'agent'

export interface CommonSessionOptions {
  /** Receive window of every stream, advertised with SYN/ACK: 256 KiB to 16 MiB. */
  receiveWindowBytes?: number
  /** Largest DATA payload this side sends. */
  dataFrameBytes?: number
  /** Streams this side allows at once; the agent refuses SYNs beyond it, the proxy refuses to open more. */
  maxConcurrentStreams?: number
  /** Received data the session's streams may hold unread, all together; at least one receive window. */
  bufferBudgetBytes?: number
  pingIntervalMs?: number
  /** How long a PING may go unanswered before the peer counts as unresponsive; at most the ping interval. */
  answerDeadlineMs?: number
  streamOpenTimeoutMs?: number
  streamCloseTimeoutMs?: number
  goAwayGraceMs?: number
  /** Receives one line per frame sent or received (`describeFrame`, never payload bytes), for debug logs. */
  trace?: (line: string) => void
}

export type ResolvedOptions = Required<Omit<CommonSessionOptions, 'trace'>> &
  Pick<CommonSessionOptions, 'trace'>

export interface ProxySessionOptions extends CommonSessionOptions {
  role: 'proxy'
}

export interface AgentSessionOptions extends CommonSessionOptions {
  role: 'agent'
  /**
   * Called for every SYN the session admits. Call `accept()` once the destination is connected, or
   * `reject(code)`; either may happen later, asynchronously.
   */
  onOpen: (request: OpenRequest) => void
}

export type TunnelSessionOptions = ProxySessionOptions | AgentSessionOptions

export function resolveOptions(options: TunnelSessionOptions): ResolvedOptions {
  const pingIntervalMs = options.pingIntervalMs ?? PING_INTERVAL_MS
  const resolved = {
    receiveWindowBytes: options.receiveWindowBytes ?? INITIAL_WINDOW_BYTES,
    dataFrameBytes: options.dataFrameBytes ?? DATA_FRAME_BYTES,
    maxConcurrentStreams: options.maxConcurrentStreams ?? MAX_CONCURRENT_STREAMS,
    bufferBudgetBytes: options.bufferBudgetBytes ?? SESSION_BUFFER_BUDGET_BYTES,
    pingIntervalMs,
    answerDeadlineMs: options.answerDeadlineMs ?? Math.min(PING_ANSWER_DEADLINE_MS, pingIntervalMs),
    streamOpenTimeoutMs: options.streamOpenTimeoutMs ?? STREAM_OPEN_TIMEOUT_MS,
    streamCloseTimeoutMs: options.streamCloseTimeoutMs ?? STREAM_CLOSE_TIMEOUT_MS,
    goAwayGraceMs: options.goAwayGraceMs ?? GO_AWAY_GRACE_MS,
    trace: options.trace,
  }
  requireRange('receiveWindowBytes', resolved.receiveWindowBytes, INITIAL_WINDOW_BYTES, MAX_WINDOW_BYTES)
  requireRange('dataFrameBytes', resolved.dataFrameBytes, 1, MAX_DATA_PAYLOAD_BYTES)
  requireRange('maxConcurrentStreams', resolved.maxConcurrentStreams, 1, 2 ** 31)
  requireRange('bufferBudgetBytes', resolved.bufferBudgetBytes, resolved.receiveWindowBytes, 2 ** 50)
  for (const name of [
    'pingIntervalMs',
    'answerDeadlineMs',
    'streamOpenTimeoutMs',
    'streamCloseTimeoutMs',
    'goAwayGraceMs',
  ] as const) {
    requireRange(name, resolved[name], 1, 2 ** 31 - 1)
  }
  return resolved
}

function requireRange(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${value}`)
  }
}
